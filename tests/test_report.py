"""Fast tests of `neuron-atlas report` on synthetic outputs (benchmarks/synthetic_out.py: the real writers, no
net, no Ray): the queries, the seed-choice rule, relative links that resolve, incremental rewriting, the site
outside OUT, the query page's snippets run as printed, the index's strips of tiles, and bad input. The
facets, caricatures and top-k views of a real run: tests/test_report_sections.py."""

from __future__ import annotations

import contextlib
import html
import io
import math
import os
import random
import re
import shutil

import pytest

from benchmarks.synthetic_out import LAYER, MODEL, synthetic_out
from pipelines.report.build import ReportSpec, build_site
from pipelines.report.choice import representative
from pipelines.report.layer_pages import unit_ranges
from pipelines.report.overview import STRIP_TILES
from pipelines.report.paths import href, relative, snapshot_anchor
from pipelines.report.queries import LayerKey, constraint_unit, load_atlas
from pipelines.report.starts import init_digest, start_of
from pipelines.storage import Store
from tests.report_pages import broken_links, links_of, site_pages

UNITS, SEEDS = 30, 2
SNAPSHOTS = ("000100", "000200")
KEY = LayerKey(MODEL, "000200", LAYER)
LAYER_DIR = f"{MODEL}/000200/{LAYER}"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("report") / "out"
    synthetic_out(str(root), units=UNITS, seeds=SEEDS, snapshots=SNAPSHOTS, extras=True, k=3, crops=5)
    return root


@pytest.fixture(scope="module")
def site(out):
    summary = build_site(ReportSpec(out=str(out), page_size=8), log=lambda m: None)
    return out / "site", summary


def fresh_copy(out, tmp_path):
    dst = tmp_path / "out"
    shutil.copytree(out, dst, ignore=shutil.ignore_patterns("site"))
    return dst


# --- queries ------------------------------------------------------------------------------------------------

def test_queries_group_every_output_by_unit(out):
    data = load_atlas(Store(str(out)))
    assert data.layers() == [LayerKey(MODEL, s, LAYER) for s in SNAPSHOTS]
    rows = data.units[KEY]
    assert sorted(rows) == list(range(UNITS)) and all(len(r) == SEEDS for r in rows.values())
    assert [e["rank"] for e in data.topk[(KEY, 7)]] == [0, 1, 2]
    assert data.stats[(KEY, 7)][0]["max"] == pytest.approx(1.007)
    unit0 = {r["image"] for r in rows[0]}
    assert set(data.neighbours) == unit0 | {r["image"] for r in data.units[LayerKey(MODEL, "000100", LAYER)][0]}
    assert all(("syntheticnearest000200", img) in data.sheets for img in unit0)
    (run,) = data.inverse[(KEY, 1)]
    assert run["status"] == "complete" and [s["sample"] for s in run["samples"]] == [0, 1, 2]
    assert data.videos[(KEY, 2)][0]["video"].endswith("2_s0.mp4")
    steps = [(r["step"], r["seed"]) for r in data.tracking[(MODEL, LAYER, 3)]]
    assert steps == [(100, 0), (100, 1), (200, 0), (200, 1)]
    assert data.manifest["runs"]["synthetic"]["items"] == UNITS * SEEDS * len(SNAPSHOTS)
    assert data.notes == []


def test_constraint_labels_name_their_unit():
    assert constraint_unit("features.9:3@7,7") == ("features.9", 3)
    assert constraint_unit("classifier.1:980") == ("classifier.1", 980)
    assert constraint_unit("no-unit") is None


# --- the seed-choice rule -----------------------------------------------------------------------------------

def _row(seed, act, method="image", objective="unit(l, 0)", hp="{}"):
    return {"seed": seed, "activation_final": act, "method": method, "objective": objective, "hyperparams": hp,
            "image": f"images/m/s/l/0_s{seed}_{method}.png"}


def test_the_grid_shows_the_strongest_preferred_input_whatever_the_row_order():
    rows = [_row(0, 1.0), _row(1, 3.0), _row(2, 2.0), _row(3, float("nan")), _row(4, None)]
    for _ in range(5):
        random.shuffle(rows)
        assert representative(rows)["seed"] == 1


def test_ties_go_to_the_lowest_seed_then_method():
    assert representative([_row(2, 1.0), _row(1, 1.0), _row(3, 1.0)])["seed"] == 1
    assert representative([_row(0, 1.0, "image"), _row(0, 1.0, "dgn")])["method"] == "dgn"


def test_caricatures_only_when_nothing_started_from_noise():
    photo = '{"init":["00000000000000aa","00000000000000bb"]}'
    rows = [_row(0, 1.0), _row(1, 9.0, hp=photo), _row(2, 2.0, hp='{"diversity":{"weight":1}}')]
    assert [start_of(r) for r in rows] == ["noise", "photo", "diverse"]
    assert representative(rows)["seed"] == 2 and representative(rows[1:2])["seed"] == 1
    assert init_digest(rows[1]) == "00000000000000bb" and init_digest(rows[0]) is None


