"""Pages from the Jinja2 templates shipped with this package (`templates/`, `static/`; package data).

A `Page` is a site-root path, a template name and the template's context: plain JSON-able data, so its
digest (`Renderer.page_digest`) says whether the page's inputs changed. Every context holds `page`, the
page's own path; the `url` filter turns a site-root path into a link relative to it. Templates are
autoescaped and strict: a missing context key is an error, not an empty string. `Renderer.digest` covers
every template and asset, so a changed template re-renders every page.
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib import resources
from typing import Any, NamedTuple

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context, select_autoescape

from .paths import ASSETS, href

__all__ = ["Page", "Renderer", "fmt_number"]

FORMAT = 1  # bump when the meaning of a context changes without a template change


class Page(NamedTuple):
    path: str  # relative to the site root
    template: str
    context: dict


def fmt_number(value: Any) -> str:
    """A number as pages show it: 2 decimals, 3 significant digits below 0.01, thousands grouped from 1000."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:.2f}"


def _count(n: int, word: str) -> str:
    """'1 seed', '2 seeds', '10,000 units'."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _sql(text: str) -> str:
    """A SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


@pass_context
def _url(ctx, target: str) -> str:
    return href(target, ctx["page"])


class Renderer:
    """The Jinja2 environment over the packaged templates, and the packaged static assets."""

    def __init__(self):
        self.env = Environment(loader=PackageLoader("pipelines.report", "templates"),
                               autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters["url"] = _url
        self.env.filters["num"] = fmt_number
        self.env.filters["sql"] = _sql
        self.env.filters["count"] = _count
        static = resources.files("pipelines.report") / "static"
        self.assets = {f"{ASSETS}/{f.name}": f.read_bytes() for f in sorted(static.iterdir(), key=lambda f: f.name)
                       if f.is_file()}
        h = hashlib.sha256(f"format {FORMAT}".encode())
        for name in sorted(self.env.list_templates()):
            source, _, _ = self.env.loader.get_source(self.env, name)
            h.update(f"\0{name}\0{source}".encode())
        for name, data in self.assets.items():
            h.update(f"\0{name}\0".encode() + data)
        self.digest = h.hexdigest()

    def render(self, page: Page) -> bytes:
        return self.env.get_template(page.template).render(page.context).encode()

    def asset_digest(self, name: str) -> str:
        return hashlib.sha256(self.assets[name]).hexdigest()

    def page_digest(self, page: Page) -> str:
        """A digest of everything the page is made from: its context, its template, every asset."""
        body = json.dumps([page.template, page.context], sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(f"{self.digest}\0{body}".encode()).hexdigest()
