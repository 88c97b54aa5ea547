"""Does DGN-AM draw real-looking photos? The Fashion-MNIST measurement harness (issue: faithful DGN-AM).

For each of the 10 classes, `--seeds` images per method, scored against real photos by a *judge* (a third
architecture, models/fashion.py `FashionJudge`, trained on the training split and never used for synthesis):

(a) judge: mean probability of the intended class over 27 small shifts (+-2 px) and scalings (0.9-1.1);
(b) realism: median pixel distance of each image to its nearest real test photo, divided by the same median
    for 1,000 held-out real training photos (real photos ~ 1);
(c) sharpness: mean gradient magnitude over real photos' (a blurred class average scores far below 1);
(d) diversity: mean pairwise pixel distance between one class's seeds over real photos' of one class;
(e) copying: the smallest distance of any image to its nearest *training* photo, and how many images lie
    closer than the 5th percentile of real test photos' own nearest-training-photo distances (DGN-AM must
    not copy: 0 expected).

Rows: DGN-AM with the `fashion-fc` prior and its tuned settings on `fashion_cnn`, the same prior on
`fashion_resnet` and on the transformer `fashion_vit`, ablations on `fashion_cnn` (no code bounds, no L2
decay, codes started from real photos' codes), image AM in the `lucid` and `yosinski` styles and the lucid
style with MACO (`--param maco`) on `fashion_cnn` and `fashion_vit`, held-out real photos (the reference row)
and a blurred class average (a control that the measures are not fooled by smooth averages). Synthesis runs in this
process through the actors' own code (tasks/actor.py, no Ray), one batch per row.

    python -m benchmarks.dgn_quality [--seeds 8] [--json F] [--sheet docs/dgn-fashion-sheet.png]
    python -m benchmarks.dgn_quality --sweep '[{"lr": 0.5, "decay_factor": 0.9}, {"lr": 1.0}]'

`--sweep` scores only the two DGN-AM rows for each list of DGN-AM settings (the prior's tuned ones, updated
by each dict): how `fashion-fc`'s settings were chosen.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from models.capture import Capture
from models.fashion import FASHION, FASHION_CLASSES, NETS, FashionJudge
from models.units import Unit
from models.generators import FASHION_FC_DGN, PRIORS
from models.weights import read_weights
from pipelines.fashion.train_nets import load_split
from pipelines.sheet import contact_sheet
from pipelines.spec import read_bounds
from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem
from tasks.classifier_train import predict_proba
from tasks.dgn import DGNConfig, dgn_parameterization
from tasks.image_am import STYLES, ImageAMConfig
from tasks.loop import optimize
from tasks.objectives import per_item, unit
from tasks.realism import judged_probability, nearest_distances, pairwise_diversity, sharpness

__all__ = ["ROWS", "DEFAULT_ROWS", "measure", "main"]

DGN_CNN, DGN_RESNET = "DGN-AM, fashion_cnn", "DGN-AM (same prior), fashion_resnet"
DGN_VIT = "DGN-AM (same prior), fashion_vit"
NO_BOUNDS, NO_L2, PHOTO_INIT = "ablation: no code bounds", "ablation: no L2 decay", "ablation: codes from real photos"
LUCID, YOSINSKI = "image AM, lucid style", "image AM, yosinski style"
MACO = "image AM, lucid style with MACO"
LUCID_VIT, MACO_VIT = "image AM, lucid style, fashion_vit", "image AM, lucid style with MACO, fashion_vit"
REAL, BLUR = "real held-out photos", "control: blurred class average"
ROWS = (DGN_CNN, DGN_RESNET, DGN_VIT, NO_BOUNDS, NO_L2, PHOTO_INIT, LUCID, YOSINSKI, MACO, LUCID_VIT, MACO_VIT,
        REAL, BLUR)
# what `make bench` and the DGN-AM demo measure (the demo's retrained nets have no fashion_vit); --rows picks others
DEFAULT_ROWS = (DGN_CNN, DGN_RESNET, NO_BOUNDS, NO_L2, PHOTO_INIT, LUCID, YOSINSKI, REAL, BLUR)
LOGITS = {"fashion_cnn": "classifier.6", "fashion_resnet": "fc", "fashion_vit": "heads.head"}


def _dgn_settings(overrides: dict | None = None) -> tuple[DGNConfig, int]:
    settings = dict(FASHION_FC_DGN)
    settings.update(overrides or {})
    steps = int(settings.pop("steps", 200))
    return DGNConfig(**settings), steps


def _items(model: str, seeds: int) -> list[WorkItem]:
    return [WorkItem(Unit(LOGITS[model], c), s) for c in range(10) for s in range(seeds)]


def _as01(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, C] as saved -> float [N, C, H, W] in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def _run(actor: SynthesisActor, config, steps: int, seeds: int) -> tuple[torch.Tensor, list[float], float]:
    """Images [10 * seeds, 1, 28, 28], final activations, seconds for one batch of every class and seed."""
    items = _items(actor.spec.model, seeds)
    t0 = time.perf_counter()
    result = actor.run(Batch(tuple(items), config, steps))
    images = np.stack([r.image for r in result.results])
    return _as01(images), [r.act_final for r in result.results], time.perf_counter() - t0


def _run_from_codes(actor: SynthesisActor, config: DGNConfig, steps: int, seeds: int,
                    codes: torch.Tensor) -> tuple[torch.Tensor, list[float], float]:
    """DGN-AM whose codes start from `codes` [10 * seeds, D] (the released code's start-from-an-image)."""
    items = _items(actor.spec.model, seeds)
    t0 = time.perf_counter()
    g = actor.generator
    param = dgn_parameterization(config, g.net, g.entry.to_image01, g.entry.code_shape, [w.seed for w in items],
                                 actor.preprocessing.size, actor.device, actor.code_upper, init=codes)
    objective = per_item([unit(w.unit.layer, w.unit.channel) for w in items])
    with Capture(actor.target.net, objective.layers) as cap:
        r = optimize(param, objective, lambda x: cap(actor.model_input(x)), steps, config.rule)
    images = r.images.numpy()
    return _as01(images), r.act_final.tolist(), time.perf_counter() - t0


def _photo_codes(actor: SynthesisActor, photos: torch.Tensor) -> torch.Tensor:
    """The generator's encoder-layer codes [N, D] of `photos` [N, C, H, W] in [0, 1], on the actor's device."""
    layer = actor.generator.entry.encoder[1]
    with torch.no_grad(), Capture(actor.target.net, [layer]) as cap:
        return cap(actor.model_input(photos.to(actor.device)))[layer].flatten(1)


def _judge(path: str):
    net = FashionJudge()
    net.load_state_dict(read_weights(path).state_dict)
    net.eval().requires_grad_(False)
    normalize = FASHION.module()
    return lambda x: predict_proba(net, x, normalize, batch=2048)


def measure(seeds: int = 8, log=print, only: tuple[str, ...] = DEFAULT_ROWS, nets_dir: str = str(NETS),
            prior_files: tuple[str, str] = (str(PRIORS / "fashion-fc.pt"), str(PRIORS / "fashion-fc-bounds.npy")),
            steps: int | None = None, dgn: dict | None = None, device: str = "cpu") -> tuple[dict, dict]:
    """{row: scores} and {row: images [10 * seeds, 1, 28, 28]} (classes in order, seeds within a class); the
    nets and the judge from `nets_dir`, the prior's weights and bounds from `prior_files`; `steps` overrides every
    method's step count (toy runs); `dgn` overrides the prior's tuned DGN-AM settings (the tuning sweep).
    Synthesis runs on `device`; the scores are computed on the CPU, from the pictures as saved."""
    torch.manual_seed(0)
    train_x, train_y = load_split("train")
    test_x, test_y = load_split("test")
    g = torch.Generator().manual_seed(0)
    # the real reference row: `seeds` test photos per class; the realism set: every other test photo
    pick = torch.cat([torch.nonzero(test_y == c).flatten()[:seeds] for c in range(10)])
    rest = torch.ones(len(test_x), dtype=torch.bool)
    rest[pick] = False
    realism_set = test_x[rest]
    held_out = train_x[torch.randperm(len(train_x), generator=g)[:1000]].float() / 255.0
    base_real, _ = nearest_distances(held_out, realism_set)
    real = test_x[pick].float() / 255.0
    real_nn_train, _ = nearest_distances(test_x[:2000].float() / 255.0, train_x)
    copy_p5 = float(torch.quantile(real_nn_train, 0.05))
    real_sharp = float(sharpness(real).mean())
    real_div = float(np.mean([pairwise_diversity(real[c * seeds:(c + 1) * seeds]) for c in range(10)]))
    judge = _judge(os.path.join(nets_dir, "judge.pt"))
    bounds, _ = read_bounds(prior_files[1], {})

    def spec(model: str, dgn: bool = True) -> NetSpec:
        return NetSpec(model, os.path.join(nets_dir, f"{model}.pt"), generator="fashion-fc" if dgn else None,
                       generator_weights=prior_files[0] if dgn else None)

    images: dict[str, torch.Tensor] = {}
    acts: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    cfg, dgn_steps = _dgn_settings(dgn)
    dgn_steps = steps or dgn_steps
    cnn = SynthesisActor(spec("fashion_cnn"), device=device, code_upper=bounds)
    if DGN_CNN in only:
        images[DGN_CNN], acts[DGN_CNN], seconds[DGN_CNN] = _run(cnn, cfg, dgn_steps, seeds)
    if DGN_RESNET in only:
        res = SynthesisActor(spec("fashion_resnet"), device=device, code_upper=bounds)
        images[DGN_RESNET], acts[DGN_RESNET], seconds[DGN_RESNET] = _run(res, cfg, dgn_steps, seeds)
    if DGN_VIT in only:  # the prior inverts fashion_cnn's fc6; here it drives a transformer's logits
        vit = SynthesisActor(spec("fashion_vit"), device=device, code_upper=bounds)
        images[DGN_VIT], acts[DGN_VIT], seconds[DGN_VIT] = _run(vit, cfg, dgn_steps, seeds)
    if NO_BOUNDS in only:
        free = SynthesisActor(spec("fashion_cnn"), device=device, code_upper=None)
        images[NO_BOUNDS], acts[NO_BOUNDS], seconds[NO_BOUNDS] = _run(free, replace(cfg, lower=-math.inf),
                                                                      dgn_steps, seeds)
    if NO_L2 in only:
        images[NO_L2], acts[NO_L2], seconds[NO_L2] = _run(cnn, replace(cfg, decay_factor=1.0), dgn_steps, seeds)
    if PHOTO_INIT in only:
        # each class starts from the codes of `seeds` random training photos (of any class)
        starts = train_x[torch.randperm(len(train_x), generator=g)[:10 * seeds]].float() / 255.0
        codes = _photo_codes(cnn, starts)
        images[PHOTO_INIT], acts[PHOTO_INIT], seconds[PHOTO_INIT] = _run_from_codes(cnn, cfg, dgn_steps, seeds,
                                                                                    codes)
    plain = SynthesisActor(spec("fashion_cnn", dgn=False), device=device)
    image_rows = ((LUCID, "fashion_cnn", "lucid", None), (YOSINSKI, "fashion_cnn", "yosinski", None),
                  (MACO, "fashion_cnn", "lucid", "maco"), (LUCID_VIT, "fashion_vit", "lucid", None),
                  (MACO_VIT, "fashion_vit", "lucid", "maco"))
    for row, model, style, param in image_rows:
        if row in only:
            actor = plain if model == "fashion_cnn" else SynthesisActor(spec(model, dgn=False), device=device)
            images[row], acts[row], seconds[row] = _run(actor, ImageAMConfig.build(style, param=param),
                                                        steps or STYLES[style]["steps"], seeds)
    images[REAL] = real
    means = torch.stack([train_x[train_y == c].float().mean(0) / 255.0 for c in range(10)])
    blurred = torch.nn.functional.avg_pool2d(means, 5, 1, 2, count_include_pad=False)
    images[BLUR] = blurred.repeat_interleave(seeds, 0)

    classes = torch.arange(10).repeat_interleave(seeds)
    scores = {}
    for row, x in images.items():
        d_test, _ = nearest_distances(x, realism_set)
        d_train, _ = nearest_distances(x, train_x)
        scores[row] = {
            "judge": round(float(judged_probability(judge, x, classes).mean()), 3),
            "realism": round(float(d_test.median() / base_real.median()), 3),
            "sharpness": round(float(sharpness(x).mean()) / real_sharp, 3),
            "diversity": round(float(np.mean([pairwise_diversity(x[c * seeds:(c + 1) * seeds])
                                               for c in range(10)])) / real_div, 3),
            "nearest_train_min": round(float(d_train.min()), 3),
            "closer_than_real_p5": int((d_train < copy_p5).sum()),
            "activation": round(float(np.mean(acts[row])), 2) if row in acts else None,
            "seconds": round(seconds[row], 1) if row in seconds else None,
        }
        log(f"{row:38s} {scores[row]}")
    scores["_reference"] = {"real_nn_train_p5": round(copy_p5, 3), "seeds": seeds,
                            "held_out_median_nn": round(float(base_real.median()), 3),
                            "dgn_settings": {**dict(FASHION_FC_DGN), **(dgn or {})}}
    return scores, images


def table(scores: dict) -> str:
    """The markdown table of `scores` (README and BENCHMARKS.md)."""
    lines = ["| row | (a) judge | (b) realism | (c) sharpness | (d) diversity | (e) min dist. to train "
             "(< real p5) | activation | s |", "|---|---|---|---|---|---|---|---|"]
    for row, s in scores.items():
        if row.startswith("_"):
            continue
        act = "–" if s["activation"] is None else f"{s['activation']:.1f}"
        sec = "–" if s["seconds"] is None else f"{s['seconds']:.0f}"
        lines.append(f"| {row} | {s['judge']:.3f} | {s['realism']:.2f} | {s['sharpness']:.2f} | "
                     f"{s['diversity']:.2f} | {s['nearest_train_min']:.2f} ({s['closer_than_real_p5']}) | {act} | "
                     f"{sec} |")
    return "\n".join(lines)


def sheet(images: dict, seeds: int, per_class: int = 2) -> Image.Image:
    """Rows = methods, columns = the 10 classes (the first `per_class` seeds of each, side by side)."""
    tiles, labels, titles = [], [], []
    for r, (row, x) in enumerate(images.items()):
        titles.append((r, row))
        for c in range(10):
            for s in range(per_class):
                img = (x[c * seeds + s, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
                tiles.append(Image.fromarray(img, "L").resize((84, 84), Image.NEAREST))
                labels.append(FASHION_CLASSES[c] if s == 0 else "")
    return contact_sheet(tiles, labels, columns=10 * per_class, tile=84, rows_titles=titles)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--json", help="write the scores here")
    ap.add_argument("--sheet", help="write the contact sheet (PNG) here")
    ap.add_argument("--table", help="write the markdown table here")
    ap.add_argument("--rows", help="';'-separated row names to measure (default: every row but the fashion_vit "
                    "and MACO ones); the real photos and the blurred control are always scored")
    ap.add_argument("--sweep", type=json.loads, help="a JSON list of DGN-AM setting dicts to compare (see above)")
    ap.add_argument("--device", default="cpu", help="where synthesis runs (cpu, cuda, cuda:N)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    if a.sweep:
        print("| settings | fashion_cnn (a) | (b) | fashion_resnet (a) | (b) | real (a) |\n|---|---|---|---|---|---|")
        for settings in a.sweep:
            s, _ = measure(a.seeds, log=lambda m: None, only=(DGN_CNN, DGN_RESNET), dgn=settings, device=a.device)
            c, r = s[DGN_CNN], s[DGN_RESNET]
            print(f"| {json.dumps(settings)} | {c['judge']:.3f} | {c['realism']:.2f} | {r['judge']:.3f} | "
                  f"{r['realism']:.2f} | {s[REAL]['judge']:.3f} |", flush=True)
        return 0
    only = tuple(r.strip() for r in a.rows.split(";")) if a.rows else DEFAULT_ROWS
    unknown = [r for r in only if r not in ROWS]
    if unknown:
        print(f"unknown --rows {unknown}; rows are: {'; '.join(ROWS)}", file=sys.stderr)
        return 2
    scores, images = measure(a.seeds, log=lambda m: print(m, file=sys.stderr), only=only, device=a.device)
    text = table(scores)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(scores, f, indent=1)
    if a.table:
        with open(a.table, "w") as f:
            f.write(text + "\n")
    if a.sheet:
        sheet(images, a.seeds).save(a.sheet)
    print(f"measured in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
