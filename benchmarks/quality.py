"""Can a person read the pictures? Ten MobileNetV2 classes, every method, scored the same way, plus speed.

For the classes in CLASSES, one image per class (seed 0) from each of: image AM in the `yosinski` style (pixels,
lowfreq preset, 200 steps), the `lucid` style (the default: Fourier image rendered at 128 px and upsampled to the
net's 224, `zoom` transforms, Adam 0.1 -> 0.01, coarse views at 0.7 of the input for the first half of its 256
steps), what was tried on the way to it (fewer steps, no coarse views, the previous default of Adam 0.05 and 512
steps), the lucid style at Lucent's work (512 steps, standard transforms, Adam 0.05, no coarse views), DGN-AM
with the shipped demo prior (200 steps), and Lucent's default `render_vis` (param.image(128): FFT, decorrelated
colour, upsampled to 224 for the net; standard transforms; Adam 0.05; 512 steps). Ours run through the CLI
(`neuron-atlas atlas`, a fresh process: start-up and model load included); Lucent runs in its own process
(benchmarks/lucent_peer.py). Each saved PNG is scored with tasks/quality.py: (a) mean softmax probability of
its class over 16 fixed random views (random resized crop, scale 0.35-1, then Gaussian blur sigma 2); (b) RMS
contrast; (c) colourfulness; the offline colour photos give the natural (b) and (c).

Two speed figures: at matched work (the lucid style with Lucent's step count, transforms and learning rate, no
coarse views, against Lucent's default, the 10 classes; each run once more, alternately, and the best of two
taken) and the 8-class job (JOB_CLASSES, one seed: the default
`lucid` style against Lucent's default, both as fresh processes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from tasks.image_am import STYLES
from tasks.quality import colourfulness, fixed_views, rms_contrast, view_probability

__all__ = ["CLASSES", "measure_quality", "quality_report"]

CLASSES = {285: "Egyptian cat", 504: "coffee mug", 948: "Granny Smith", 967: "espresso", 980: "volcano",
           947: "mushroom", 999: "toilet tissue", 812: "space shuttle", 417: "balloon", 530: "digital clock"}
JOB_CLASSES = (285, 504, 948, 967, 980, 947, 999, 812)  # the 8-class job of the speed figure
_LUCID_STEPS = STYLES["lucid"]["steps"]
_PEER_STEPS = 512  # Lucent's render_vis default
_PREVIOUS = ["--lr", "0.05", "--lr-end", "0.05", "--coarse", "none"]  # Adam 0.05, full-size views throughout
STYLE_ROW = f"lucid (the default: {_LUCID_STEPS} steps, Adam 0.1 -> 0.01, coarse views for half the steps)"
PEER_ROW = f"Lucent render_vis (its default: 128 px), {_PEER_STEPS} steps"
MATCHED_ROW = (f"lucid at Lucent's work: {_PEER_STEPS} steps, standard transforms, Adam 0.05, no coarse views")

# name -> (how it runs, its arguments); "cli": flags of `neuron-atlas atlas`, "lucent": lucent_peer flags
RUNS: dict[str, tuple[str, list[str]]] = {
    "pixel (yosinski, 200 steps)": ("cli", ["--style", "yosinski"]),
    STYLE_ROW: ("cli", ["--style", "lucid"]),
    f"lucid, {_LUCID_STEPS // 2} steps (tried)": ("cli", ["--style", "lucid", "--steps", str(_LUCID_STEPS // 2)]),
    f"lucid without coarse views, {_LUCID_STEPS} steps (tried)": ("cli", ["--style", "lucid", "--coarse", "none"]),
    f"the previous default: lucid with Adam 0.05, {_PEER_STEPS} steps": ("cli", ["--style", "lucid", *_PREVIOUS,
                                                                               "--steps", str(_PEER_STEPS)]),
    MATCHED_ROW: ("cli", ["--style", "lucid", *_PREVIOUS, "--transforms", "standard", "--steps", str(_PEER_STEPS)]),
    "DGN-AM demo prior (200 steps)": ("cli", ["--method", "dgn"]),
    PEER_ROW: ("lucent", ["--size", "128", "--steps", str(_PEER_STEPS)]),
}
# the 8-class job: name -> (how it runs, its arguments), on JOB_CLASSES
JOB_RUNS: dict[str, tuple[str, list[str]]] = {"ours": ("cli", []),
                                              "lucent": ("lucent", ["--size", "128", "--steps", str(_PEER_STEPS)])}
SHEET_ROWS = ("pixel (yosinski, 200 steps)", STYLE_ROW, "DGN-AM demo prior (200 steps)", PEER_ROW)


def _env(with_bench_deps: bool) -> dict:
    env = dict(os.environ)
    if not with_bench_deps:  # our CLI runs without the peer's packages on its path
        env.pop("PYTHONPATH", None)
    return env


def _run(kind: str, args: list[str], out: str, log, classes=tuple(CLASSES)) -> tuple[float, dict[int, np.ndarray]]:
    """Run one configuration in a fresh process; returns its wall seconds and {class: uint8 image}."""
    units = ",".join(map(str, classes))
    if kind == "cli":
        cmd = [sys.executable, "-m", "pipelines", "atlas", "--layers", "classifier.1", "--units", units,
               "--seeds", "1", "--out", out, *args]
    else:
        cmd = [sys.executable, "-m", "benchmarks.lucent_peer", "--out", out, "--classes", units, *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(kind == "lucent"), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return seconds, _images(kind, out, classes)


def _images(kind: str, out: str, classes) -> dict[int, np.ndarray]:
    if kind == "lucent":
        return {c: np.asarray(Image.open(f"{out}/{c}.png").convert("RGB")) for c in classes}
    from pipelines.sink import read_units
    from pipelines.storage import Store

    store = Store(out)
    return {r["unit"]: np.asarray(Image.open(os.path.join(out, r["image"])).convert("RGB"))
            for r in read_units(store).to_pylist()}


def _scorer():
    from models.loading import load_net
    from models.registry import resolve_model

    net = load_net(resolve_model("mobilenet_v2"), None)
    views = fixed_views(16, seed=0)
    return lambda image, klass: view_probability(lambda x: net.net(net.to_input(x)), image, klass, views)


def _photo_reference() -> dict:
    from pipelines.photos import offline_photos

    colour = [img for _, img in offline_photos(faces=False)
              if (img[..., 0] != img[..., 1]).any() or (img[..., 1] != img[..., 2]).any()]
    return {"count": len(colour), "contrast": float(np.mean([rms_contrast(i) for i in colour])),
            "colourfulness": float(np.mean([colourfulness(i) for i in colour]))}


def measure_quality(workdir: str, sheet: str | None, log) -> dict:
    """Run every configuration of RUNS, score its images, draw the contact sheet; returns the figures."""
    score = _scorer()
    rows, images = {}, {}
    for name, (kind, args) in RUNS.items():
        seconds, imgs = _run(kind, args, os.path.join(workdir, f"run{len(rows)}"), log)
        per_class = {c: {"probability": score(imgs[c], c), "contrast": rms_contrast(imgs[c]),
                         "colourfulness": colourfulness(imgs[c])} for c in CLASSES}
        rows[name] = {"seconds": seconds, "per_class": per_class,
                      **{k: float(np.mean([v[k] for v in per_class.values()]))
                         for k in ("probability", "contrast", "colourfulness")}}
        images[name] = imgs
        log(f"quality: {name}: {seconds:.0f} s, view probability {rows[name]['probability']:.3f}, contrast "
            f"{rows[name]['contrast']:.3f}, colourfulness {rows[name]['colourfulness']:.1f}")
    job = {name: _run(kind, args, os.path.join(workdir, f"job-{name}"), log, JOB_CLASSES)[0]
           for name, (kind, args) in JOB_RUNS.items()}
    ours, lucent = _matched_seconds(rows, workdir, log)
    result = {"classes": CLASSES, "runs": rows, "photos": _photo_reference(),
              "speed": {"steps": _PEER_STEPS, "ours_s": min(ours), "lucent_s": min(lucent), "ours_runs_s": ours,
                        "lucent_runs_s": lucent, "ratio": min(lucent) / min(ours)},
              "job": {"classes": list(JOB_CLASSES), "ours_s": job["ours"], "lucent_s": job["lucent"],
                      "ours_steps": _LUCID_STEPS, "lucent_steps": _PEER_STEPS,
                      "fraction": job["ours"] / job["lucent"]}}
    log(f"quality: lucid style vs Lucent at matched work: {result['speed']['ratio']:.2f}x; the 8-class job: ours "
        f"{job['ours']:.0f} s, Lucent {job['lucent']:.0f} s (1/{job['lucent'] / job['ours']:.1f})")
    if sheet:
        draw_sheet(images, rows, sheet)
        result["sheet"] = sheet
    return result


def _matched_seconds(rows: dict, workdir: str, log) -> tuple[list[float], list[float]]:
    """The wall seconds of the matched-work pair: its runs among RUNS, then each once more, ours then Lucent.
    This 2-core cloud machine drifts (the same matched job took 58 to 78 s across two days, 71 to 78 s within
    ten minutes), and the two runs of a pair are minutes apart; the best of two of each, taken alternately,
    is the figure."""
    ours, lucent = [rows[MATCHED_ROW]["seconds"]], [rows[PEER_ROW]["seconds"]]
    for name, times in ((MATCHED_ROW, ours), (PEER_ROW, lucent)):
        kind, args = RUNS[name]
        times.append(_run(kind, args, os.path.join(workdir, f"again{len(times)}-{kind}"), log)[0])
    log(f"quality: matched work, best of two: ours {', '.join(f'{t:.0f}' for t in ours)} s, Lucent "
        f"{', '.join(f'{t:.0f}' for t in lucent)} s")
    return ours, lucent


def draw_sheet(images: dict, rows: dict, dest: str) -> None:
    """Rows SHEET_ROWS, one column per class, each tile labelled with the class and its view probability."""
    from pipelines.sheet import contact_sheet

    tiles, labels, titles = [], [], []
    for r, name in enumerate(SHEET_ROWS):
        titles.append((r, f"{name}: mean view probability {rows[name]['probability']:.2f}"))
        for c, cname in CLASSES.items():
            tiles.append(Image.fromarray(images[name][c]))
            labels.append(f"{cname} {rows[name]['per_class'][c]['probability']:.2f}")
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    contact_sheet(tiles, labels, columns=len(CLASSES), tile=128, rows_titles=titles).save(dest)


def quality_report(q: dict) -> list[str]:
    """Markdown lines: the quality table, the photo reference, the speed ratio and the sheet."""
    p = q["photos"]
    lines = ["", "## Readable pictures: quality and speed against Lucent", "",
             f"Ten MobileNetV2 classes ({', '.join(f'{c} {n}' for c, n in q['classes'].items())}), one image "
             "each, seed 0 (`benchmarks/quality.py`). (a) mean softmax probability of the class over 16 fixed "
             "random views (random resized crop, scale 0.35–1, then Gaussian blur σ 2); (b) RMS contrast of "
             "the grey image in [0, 1]; (c) colourfulness (Hasler & Süsstrunk 2003). Wall time: a fresh "
             "process for the 10 classes, start-up and model load included.", "",
             "| method | (a) view probability | (b) RMS contrast | (c) colourfulness | wall s |",
             "|---|---|---|---|---|"]
    for name, r in q["runs"].items():
        lines.append(f"| {name} | {r['probability']:.3f} | {r['contrast']:.3f} | {r['colourfulness']:.1f} | "
                     f"{r['seconds']:.0f} |")
    lines.append(f"| offline colour photos ({p['count']}), reference | | {p['contrast']:.3f} | "
                 f"{p['colourfulness']:.1f} | |")
    s = q["speed"]
    lines += ["", f"**Speed at matched work** (the `lucid` style at Lucent's work against Lucent's default "
              f"`render_vis`: {s['steps']} steps, standard transforms on the 128 px FFT + decorrelated colour image, "
              "upsampled to the net's 224 px, Adam 0.05, no coarse views, the 10 classes; ours through the CLI, "
              "Lucent in its own process; each twice, alternately, the best of two): ours "
              f"{s['ours_s']:.0f} s, Lucent {s['lucent_s']:.0f} s — **{s['ratio']:.2f}x**"
              + (f" (runs: ours {', '.join(f'{t:.0f}' for t in s['ours_runs_s'])} s, Lucent "
                 f"{', '.join(f'{t:.0f}' for t in s['lucent_runs_s'])} s)." if "ours_runs_s" in s else ".")]
    if "job" in q:
        j = q["job"]
        lines += ["", f"**Time to a readable picture** (the 8-class job: classes {', '.join(map(str, j['classes']))}, "
                  f"one seed, each a fresh process): the default `lucid` style ({j['ours_steps']} steps) "
                  f"{j['ours_s']:.0f} s, Lucent's default `render_vis` ({j['lucent_steps']} steps) "
                  f"{j['lucent_s']:.0f} s — **1/{1 / j['fraction']:.1f}** of Lucent's time."]
    if "sheet" in q:
        lines += ["", f"![quality contact sheet]({q['sheet']})"]
    return lines
