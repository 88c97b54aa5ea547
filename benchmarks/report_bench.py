"""Report speed: `python -m benchmarks.report_bench [--units N] [--quick]` (also part of `make bench`;
`make bench-report` alone).

A synthetic layer of N units (10,000 by default) x 2 seeds with top-k rows (benchmarks/synthetic_out.py:
the real writers, 64 px noise PNGs) is turned into a site by `build_site`, three times: from nothing
(thumbnails included), again with nothing changed, and after one more image of one unit lands (the
incremental case: only that unit's page, its layer page and the index should be rewritten). Then headless
Chromium (tests/browser.py) opens the layer's first and last grid pages over a loopback web server, cold and
warm, and reports the navigation timings: `interactive` is the Navigation Timing `domInteractive`, `ready`
the end of DOMContentLoaded (deferred script run: the jump box works), `load` the load event (every eager
thumbnail decoded); and the time from typing a unit into the jump box to its page having loaded.
`measure_report` returns the figures, `report_lines` the Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

__all__ = ["measure_report", "report_lines"]

TARGET_INTERACTIVE_S = 2.0
TARGET_GENERATE_S = 60.0
_TIMING = ("const n = performance.getEntriesByType('navigation')[0]; "
           "return [n.domInteractive, n.domContentLoadedEventEnd, n.loadEventEnd, n.transferSize];")


def _add_image(root: str, unit: int) -> None:
    """One more image of one unit (seed 1 under other hyperparameters, the strongest of the unit), written as
    `atlas` would (a new part file and PNG)."""
    import numpy as np

    from models.units import Unit
    from pipelines.keys import ItemKey
    from pipelines.sink import write_batch
    from pipelines.storage import Store
    from tasks.actor import ItemResult, WorkItem

    from pipelines.keys import hyperparams_json

    from .synthetic_out import LAYER, MODEL

    key = ItemKey(MODEL, "000100", LAYER, unit, None, None, 1, "image", hyperparams_json({"lr": 0.1}))
    image = np.random.default_rng(99).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    write_batch(Store(root), [key], [ItemResult(WorkItem(Unit(LAYER, unit), 1), image, 9.0, 10.0, 10.0,
                                                np.zeros(4, np.float32), f"unit({LAYER}, {unit})")], 64, "cpu")


def _build(out: str, log) -> dict:
    from pipelines.report.build import ReportSpec, build_site

    t0 = time.perf_counter()
    s = build_site(ReportSpec(out=out), log=lambda m: None)
    row = {"seconds": time.perf_counter() - t0, "pages": s.pages, "written": s.written, "unchanged": s.unchanged,
           "thumbs_made": s.thumbs_made}
    log(f"report: {s.line()}")
    return row


def _browse(root: str, layer_dir: str, units: int, log) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser import chromium, problems, serve

    pages = {"first page": f"site/{layer_dir}/index.html"}
    last = max(int(p[5:-5]) for p in os.listdir(os.path.join(root, "site", layer_dir)) if p.startswith("page-")) \
        if any(p.startswith("page-") for p in os.listdir(os.path.join(root, "site", layer_dir))) else None
    if last:
        pages["last page"] = f"site/{layer_dir}/page-{last}.html"
    out: dict = {}
    with serve(root) as server, chromium() as driver:
        for name, page in pages.items():
            runs = []
            for _ in range(3):  # the first is cold (nothing cached), the others warm
                driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": not runs})
                t0 = time.perf_counter()
                driver.get(server.url(page))
                wall = time.perf_counter() - t0
                interactive, ready, load, size = driver.execute_script(_TIMING)
                tiles = driver.execute_script("return document.querySelectorAll('#grid .tile').length")
                runs.append({"interactive_s": interactive / 1e3, "ready_s": ready / 1e3, "load_s": load / 1e3,
                             "wall_s": wall, "bytes": size, "tiles": tiles})
            found = problems(driver, server)
            out[name] = {"cold": runs[0], "warm": min(runs[1:], key=lambda r: r["ready_s"]), "problems": found}
            log(f"report: {name}: cold interactive {runs[0]['interactive_s']:.3f} s, ready {runs[0]['ready_s']:.3f} s, "
                f"load {runs[0]['load_s']:.3f} s ({runs[0]['tiles']} tiles); {len(found)} problems")
        driver.get(server.url(pages["first page"]))
        target = units - 1
        box = driver.find_element(By.ID, "jump-unit")
        t0 = time.perf_counter()
        box.send_keys(f"{target}\n")
        WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith(f"unit-{target}.html")
                                        and d.execute_script("return document.readyState") == "complete")
        out["jump_s"] = time.perf_counter() - t0
        out["jump_problems"] = problems(driver, server)
        log(f"report: jump to unit {target}: {out['jump_s']:.3f} s")
    return out


def measure_report(units: int = 10_000, log=print, keep: str | None = None) -> dict:
    """Generate the synthetic outputs and the site, and time it and its layer page (module docstring)."""
    from .synthetic_out import LAYER, MODEL, synthetic_out

    with tempfile.TemporaryDirectory() as tmp:
        root = keep or os.path.join(tmp, "out")
        t0 = time.perf_counter()
        synthetic_out(root, units=units, seeds=2, crops=50, px=64)
        result = {"units": units, "seeds": 2, "cores": os.cpu_count(), "outputs_s": time.perf_counter() - t0}
        result["fresh"] = _build(root, log)
        result["unchanged"] = _build(root, log)
        _add_image(root, 5)
        result["one_new_image"] = _build(root, log)
        result["browser"] = _browse(root, f"{MODEL}/000100/{LAYER}", units, log)
    return result


def report_lines(r: dict) -> list[str]:
    """Markdown lines for BENCHMARKS.md."""
    b, f, u, n = r["browser"], r["fresh"], r["unchanged"], r["one_new_image"]
    first = b["first page"]
    lines = ["", "## The browsable atlas (`neuron-atlas report`)", "",
             f"A synthetic layer of {r['units']:,} units x {r['seeds']} seeds with top-k rows "
             f"(`benchmarks/report_bench.py`), on this {r['cores']}-core machine; the site is written by "
             "`build_site`, its pages opened by headless Chromium over a loopback web server.", "",
             "| site generation | seconds | pages written | pages unchanged | thumbnails made |",
             "|---|---|---|---|---|",
             f"| from nothing | {f['seconds']:.1f} | {f['written']:,} | {f['unchanged']:,} | {f['thumbs_made']:,} |",
             f"| rerun, nothing changed | {u['seconds']:.1f} | {u['written']:,} | {u['unchanged']:,} | "
             f"{u['thumbs_made']:,} |",
             f"| rerun after one new image of one unit | {n['seconds']:.1f} | {n['written']:,} | {n['unchanged']:,} | "
             f"{n['thumbs_made']:,} |", "",
             "| layer page | tiles | HTML bytes | domInteractive s | DOMContentLoaded end s | load s |",
             "|---|---|---|---|---|---|"]
    for name in ("first page", "last page"):
        if name in b:
            for kind in ("cold", "warm"):
                x = b[name][kind]
                lines.append(f"| {name}, {kind} | {x['tiles']} | {x['bytes']:,} | {x['interactive_s']:.3f} | "
                             f"{x['ready_s']:.3f} | {x['load_s']:.3f} |")
    ok_gen = f["seconds"] < TARGET_GENERATE_S
    ok_page = first["cold"]["ready_s"] < TARGET_INTERACTIVE_S
    lines += ["", f"Jump box: typing unit {r['units'] - 1:,} on page 1 reaches its page in {b['jump_s']:.2f} s. "
              f"Targets: site generated in under {TARGET_GENERATE_S:.0f} s ({'met' if ok_gen else 'MISSED'}), "
              f"layer page interactive in under {TARGET_INTERACTIVE_S:.0f} s ({'met' if ok_page else 'MISSED'}). "
              f"Console errors or failed requests: {len(first['problems']) + len(b['jump_problems'])}."]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="1,000 units")
    ap.add_argument("--keep", help="write the outputs and site here instead of a temporary folder")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    r = measure_report(1_000 if args.quick else args.units, keep=args.keep)
    print("\n".join(report_lines(r)))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
