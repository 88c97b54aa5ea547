"""Reading generated report pages in tests: every link, image and id of an HTML file, and whether each
relative link resolves to a file (a page's own folder as the base, as a browser resolves it)."""

from __future__ import annotations

import posixpath
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["PageLinks", "links_of", "broken_links", "site_pages"]

_ATTRS = {"a": "href", "link": "href", "img": "src", "script": "src", "source": "src"}


class PageLinks(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (tag, url)
        self.ids: set[str] = set()
        self.imgs: list[dict] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag in _ATTRS and a.get(_ATTRS[tag]):
            self.links.append((tag, a[_ATTRS[tag]]))
        if tag == "img":
            self.imgs.append(a)

    def handle_data(self, data):
        self.text.append(data)


def links_of(path: Path) -> PageLinks:
    p = PageLinks()
    p.feed(path.read_text())
    return p


def site_pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def broken_links(page: Path, root: Path) -> list[str]:
    """Links of `page` that are absolute, leave `root`, or name a file (or #id) that does not exist."""
    bad = []
    parsed = links_of(page)
    for tag, url in parsed.links:
        if url.startswith("data:"):
            continue
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or url.startswith("/"):
            bad.append(f"{tag} {url}: not relative")
            continue
        if not parts.path:  # a fragment of this page
            if parts.fragment and parts.fragment not in parsed.ids:
                bad.append(f"{tag} {url}: no such id")
            continue
        target = Path(posixpath.normpath(posixpath.join(str(page.parent), unquote(parts.path))))
        if root.resolve() not in (target.resolve(), *target.resolve().parents):
            bad.append(f"{tag} {url}: outside {root}")
        elif not target.is_file():
            bad.append(f"{tag} {url}: missing")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in links_of(target).ids:
            bad.append(f"{tag} {url}: no such id")
    return bad
