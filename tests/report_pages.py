"""Reading generated report pages in tests: every link, image and id of an HTML file, and whether each
relative link resolves to a file (a page's own folder as the base, as a browser resolves it); and
`facets_out`, a small real OUT with every kind of synthesized image and top-k view the unit pages show."""

from __future__ import annotations

import contextlib
import io
import posixpath
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["PageLinks", "links_of", "broken_links", "site_pages", "facets_out", "FACETS_LAYER"]

FACETS_LAYER = "features.2"  # of tinynet (tests/conftest.py registers it)

_ATTRS = {"a": "href", "link": "href", "img": "src", "script": "src", "source": "src"}
_VIEWS = ("data-crop", "data-map", "data-attribution")


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
        self.links += [(f"{tag} {v}", a[v]) for v in _VIEWS if a.get(v)]  # what the top-k toggle switches to
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


def _photos(folder: Path, n: int) -> Path:
    """`n` structured photos (a bright square on a coloured gradient), 40 px a side."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng(i)
        y, x = np.mgrid[:40, :40] / 40
        img = np.stack([y, x, 1 - y], -1) * rng.uniform(0.3, 0.9, 3)
        a, b = rng.integers(4, 20, 2)
        img[a:a + 12, b:b + 12] = rng.uniform(0.6, 1.0, 3)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def facets_out(root: Path) -> Path:
    """OUT under `root` from real runs of tinynet in this process (seconds): units 0 and 1 of FACETS_LAYER
    from 2 independent seeds, the same with `--diversity 1`, and from 2 photos (`--init`, one per seed), then
    the top-3 of every unit over those photos with activation maps and `--attribution`."""
    from pipelines.cli import main

    photos, out = _photos(root / "photos", 2), root / "out"
    atlas = ["atlas", "--model", "tinynet", "--weights", "random", "--layers", FACETS_LAYER, "--units", "0:2",
             "--seeds", "2", "--steps", "4", "--out", str(out)]
    topk = ["topk", "--model", "tinynet", "--weights", "random", "--layers", FACETS_LAYER, "--images", str(photos),
            "--k", "3", "--attribution", "--out", str(out)]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for args in (atlas, [*atlas, "--diversity", "1"], [*atlas, "--init", str(photos)], topk):
            assert main(args) == 0, args
    return out
