"""What a unit responds to, from every side (`python -m benchmarks.facets_bench`; `make bench` runs it).

Three measurements on MobileNetV2 (the real weights), in process, each with its contact sheet:
  - diversity: 8 logit units x 4 seeds in the `lucid` style, independent seeds against `--diversity 1`
    (tasks/diversity.py): the mean pairwise distance between a unit's seeds in the pooled features of
    features.18 (the last conv layer; the measure is taken on the saved 8-bit pictures) and in pixels (RMS over
    [0, 1] values), the mean final activation, and the seconds each run took;
  - caricatures (`--init PHOTO`, image AM): offline photos, each with a unit it should drive and one it should
    not: the unit's activation on the photo and on its caricature, and how much of the photo's layout survives
    (the correlation of the two pictures' 16 x 16 block means, in grey);
  - DGN-AM from a photo (`--init PHOTO --method dgn`, the shipped mnv2-pool prior): the start picture G(E(photo))
    against the photo, as RMS pixel distance and features.18 distance, beside the same for a random start code.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

from models.capture import Capture
from models.units import Unit
from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem
from tasks.image_am import ImageAMConfig

__all__ = ["measure_facets", "facets_report", "DIVERSITY_UNITS", "CARICATURES"]

DIVERSITY_UNITS = (285, 504, 948, 967, 980, 947, 999, 812)  # the 8-class job of the quality section
SEEDS = 4
WEIGHT = 1.0
FEATURES = "features.18"
# (offline photo, the unit it shows, a unit it does not show)
CARICATURES = (("skimage/chelsea.png", 285, 948), ("skimage/coffee.png", 504, 947),
               ("sklearn/flower.jpg", 985, 812), ("skimage/rocket.jpg", 812, 285),
               ("skimage/astronaut.png", 834, 504), ("sklearn/china.jpg", 698, 980))
NAMES = {285: "Egyptian cat", 504: "coffee mug", 948: "Granny Smith", 967: "espresso", 980: "volcano",
         947: "mushroom", 999: "toilet tissue", 812: "space shuttle", 985: "daisy", 834: "suit", 698: "palace"}


def _pooled(actor: SynthesisActor, images: list[np.ndarray]) -> torch.Tensor:
    """[N, C] on the CPU: FEATURES' channel means of uint8 pictures [H, W, 3], computed on the actor's device."""
    x = torch.from_numpy(np.stack(images)).to(actor.device).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad(), Capture(actor.target.net, [FEATURES]) as cap:
        return cap(actor.model_input(x))[FEATURES].mean((2, 3)).cpu()


def _pairwise(v: torch.Tensor) -> float:
    return float(np.mean([float((v[i] - v[j]).norm()) for i, j in itertools.combinations(range(len(v)), 2)]))


def _diversity(actor: SynthesisActor, log, steps: int) -> tuple[dict, dict]:
    cfg = ImageAMConfig.build("lucid")
    rows, pictures = {}, {}
    for name, div in (("independent seeds", None), (f"--diversity {WEIGHT:g}", (WEIGHT, None))):
        t0 = time.perf_counter()
        feat, pix, act, per_unit = [], [], [], {}
        for u in DIVERSITY_UNITS:
            items = tuple(WorkItem(Unit("classifier.1", u), s) for s in range(SEEDS))
            results = actor.run(Batch(items, cfg, steps, diversity=div)).results
            images = [r.image for r in results]
            f, p = _pairwise(_pooled(actor, images)), _pairwise(torch.from_numpy(np.stack(images)).float()
                                                                .flatten(1) / 255 / np.sqrt(images[0].size))
            feat.append(f)
            pix.append(p)
            act.append(float(np.mean([r.act_final for r in results])))
            per_unit[u] = {"feature_distance": f, "activation": act[-1]}
            pictures[name, u] = images
        rows[name] = {"feature_distance": float(np.mean(feat)), "pixel_distance": float(np.mean(pix)),
                      "activation": float(np.mean(act)), "seconds": time.perf_counter() - t0, "units": per_unit}
        log(f"facets: {name}: feature distance {rows[name]['feature_distance']:.1f}, pixel distance "
            f"{rows[name]['pixel_distance']:.3f}, activation {rows[name]['activation']:.1f}, "
            f"{rows[name]['seconds']:.0f} s")
    return rows, pictures


def _layout(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two pictures' 16 x 16 block means in grey (how much of a's layout b keeps)."""
    def blocks(x):
        g = torch.from_numpy(x).float().mean(-1)[None, None]
        return torch.nn.functional.avg_pool2d(g, 16).flatten()
    return float(torch.corrcoef(torch.stack([blocks(a), blocks(b)]))[0, 1])


