"""Where everything lives in the site, and the relative links between pages.

Pages are named by `layer_page` and `unit_page` (paths relative to the site root). Files of OUT (the
synthesized PNGs, top-k crops, sheets) are reached through a `Locator`: when the site lies inside OUT (the
default `OUT/site/`) a page links the file where it is (`../images/...`); otherwise the file is copied once to
`files/<its path under OUT>`. Either way every link is relative, so the site works from disk, from any
static web server and from a bucket, and moves with OUT. `relative(target, page)` turns a site-root path
into the link written on `page`; `href` also percent-encodes it.
"""

from __future__ import annotations

from urllib.parse import quote

from models.errors import UserInputError

from ..storage import Store
from .queries import LayerKey

__all__ = ["Locator", "layer_dir", "layer_page", "unit_page", "snapshot_anchor", "relative", "href", "ASSETS",
           "MANIFEST", "INDEX", "QUERY"]

INDEX = "index.html"
QUERY = "query.html"
ASSETS = "assets"
MANIFEST = "report-manifest.json"
THUMBS = "thumbs"
FILES = "files"


def layer_dir(key: LayerKey) -> str:
    return f"{key.model}/{key.snapshot}/{key.layer}"


def layer_page(key: LayerKey, page: int = 1) -> str:
    """Page `page` (1-based) of the layer's grid: index.html, then page-2.html, ..."""
    return f"{layer_dir(key)}/{INDEX if page == 1 else f'page-{page}.html'}"


def snapshot_anchor(model: str, snapshot: str) -> str:
    """The id of a (model, snapshot) section of the index page (both are path-safe names)."""
    return f"{model}__{snapshot}"


def unit_page(key: LayerKey, unit: int) -> str:
    return f"{layer_dir(key)}/unit-{unit}.html"


def relative(target: str, page: str) -> str:
    """`target` (relative to the site root; may start with '../' when it lies outside the site) as a link
    from `page` (a file under the site root)."""
    base = page.split("/")[:-1]
    parts = target.split("/")
    common = 0
    while common < min(len(base), len(parts) - 1) and base[common] == parts[common]:
        common += 1
    return "/".join([".."] * (len(base) - common) + parts[common:])


def href(target: str, page: str) -> str:
    """`relative(target, page)`, percent-encoded for an href or src attribute; a '#fragment' is kept."""
    path, sep, fragment = target.partition("#")
    return quote(relative(path, page), safe="/.-_~") + (sep + quote(fragment, safe=".-_~") if sep else "")


class Locator:
    """Site-root paths of OUT's files (originals and thumbnails); records which of them the site needs, so
    `media.materialize` can make the missing ones once."""

    def __init__(self, out: Store, site: Store, thumb_px: int):
        if out.fs.protocol != site.fs.protocol:  # e.g. OUT on S3, the site in a local folder
            inside = False
        elif site.root == out.root or out.root.startswith(site.root + "/"):
            raise UserInputError(f"--site {site.uri!r} would hold OUT {out.uri!r} itself; pass a folder inside "
                                 "OUT (the default OUT/site) or outside it")
        else:
            inside = site.root.startswith(out.root + "/")
        depth = site.root[len(out.root) + 1:].count("/") + 1 if inside else 0
        self.up = "../" * depth if inside else None
        self.thumb_px = thumb_px
        self.thumbs: set[str] = set()
        self.copies: set[str] = set()

    @property
    def inside(self) -> bool:
        """Whether the site lies inside OUT (files are linked where they are, never copied)."""
        return self.up is not None

    def file(self, out_rel: str) -> str:
        """The site-root path of OUT's file `out_rel`."""
        if self.up is not None:
            return self.up + out_rel
        self.copies.add(out_rel)
        return f"{FILES}/{out_rel}"

    def thumb(self, out_rel: str) -> str:
        """The site-root path of the grid thumbnail of OUT's image `out_rel` (a JPEG, made once)."""
        self.thumbs.add(out_rel)
        return thumb_path(out_rel, self.thumb_px)


def thumb_path(out_rel: str, px: int) -> str:
    stem = out_rel.rsplit(".", 1)[0] if "." in out_rel.rsplit("/", 1)[-1] else out_rel
    return f"{THUMBS}/{px}/{stem}.jpg"