def test_least_preferred_inputs_only_when_nothing_else():
    mins = [_row(0, -1.0, objective="min unit(l, 0)"), _row(1, -5.0, objective="min unit(l, 0)")]
    assert representative(mins + [_row(2, -9.0)])["seed"] == 2
    assert representative(mins)["seed"] == 1  # the lowest activation is the strongest least-preferred input
    assert representative([]) is None
    assert representative([_row(0, math.nan)])["seed"] == 0


# --- links --------------------------------------------------------------------------------------------------

def test_relative_links():
    assert relative("m/s/l/unit-3.html", "m/s/l/index.html") == "unit-3.html"
    assert relative("index.html", "m/s/l/unit-3.html") == "../../../index.html"
    assert relative("../images/m/s/l/3_s0.png", "m/s/l/unit-3.html") == "../../../../images/m/s/l/3_s0.png"
    assert relative("thumbs/128/a.jpg", "index.html") == "thumbs/128/a.jpg"
    assert href("index.html#m__s", "m/s/l/index.html") == "../../../index.html#m__s"
    assert href("a b/c.html", "index.html") == "a%20b/c.html"


def test_unit_ranges_compress_runs():
    assert unit_ranges(range(10_000)) == "0-9999"
    assert unit_ranges([10, 1, 2, 3, 7, 9]) == "1-3,7,9-10"
    assert unit_ranges([]) == ""


def test_every_link_and_image_of_every_page_resolves(site, out):
    site_dir, summary = site
    pages = site_pages(site_dir)
    # index, query, per snapshot: 4 grid pages of 8 units and 30 unit pages
    assert len(pages) == summary.pages == 2 + 2 * (4 + UNITS)
    for page in pages:
        assert broken_links(page, out) == [], page


def test_layer_grid_shows_each_units_chosen_seed_with_alt_text(site):
    site_dir, _ = site
    page2 = links_of(site_dir / LAYER_DIR / "page-2.html")
    tiles = [i for i in page2.imgs if "/thumbs/" in i["src"]]
    assert len(tiles) == 8
    for img, unit in zip(tiles, range(8, 16)):
        assert img["src"].endswith(f"/{unit}_s{SEEDS - 1}_image-{img['src'].rsplit('-', 1)[1]}")
        assert img["alt"] == f"unit {unit}, preferred input, activation {1 + unit / 1000 + (SEEDS - 1) / 10:.2f}"
    text = (site_dir / LAYER_DIR / "page-2.html").read_text()
    assert re.findall(r'<a rel="(prev|next)" href="([^"]+)"', text)[:2] == [("prev", "index.html"),
                                                                           ("next", "page-3.html")]


def test_unit_page_shows_seeds_topk_nearest_inverse_snapshots_and_video(site):
    site_dir, _ = site
    text = {u: (site_dir / LAYER_DIR / f"unit-{u}.html").read_text() for u in (0, 1, 2, 29)}
    assert all(f"seed {s}" in text[0] for s in range(SEEDS)) and "(shown in the layer grid)" in text[0]
    assert "Top real images" in text[0] and "#3" in text[0] and "Activation statistics" in text[0]
    assert "Nearest real images" in text[0] and "nearest/sheets/synthet" in text[0]
    assert "Inverse sets" in text[1] and f"{LAYER}:1 in [0.50, 1.50]" in text[1]
    assert "Inverse sets" not in text[0]
    assert "<video" in text[2] and "score_shuffled" in text[2]
    # the unit in both snapshots: a two-image strip, a plot, and a link to the other snapshot's page
    assert "Across training snapshots" in text[29] and "step 100" in text[29] and "step 200" in text[29]
    assert f'href="../../000100/{LAYER}/unit-29.html"' in text[29] and "<polyline" in text[29]
    assert 'rel="prev" href="unit-28.html"' in text[29] and "last unit" in text[29]
    # unit 3 has tracking rows (the snapshots command): validation accuracy, its filmstrip and plot files
    unit3 = (site_dir / LAYER_DIR / "unit-3.html").read_text()
    assert "acc 0.60" in unit3 and 'class="accuracy"' in unit3 and "filmstrips/block.7/3.png" in unit3
    assert 'data-units="0-29"' in text[29]
    assert "Facets" not in text[0] and "Caricatures" not in text[0]  # only independent seeds here
    assert 'class="views"' not in text[0]  # no overlays among the synthetic top-k examples: no toggle


def test_the_index_shows_each_layers_strongest_units_as_tiles(site):
    site_dir, _ = site
    data = load_atlas(Store(str(site_dir.parent)))
    text = (site_dir / "index.html").read_text()
    for key, units in sorted(data.units.items()):
        section = text.split(f'<section id="{snapshot_anchor(key.model, key.snapshot)}"', 1)[1]
        strip = section.split(f'aria-label="strongest units of {key.layer}"', 1)[1].split("</ul>", 1)[0]
        shown = [int(u) for u in re.findall(r'href="[^"]*/unit-(\d+)\.html"', strip)]
        ranked = sorted(units, key=lambda u: (-max(r["activation_final"] for r in units[u]), u))
        assert shown == ranked[:STRIP_TILES] and strip.count("<img ") == STRIP_TILES
    assert broken_links(site_dir / "index.html", site_dir.parent) == []