def _caricatures(actor: SynthesisActor, log, steps: int) -> tuple[list[dict], list]:
    from pipelines.photos import as_uint8, offline_image, preprocessing_input

    cfg = ImageAMConfig.build("lucid")
    rows, pictures = [], []
    for name, shown, other in CARICATURES:
        photo = preprocessing_input(offline_image(f"offline:{name}"), actor.preprocessing)
        items = (WorkItem(Unit("classifier.1", shown), 0), WorkItem(Unit("classifier.1", other), 0))
        results = actor.run(Batch(items, cfg, steps, init=(photo, photo))).results
        view = as_uint8(photo)
        for unit, r in zip((shown, other), results):
            rows.append({"photo": name, "unit": unit, "photo_activation": r.act_start,
                         "caricature_activation": r.act_final, "layout": _layout(view, r.image)})
            log(f"facets: caricature of {name} for {unit} ({NAMES.get(unit, unit)}): {r.act_start:.1f} -> "
                f"{r.act_final:.1f}, layout kept {rows[-1]['layout']:.2f}")
        pictures.append((view, results[0].image, results[1].image, name, shown, other))
    return rows, pictures


def _dgn_from_photo(log, device: str | None) -> dict:
    from pipelines.photos import offline_image, preprocessing_input
    from tasks.dgn import DGNConfig

    actor = SynthesisActor(NetSpec("mobilenet_v2", generator="mnv2-pool"), device=device)
    cfg = DGNConfig(**dict(actor.generator.entry.dgn_defaults) | {"upper": None})
    from pipelines.spec import read_bounds

    actor.code_upper, _ = read_bounds(actor.generator.entry.default_bounds(), {})
    photos = [preprocessing_input(offline_image(f"offline:{name}"), actor.preprocessing) for name, _, _ in CARICATURES]
    x = torch.from_numpy(np.stack(photos))
    seeds = list(range(len(photos)))
    out = {}
    for start, init in (("photo's code", x.to(actor.device)), ("random code", None)):
        p = actor.parameterization(cfg, seeds, init)
        with torch.no_grad():
            rendered = p.render(p.params).clamp(0, 1).cpu()
        rms = float(((rendered - x) ** 2).flatten(1).mean(1).sqrt().mean())
        to8 = (rendered.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        photo8 = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        feat = float((_pooled(actor, list(to8)) - _pooled(actor, list(photo8))).norm(dim=1).mean())
        out[start] = {"rms": rms, "feature_distance": feat}
        log(f"facets: DGN-AM start from a {start}: RMS {rms:.3f} from the photo, features.18 distance {feat:.1f}")
    return out


def _sheet(pictures: dict, caricatures: list, dest_div: str, dest_car: str, tile: int = 96) -> None:
    names = list(dict.fromkeys(n for n, _ in pictures))
    sheet = Image.new("RGB", (tile * SEEDS * 2 + 12, tile * len(DIVERSITY_UNITS) + 18), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(names):
        draw.text((c * (tile * SEEDS + 12) + 4, 3), name, fill="black")
    for r, u in enumerate(DIVERSITY_UNITS):
        for c, name in enumerate(names):
            for s, img in enumerate(pictures[name, u]):
                sheet.paste(Image.fromarray(img).resize((tile, tile)), (c * (tile * SEEDS + 12) + s * tile,
                                                                        18 + r * tile))
    sheet.save(dest_div)
    car = Image.new("RGB", (tile * 3, (tile + 14) * len(caricatures)), "white")
    draw = ImageDraw.Draw(car)
    for r, (view, a, b, name, shown, other) in enumerate(caricatures):
        y = r * (tile + 14)
        for c, (img, label) in enumerate(((view, name.split("/")[-1]), (a, NAMES.get(shown, str(shown))),
                                          (b, NAMES.get(other, str(other))))):
            car.paste(Image.fromarray(img).resize((tile, tile)), (c * tile, y + 14))
            draw.text((c * tile + 2, y + 1), label, fill="black")
    car.save(dest_car)


SHEETS = ("docs/diversity-sheet.png", "docs/caricature-sheet.png")


def measure_facets(log=print, sheets: tuple[str, str] | None = SHEETS, steps: int = 256,
                   device: str | None = None) -> dict:
    """Every figure of the section (`steps` fewer than the style's 256 only for a smoke run), on `device`
    (None: a GPU where there is one)."""
    actor = SynthesisActor(NetSpec("mobilenet_v2"), device=device)
    actor.run(Batch((WorkItem(Unit("classifier.1", 0), 0),), ImageAMConfig.build("lucid"), 2))  # warm-up
    diversity, pictures = _diversity(actor, log, steps)
    caricatures, car_pictures = _caricatures(actor, log, steps)
    if sheets:
        _sheet(pictures, car_pictures, *sheets)
    return {"units": list(DIVERSITY_UNITS), "seeds": SEEDS, "weight": WEIGHT, "layer": FEATURES, "steps": steps,
            "diversity": diversity, "caricatures": caricatures, "dgn_from_photo": _dgn_from_photo(log, device)}


def facets_report(r: dict) -> list[str]:
    """Markdown lines for the facets section."""
    d = r["diversity"]
    base, div = d["independent seeds"], d[f"--diversity {r['weight']:g}"]
    lines = ["", "## Facets, caricatures and DGN-AM from a photo", "",
             f"MobileNetV2, {len(r['units'])} logit units x {r['seeds']} seeds, `lucid` style, {r['steps']} steps, in "
             f"process (`benchmarks/facets_bench.py`). Distances are the mean over a unit's seed pairs: in "
             f"{r['layer']}'s pooled features of the saved pictures, and RMS in pixels ([0, 1]).", "",
             "| seeds | feature distance | pixel distance | mean activation | seconds |", "|---|---|---|---|---|"]
    for name, row in d.items():
        lines.append(f"| {name} | {row['feature_distance']:.1f} | {row['pixel_distance']:.3f} | "
                     f"{row['activation']:.1f} | {row['seconds']:.0f} |")
    spread = div["feature_distance"] / base["feature_distance"]
    kept = div["activation"] / base["activation"]
    lines += ["", f"With diversity the feature distance is **{spread:.2f}x** the independent seeds' and the activation "
              f"**{kept:.0%}** of theirs, for **{div['seconds'] / base['seconds']:.2f}x** the time.", "",
              f"**Caricatures** (`--init PHOTO`, `lucid` style, {r['steps']} steps): the unit's activation on the "
              "photo and on its caricature; layout = correlation of the two pictures' 16 x 16 grey block means.", "",
              "| photo | unit | on the photo | on the caricature | layout kept |", "|---|---|---|---|---|"]
    for c in r["caricatures"]:
        lines.append(f"| {c['photo']} | {c['unit']} ({NAMES.get(c['unit'], '')}) | {c['photo_activation']:.1f} | "
                     f"{c['caricature_activation']:.1f} | {c['layout']:.2f} |")
    own, rand = r["dgn_from_photo"]["photo's code"], r["dgn_from_photo"]["random code"]
    lines += ["", f"**DGN-AM from a photo** (mnv2-pool prior): the start picture G(E(photo)) is {own['rms']:.3f} RMS "
              f"from the photo (features.18 distance {own['feature_distance']:.1f}); a random start code's picture "
              f"is {rand['rms']:.3f} RMS from it ({rand['feature_distance']:.1f})."]
    return lines


if __name__ == "__main__":
    for line in facets_report(measure_facets()):
        print(line)
