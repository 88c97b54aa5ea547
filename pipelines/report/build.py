"""Generating the whole site: `build_site(ReportSpec) -> ReportSummary`.

Order: read OUT (queries), lay out every page (contexts only), make the missing thumbnails and copies (so no
page ever links a file that is not there yet), then render and write the pages whose inputs changed, remove
the pages that are gone, and last record the digests (incremental). Nothing under OUT is written except
inside the site; bad input raises UserInputError before anything is written.
"""

from __future__ import annotations

import time
from urllib.parse import quote
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from models.errors import UserInputError
from models.retry import RetryPolicy

from ..storage import Store
from .incremental import load_digests, plan_writes, save_digests
from .layer_pages import layer_pages
from .media import content_type, materialize
from .overview import index_page, query_page
from .paths import INDEX, Locator
from .queries import load_atlas
from .render import Page, Renderer
from .unit_pages import unit_pages
from .unit_sections import SnapshotIndex

__all__ = ["ReportSpec", "ReportSummary", "build_site", "default_site"]


def default_site(out: str) -> str:
    return f"{out.rstrip('/')}/site"


@dataclass(frozen=True)
class ReportSpec:
    out: str
    site: str | None = None  # default: OUT/site
    page_size: int = 500  # units per layer page
    thumb_px: int = 128
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    storage_retry_s: float = 120.0
    workers: int = 8  # threads for thumbnails and writes

    @property
    def site_uri(self) -> str:
        return self.site or default_site(self.out)


@dataclass
class ReportSummary:
    site: str
    local_index: str | None  # the index page's absolute path when the site is a local folder
    pages: int
    written: int
    unchanged: int
    removed: int
    thumbs_made: int
    thumbs_kept: int
    copies_made: int
    seconds: float
    notes: list[str]
    serve_root: str | None = None  # the local folder a web server must serve (OUT when the site links into it)
    serve_path: str = INDEX  # the index page under serve_root

    def how_to_open(self) -> str:
        if self.local_index is None:
            return (f"open {self.site}/{INDEX} from the bucket's web endpoint: pages link OUT's images relatively, "
                    "so OUT must be readable there too (README: Browsing the atlas)")
        return (f"open file://{quote(self.local_index)} in a browser, or serve it: python -m http.server -d "
                f"{self.serve_root} 8000, then http://localhost:8000/{self.serve_path}")

    def line(self) -> str:
        return (f"site: {self.pages} pages ({self.written} written, {self.unchanged} unchanged, {self.removed} "
                f"removed), {self.thumbs_made} thumbnails made ({self.thumbs_kept} kept)"
                + (f", {self.copies_made} files copied" if self.copies_made else "")
                + f" in {self.seconds:.1f} s -> {self.site}/{INDEX}")


def _validate(spec: ReportSpec) -> None:
    if spec.page_size < 1:
        raise UserInputError(f"--page-size {spec.page_size} must be at least 1")
    if not 16 <= spec.thumb_px <= 1024:
        raise UserInputError(f"--thumb-size {spec.thumb_px} must be between 16 and 1024 pixels")
    if spec.workers < 1:
        raise UserInputError(f"--workers {spec.workers} must be at least 1")


def _lay_out(spec: ReportSpec, out: Store, site: Store, log: Callable[[str], None]) -> tuple[list[Page], Locator,
                                                                                           list[str]]:
    """Every page of the site (contexts only) and the locator that recorded the files they link."""
    data = load_atlas(out)
    if data.empty:
        raise UserInputError(f"nothing to report under {spec.out!r}: no units/, topk/, inverse/ or videos/ "
                             f"results; run 'neuron-atlas atlas --out {spec.out}' first")
    locator = Locator(out, site, spec.thumb_px)
    location = out.root if out.local else out.uri
    pages = [index_page(data, location, locator), query_page(data, location)]
    snapshots = SnapshotIndex(data)
    for key in data.layers():
        pages += layer_pages(data, key, locator, spec.page_size, location)
        pages += unit_pages(data, key, locator, snapshots, location)
    for note in data.notes:
        log(f"report: {note}")
    return pages, locator, data.notes


def build_site(spec: ReportSpec, log: Callable[[str], None] = print) -> ReportSummary:
    """Generate (or bring up to date) the site of `spec.out` at `spec.site_uri`."""
    t0 = time.perf_counter()
    _validate(spec)
    retry = RetryPolicy(budget_s=spec.storage_retry_s)
    out = Store(spec.out, spec.storage_options, retry)
    site = Store(spec.site_uri, spec.storage_options, retry)
    pages, locator, notes = _lay_out(spec, out, site, log)
    site.check_writable()
    site.remove_stale_temporaries()
    existing = set(site.find(""))
    media = materialize(out, site, locator, existing, spec.workers, log)
    renderer = Renderer()
    digests = {p.path: renderer.page_digest(p) for p in pages}
    digests.update({name: renderer.asset_digest(name) for name in renderer.assets})
    old = load_digests(site)
    plan = plan_writes(old, digests, existing)
    by_path = {p.path: p for p in pages}

    def write(path: str) -> None:
        body = renderer.assets[path] if path in renderer.assets else renderer.render(by_path[path])
        site.write_bytes(path, body, content_type=content_type(path))

    with ThreadPoolExecutor(max_workers=spec.workers) as pool:
        list(pool.map(write, plan.write))
        list(pool.map(site.remove, plan.remove))
    if plan.write or plan.remove or old != digests:  # a rerun that changes nothing writes nothing
        save_digests(site, digests, spec.out)
    written = sum(1 for p in plan.write if p in by_path)
    for note in media.notes:
        log(f"report: {note}")
    serve_root, serve_path = ((out.root, f"{site.root[len(out.root) + 1:]}/{INDEX}") if locator.inside
                              else (site.root, INDEX))
    return ReportSummary(
        site=site.uri, local_index=f"{site.root}/{INDEX}" if site.local else None, pages=len(pages),
        written=written, unchanged=len(pages) - written, removed=len(plan.remove),
        thumbs_made=media.thumbs_made, thumbs_kept=media.thumbs_kept, copies_made=media.copies_made,
        seconds=time.perf_counter() - t0, notes=notes + media.notes, serve_root=serve_root if site.local else None,
        serve_path=serve_path)
