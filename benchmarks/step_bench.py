"""The optimization step on the hot path (`python -m benchmarks.step_bench`; `make bench` runs it).

The `lucid` style's step on MobileNetV2 logits (the real weights), 4 items per batch, in process, milliseconds
per item-step (best of two alternating runs of `STEPS` steps each), for what was tried on the step itself:
flushing subnormal floats (on, the actors' setting, against off), BatchNorm folded into the convolutions (the
actors' synthesis copy, tasks/actor.SynthesisActor.synthesis_net, against the net as loaded), progressive
resolution (views at 0.7 of the input size, as the style's first half of the steps), and `torch.compile` of the
whole net (forward and the
backward pass to the input; its compile time beside its step time). The figures say what is kept: the actors
flush subnormals on CPUs and the style uses coarse views; `torch.compile` is not used (see the report).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from models.units import Unit
from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem
from tasks.image_am import ImageAMConfig

from .timing import clock

__all__ = ["measure_step", "step_report"]

STEPS = 12
BATCH = 4
NET = NetSpec("mobilenet_v2")  # the real weights


def _ms_per_item_step(actor: SynthesisActor, cfg: ImageAMConfig, steps: int = STEPS) -> float:
    items = tuple(WorkItem(Unit("classifier.1", c), 0) for c in range(BATCH))
    t0 = clock(actor.device)
    actor.run(Batch(items, cfg, steps))
    return (clock(actor.device) - t0) / steps / BATCH * 1000


def _compile_figures(actor: SynthesisActor, steps: int) -> dict:
    """Eager against torch.compile (inductor) for one forward + backward-to-input step of the whole net, every
    timed region closed by waiting for the device (benchmarks/timing.py)."""
    device = actor.device
    net, x0 = actor.target.net, torch.rand(BATCH, 3, *actor.preprocessing.size, device=device)

    def step(f) -> None:
        x = x0.clone().requires_grad_(True)
        torch.autograd.grad(f(actor.model_input(x))[:, :BATCH].sum(), x)

    def timed(f) -> float:
        step(f)
        t0 = clock(device)
        for _ in range(steps):
            step(f)
        return (clock(device) - t0) / steps / BATCH * 1000

    eager = timed(net)
    t0 = clock(device)
    try:
        compiled = torch.compile(net)
        step(compiled)
    except Exception as e:  # a compiler missing on the machine: say so, measure the rest
        return {"eager_ms": eager, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    compile_s = clock(device) - t0
    return {"eager_ms": min(eager, timed(net)), "compiled_ms": timed(compiled), "compile_s": compile_s}


def measure_step(device: str = "cpu", log=print, compile_net: bool = True, net: NetSpec = NET,
                 steps: int = STEPS) -> dict:
    """The figures of the module docstring for `net` (MobileNetV2 with its weights; others only for a smoke run)
    on `device`, best of two runs of `steps` steps; the compile figures unless `compile_net` is false."""
    actor = SynthesisActor(net, device=device)
    full = ImageAMConfig.build("lucid", coarse=False)
    coarse = replace(full, coarse_scale=0.7, coarse_until=1.0)  # every step coarse: the coarse step's cost
    _ms_per_item_step(actor, full, 2)  # warm-up
    rows: dict[str, list[float]] = {"full-size views, subnormals flushed": [], "subnormals not flushed": [],
                                    "BatchNorm not folded into the convolutions": [],
                                    "coarse views (0.7 of the input)": []}
    for _ in range(2):
        rows["full-size views, subnormals flushed"].append(_ms_per_item_step(actor, full, steps))
        if actor.device.type == "cpu":
            torch.set_flush_denormal(False)
            rows["subnormals not flushed"].append(_ms_per_item_step(actor, full, steps))
            torch.set_flush_denormal(True)
        actor.synthesis_net = lambda layers: actor.target.net  # the net as loaded: a frozen BatchNorm per conv
        rows["BatchNorm not folded into the convolutions"].append(_ms_per_item_step(actor, full, steps))
        del actor.synthesis_net  # the class's method again
        rows["coarse views (0.7 of the input)"].append(_ms_per_item_step(actor, coarse, steps))
    result = {"batch": BATCH, "steps": steps, "device": str(actor.device),
              "ms": {k: min(v) for k, v in rows.items() if v}}
    if compile_net:
        result["compile"] = _compile_figures(actor, steps)
    for k, v in result["ms"].items():
        log(f"step: {k}: {v:.1f} ms per item-step")
    if "compile" in result:
        log(f"step: torch.compile: {result['compile']}")
    return result


def step_report(s: dict) -> list[str]:
    """Markdown lines for the step section."""
    base = s["ms"]["full-size views, subnormals flushed"]
    lines = ["", "## The step itself", "",
             f"The `lucid` style's step on MobileNetV2 logits, {s['batch']} items per batch, in process, best of "
             f"two runs of {s['steps']} steps (`benchmarks/step_bench.py`).", "",
             "| variant | ms per item-step | against the kept step |", "|---|---|---|"]
    for k, v in s["ms"].items():
        lines.append(f"| {k} | {v:.1f} | {v / base:.2f}x |")
    c = s.get("compile")
    if c and "compiled_ms" in c:
        verdict = "slower" if c["compiled_ms"] >= c["eager_ms"] else "faster"
        lines += ["", f"**torch.compile** (inductor, the whole net, forward + backward to the input): "
                  f"{c['compile_s']:.0f} s to compile (52 s on a cold compile cache on this machine; later processes "
                  f"reuse the cache), then {c['compiled_ms']:.1f} ms per item-step against {c['eager_ms']:.1f} eager: "
                  f"{verdict} on `{s.get('device', 'cpu')}`. Not used: the layer-capture hooks that stop the "
                  "forward pass at the target layer break its graph, and a small job cannot pay a cold compile."]
    elif c:
        lines += ["", f"**torch.compile** could not run here ({c['error']}); eager {c['eager_ms']:.1f} ms."]
    return lines


if __name__ == "__main__":
    for line in step_report(measure_step()):
        print(line)
