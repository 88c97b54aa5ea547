"""argparse value types shared by the subcommands."""

from __future__ import annotations

import argparse

__all__ = ["key_value", "floats3", "objective_arg"]


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


def objective_arg(text: str) -> tuple[str, int | None, int | None, float]:
    """'unit' | 'softmax' | 'blend:A,B:GAMMA' -> (kind, A, B, gamma)."""
    if text in ("unit", "softmax"):
        return text, None, None, 0.0
    parts = text.split(":")
    try:
        if parts[0] == "blend" and len(parts) == 3:
            a, b = (int(v) for v in parts[1].split(","))
            gamma = float(parts[2])
            if gamma >= 0:
                return "blend", a, b, gamma
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not 'unit', 'softmax' or 'blend:A,B:GAMMA' "
                                     "(two units of the layer and a penalty weight >= 0, e.g. blend:980,970:0.1)")