# --- incremental --------------------------------------------------------------------------------------------

def _mtimes(site_dir):
    return {p: p.stat().st_mtime_ns for p in site_dir.rglob("*") if p.is_file()}


def _add_image(root, unit, snapshot="000200"):
    import numpy as np

    from models.units import Unit
    from pipelines.keys import ItemKey
    from pipelines.sink import write_batch
    from tasks.actor import ItemResult, WorkItem

    key = ItemKey(MODEL, snapshot, LAYER, unit, None, None, 0, "image", '{"lr":9}')
    write_batch(Store(str(root)), [key], [ItemResult(WorkItem(Unit(LAYER, unit), 0), np.zeros((8, 8, 3), np.uint8),
                                                     4.0, 5.0, 5.0, np.zeros(2, np.float32), "unit")], 8, "cpu")


def test_rerun_rewrites_only_pages_whose_inputs_changed(out, tmp_path):
    root = fresh_copy(out, tmp_path)
    spec = ReportSpec(out=str(root), page_size=8)
    first = build_site(spec, log=lambda m: None)
    assert first.written == first.pages and first.thumbs_made == 2 * UNITS
    before = _mtimes(root / "site")
    again = build_site(spec, log=lambda m: None)
    assert (again.written, again.thumbs_made, again.removed) == (0, 0, 0)
    assert _mtimes(root / "site") == before  # not one file touched
    _add_image(root, 9)
    third = build_site(spec, log=lambda m: None)
    changed = {str(p.relative_to(root / "site")) for p, t in _mtimes(root / "site").items()
               if before.get(p) != t and p.suffix == ".html"}
    # the unit's page, the grid page that shows it (its tile now shows the new image), the index's counts, and
    # the unit's page in the other snapshot (its strip across snapshots shows the new image too)
    assert changed == {f"{LAYER_DIR}/unit-9.html", f"{LAYER_DIR}/page-2.html", "index.html",
                       f"{MODEL}/000100/{LAYER}/unit-9.html"}
    assert (third.written, third.thumbs_made) == (4, 1)
    (root / "site" / LAYER_DIR / "unit-4.html").unlink()
    assert build_site(spec, log=lambda m: None).written == 1 and (root / "site" / LAYER_DIR / "unit-4.html").exists()


def test_pages_that_no_longer_exist_are_removed(out, tmp_path):
    root = fresh_copy(out, tmp_path)
    build_site(ReportSpec(out=str(root), page_size=8), log=lambda m: None)
    assert (root / "site" / LAYER_DIR / "page-4.html").exists()
    summary = build_site(ReportSpec(out=str(root), page_size=16), log=lambda m: None)
    assert summary.removed == 4  # pages 3 and 4 of both snapshots
    assert not (root / "site" / LAYER_DIR / "page-3.html").exists()
    assert all(broken_links(p, root) == [] for p in site_pages(root / "site"))


def test_a_site_outside_out_carries_copies_and_stands_alone(out, tmp_path):
    site_dir = tmp_path / "elsewhere" / "atlas"
    summary = build_site(ReportSpec(out=str(out), site=str(site_dir), page_size=8), log=lambda m: None)
    assert summary.copies_made > 0 and summary.serve_root == str(site_dir)
    moved = tmp_path / "moved"
    shutil.copytree(site_dir, moved)  # it needs nothing outside itself
    for page in site_pages(moved):
        assert broken_links(page, moved) == [], page
    again = build_site(ReportSpec(out=str(out), site=str(site_dir), page_size=8), log=lambda m: None)
    assert (again.written, again.copies_made) == (0, 0)


# --- the query page -----------------------------------------------------------------------------------------

def test_query_page_snippets_run_on_this_out(site, out):
    pytest.importorskip("duckdb")
    site_dir, _ = site
    text = (site_dir / "query.html").read_text()
    blocks = [html.unescape(b) for b in re.findall(r'<code class="language-python">(.*?)</code>', text, re.S)]
    assert len(blocks) == 2 and all(str(out) in b for b in blocks)
    for block in blocks:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(block, "query.html", "exec"), {})
        shown = printed.getvalue()
        assert LAYER in shown or "unit" in shown
    pandas_out = io.StringIO()
    with contextlib.redirect_stdout(pandas_out):
        exec(compile(blocks[0], "query.html", "exec"), {})
    assert "1.129" in pandas_out.getvalue() or "1.13" in pandas_out.getvalue()  # unit 29's seed 1: 1 + .029 + .1


# --- bad input ----------------------------------------------------------------------------------------------

def _cli(*args):
    from pipelines.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["report", *args])
    return rc, err.getvalue().strip()


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, out):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, err = _cli(str(empty))
    assert rc == 2 and err.count("\n") == 0 and "nothing to report" in err and "neuron-atlas atlas" in err
    assert os.listdir(empty) == []
    rc, err = _cli(str(out), "--site", str(out))
    assert rc == 2 and "OUT" in err and err.count("\n") == 0
    rc, err = _cli(str(out), "--page-size", "0")
    assert rc == 2 and "--page-size 0" in err

