"""Incremental writing: a site manifest (`report-manifest.json`) maps every page and asset to the digest of
its inputs (the page's context, its template and every asset: `render.Renderer.page_digest`).

A rerun writes a page only when its digest differs from the recorded one or the file is gone from the site,
and removes the pages the manifest recorded that no longer exist in the data. The manifest is written after
every page, so a report killed half-way leaves pages whose digests were never recorded: the next run rewrites
them. Thumbnails and copies are not listed: a file that exists is made (media.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..storage import Store
from .paths import MANIFEST

__all__ = ["Plan", "load_digests", "plan_writes", "save_digests"]

FORMAT = 1


@dataclass
class Plan:
    write: list[str]  # paths whose inputs changed or whose file is missing
    unchanged: int
    remove: list[str]  # paths recorded before and not generated now


def load_digests(site: Store) -> dict[str, str]:
    """The recorded digests; empty when there is no manifest, an unreadable one or another format."""
    try:
        manifest = json.loads(site.read_bytes(MANIFEST))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return {}
    return {str(k): str(v) for k, v in (manifest.get("pages") or {}).items()}


def plan_writes(old: dict[str, str], new: dict[str, str], existing: set[str]) -> Plan:
    """What to write and remove, given the recorded digests, the current ones and the site's files."""
    write = sorted(p for p, d in new.items() if old.get(p) != d or p not in existing)
    remove = sorted(p for p in old if p not in new and p in existing)
    return Plan(write, len(new) - len(write), remove)


def save_digests(site: Store, digests: dict[str, str], out: str) -> None:
    body = {"format": FORMAT, "out": out, "pages": dict(sorted(digests.items()))}
    site.write_bytes(MANIFEST, json.dumps(body, indent=1).encode(), content_type="application/json")
