"""The unit page's facets, caricatures and top-k views, on a small real run (tests/report_pages.facets_out:
tinynet in this process, seconds): diversity groups beside the independent seeds they vary, each caricature
beside its start photo, never both among the ordinary seeds; the top-k toggle's views; every link resolves."""

from __future__ import annotations

import json
import re

import pytest

from pipelines.report.build import ReportSpec, build_site
from pipelines.report.queries import load_atlas
from pipelines.report.render import fmt_number
from pipelines.report.starts import init_digest, start_of
from pipelines.report.unit_groups import facets
from pipelines.storage import Store
from tests.report_pages import FACETS_LAYER, broken_links, facets_out, links_of, site_pages


# --- pairing diversity groups with independent seeds ---------------------------------------------------------

def _group(hp: dict, method: str = "image") -> dict:
    """A group of seeds 0 and 1 as unit_groups.seed_groups makes it (the fields `facets` reads)."""
    rows = [{"seed": s, "method": method, "objective": "unit(l, 0)", "hyperparams": json.dumps(hp, sort_keys=True),
             "activation_final": 1.0 + s, "image": f"images/{method}_{s}.png"} for s in (0, 1)]
    return {"method": method, "objective": "unit(l, 0)", "position": None, "hp8": str(sorted(hp.items())),
            "hyperparams": [], "start": start_of(rows[0]), "rows": rows, "figures": [{"seed": s} for s in (0, 1)]}


def test_diversity_groups_pair_with_the_independent_seeds_of_the_nearest_settings():
    plain, other = _group({"lr": 0.1}), _group({"lr": 0.5, "steps": 9})
    exact = _group({"lr": 0.1, "diversity": {"weight": 2}})
    weak = _group({"lr": 0.5, "steps": 8, "diversity": {"weight": 0.5}})  # nearer `other` than `plain`
    near = _group({"lr": 0.2, "diversity": {"weight": 1}})  # differs from `plain` in lr only
    alone = _group({"lr": 0.1, "diversity": {"weight": 1}}, method="dgn")  # no independent dgn seeds
    made, rest = facets([plain, other, exact, weak, near, alone])
    assert [[c["label"] for c in f["columns"]] for f in made] == [
        ["independent seeds", "with diversity 1", "with diversity 2"],
        ["independent seeds", "with diversity 0.5"]]
    assert [c["differs"] for c in made[0]["columns"]] == [[], ["lr"], []]
    assert made[1]["columns"][1]["differs"] == ["steps"]
    assert rest == [alone]
    assert facets([plain, other]) == ([], [plain, other]) and facets([alone]) == ([], [alone])


# --- the unit pages of a real run ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def facet_site(tmp_path_factory):
    out = facets_out(tmp_path_factory.mktemp("facets"))
    build_site(ReportSpec(out=str(out)), log=lambda m: None)
    data = load_atlas(Store(str(out)))
    (key,) = data.units
    return out, out / "site" / key.model / key.snapshot / FACETS_LAYER, data.units[key]


def _section(text: str, section: str) -> str:
    """The HTML of the unit page's <section id=...> (up to the next top-level section)."""
    return text.split(f'<section id="{section}">', 1)[1].split('\n<section id="', 1)[0]


def test_facets_show_independent_seeds_beside_the_diverse_ones(facet_site):
    out, layer_dir, units = facet_site
    text = (layer_dir / "unit-0.html").read_text()
    facet = _section(text, "facets")
    columns = facet.split('<div class="facet-column">')[1:]
    assert [re.search(r"<h4>([^<]+?) <span", c)[1] for c in columns] == ["independent seeds", "with diversity 1"]
    for column, kind in zip(columns, ("noise", "diverse")):
        rows = sorted((r for r in units[0] if start_of(r) == kind), key=lambda r: r["seed"])
        assert re.findall(r'<img src="[^"]*?/([^/"]+)"', column) == [r["image"].rsplit("/", 1)[1] for r in rows]
        assert re.findall(r"<figcaption>seed (\d)", column) == [str(r["seed"]) for r in rows]
        assert all(f"activation <strong>{fmt_number(r['activation_final'])}</strong>" in column for r in rows)
    # shown once: nothing left for the ordinary groups, and no caricature among the facets
    assert 'href="#facets">Facets</a> and <a href="#caricatures">' in _section(text, "preferred")
    assert "/inits/" not in facet
    assert all(text.count(r["image"].rsplit("/", 1)[1]) == 2 for r in units[0])  # one link and one img each


def test_caricatures_show_each_start_photo_beside_its_image(facet_site):
    out, layer_dir, units = facet_site
    text = (layer_dir / "unit-1.html").read_text()
    cari = _section(text, "caricatures")
    rows = sorted((r for r in units[1] if start_of(r) == "photo"), key=lambda r: r["seed"])
    pairs = cari.split('<figure class="pair')[1:]
    assert len(pairs) == len(rows) == 2
    for pair, r in zip(pairs, rows):
        photo, image = re.findall(r'<img class="\w+" src="([^"]+)"', pair)
        assert photo.endswith(f"/inits/{init_digest(r)}.png") and image.endswith(r["image"])
        assert (out / "inits" / f"{init_digest(r)}.png").is_file()
        assert (f"activation {fmt_number(r['activation_start'])} at the start → "
                f"<strong>{fmt_number(r['activation_final'])}</strong>") in pair
    assert all(broken_links(p, out) == [] for p in site_pages(out / "site"))
    # the layer grid never shows a caricature while the unit has images started from noise
    grid = links_of(layer_dir / "index.html")
    photo_stems = {r["image"].rsplit("/", 1)[1][:-4] for u in units.values() for r in u if start_of(r) == "photo"}
    assert not any(i["src"].rsplit("/", 1)[1][:-4] in photo_stems for i in grid.imgs)


def test_topk_offers_a_toggle_between_crops_maps_and_attributions(facet_site):
    out, layer_dir, _ = facet_site
    data = load_atlas(Store(str(out)))
    (key,) = data.units
    text = (layer_dir / "unit-0.html").read_text()
    toggle = re.search(r'<fieldset class="views" data-for="(topk-\d+)" hidden>(.*?)</fieldset>', text, re.S)
    assert re.findall(r'value="(\w+)"', toggle[2]) == ["crop", "map", "attribution"]
    figures = text.split(f'id="{toggle[1]}"', 1)[1].split("</div>", 1)[0]
    imgs = re.findall(r"<img ([^>]+)>", figures)
    examples = data.topk[(key, 0)]
    assert len(imgs) == len(examples) > 0
    for img, e in zip(imgs, examples):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', img))
        assert attrs["src"] == attrs["data-crop"] and attrs["src"].endswith(e["image"])
        assert attrs["data-map"].endswith(e["overlay"]) and attrs["data-attribution"].endswith(e["attribution"])
    # a site outside OUT carries copies of every view, and of the start photos
    elsewhere = out.parent / "elsewhere"
    assert build_site(ReportSpec(out=str(out), site=str(elsewhere)), log=lambda m: None).copies_made > 0
    assert all(broken_links(p, elsewhere) == [] for p in site_pages(elsewhere))
    assert {"inits", "topk"} <= {p.name for p in (elsewhere / "files").iterdir()}
    assert all((elsewhere / "files" / "topk" / kind).is_dir() for kind in ("maps", "attributions"))


def test_the_index_strip_links_each_unit_with_synthesized_images(facet_site):
    out, _, units = facet_site
    tiles = links_of(out / "site" / "index.html").imgs
    assert len(tiles) == len(units) and all(t["src"].startswith("thumbs/") for t in tiles)
