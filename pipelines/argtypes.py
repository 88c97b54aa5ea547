"""argparse value types shared by the subcommands."""

from __future__ import annotations

import argparse

__all__ = ["key_value", "floats3"]


def key_value(text: str) -> tuple[str, str]:
    """'KEY=VALUE' -> (KEY, VALUE)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


def floats3(text: str) -> tuple[float, float, float]:
    """'a,b,c' -> three floats (per-channel mean or std)."""
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not three comma-separated numbers, e.g. 0.485,0.456,0.406")
    return vals  # type: ignore[return-value]
