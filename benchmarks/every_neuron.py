"""`make every-neuron`: an atlas of every unit of every layer of `fashion_cnn` (or `fashion_vit`), with its plan.

    python -m benchmarks.every_neuron [--model fashion_cnn|fashion_vit] [--out every-neuron-out]
        [--screenshot docs/every-neuron-layer.png]

1. `neuron-atlas plan` of the job (its per-layer estimate, JSON), as a person would before booking machines;
2. `neuron-atlas atlas` of the same flags, timed end to end as a fresh process: every conv channel (channel
   objective: its mean over positions, a fully connected unit is itself), every fc unit and every logit
   (`--layers all --units all --objective channel`), DGN-AM through the net's own prior `fashion-fc`, 1 seed;
3. `neuron-atlas report` and a headless-Chromium screenshot of the fc7 layer page;
4. prints the plan's estimate beside the measured wall time (OUT/every-neuron.json).
A rerun with the atlas finished redoes only the site and the screenshot. For `fashion_vit` every unit is a feature
channel of a token layer (the patch embedding's maps, each block's MLP neurons, the logits): the channel objective
is its mean over the 7 x 7 patch tokens, and the screenshot shows a block's MLP layer page.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

__all__ = ["JOB", "SCREENSHOT_LAYER", "job", "main"]

JOB = ["--layers", "all", "--units", "all", "--objective", "channel", "--method", "dgn", "--seeds", "1"]
# the layer page each model's screenshot shows: fc7, and a middle block's MLP neurons
SCREENSHOT_LAYER = {"fashion_cnn": "classifier.4", "fashion_vit": "encoder.layers.encoder_layer_3.mlp.0"}


def job(model: str) -> list[str]:
    """The atlas/plan flags of the every-neuron job of `model`."""
    return ["--model", model, *JOB]


def _cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pipelines", *args], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"neuron-atlas {args[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def screenshot(out: str, dest: str, layer: str = "classifier.4", model: str = "fashion_cnn") -> None:
    """A 1280 px wide headless-Chromium picture of one layer page of the site under `out`."""
    from tests.browser import chromium, serve

    page = f"site/{model}/{model}/{layer}/index.html"
    with serve(out) as server, chromium(1280, 1000) as driver:
        driver.get(server.url(page))
        time.sleep(1.0)
        driver.save_screenshot(dest)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fashion_cnn", choices=sorted(SCREENSHOT_LAYER))
    ap.add_argument("--out", default="./every-neuron-out")
    ap.add_argument("--screenshot", help="write the layer page's screenshot here too (e.g. docs/...png)")
    a = ap.parse_args(argv)
    out = os.path.abspath(a.out)
    plan = json.loads(_cli("plan", *job(a.model), "--out", out, "--json").stdout)
    estimate = plan["total"]["seconds"]["1"]
    print(f"plan: {plan['total']['items']:,} items ({plan['total']['done']:,} done), estimate {estimate:.0f} s "
          f"on 1 actor, {plan['total']['bytes'] / 1e6:.1f} MB (calibration {plan['calibration_s']:.1f} s)",
          file=sys.stderr)
    t0 = time.perf_counter()
    run = _cli("atlas", *job(a.model), "--out", out)
    wall = time.perf_counter() - t0
    print(run.stdout.strip(), file=sys.stderr)
    t1 = time.perf_counter()
    _cli("report", out)
    site_s = time.perf_counter() - t1
    shot = os.path.join(out, "layer-page.png")
    layer = SCREENSHOT_LAYER[a.model]
    screenshot(out, shot, layer, a.model)
    if a.screenshot:
        screenshot(out, a.screenshot, layer, a.model)
    written = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs
                  if "/site" not in d and not f.endswith(".json"))
    result = {"items": plan["total"]["items"], "planned_todo": plan["total"]["items"] - plan["total"]["done"],
              "estimate_s": estimate, "wall_s": round(wall, 1), "site_s": round(site_s, 1),
              "estimate_error": None if not plan["total"]["items"] - plan["total"]["done"] else
              round(estimate / wall - 1, 3), "planned_bytes": plan["total"]["bytes"], "written_bytes": written,
              "plan": plan}
    with open(os.path.join(out, "every-neuron.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"every neuron of {a.model}: {result['items']:,} items in {wall:.0f} s (plan: {estimate:.0f} s, "
          f"{100 * (result['estimate_error'] or 0):+.0f} %); bytes {written / 1e6:.1f} MB (plan "
          f"{(plan['total']['bytes'] or 0) / 1e6:.1f} MB); site {site_s:.1f} s; screenshot {shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
