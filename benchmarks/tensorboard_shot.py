"""Screenshots of TensorBoard's image dashboard over a snapshot sweep's event files (the README's picture).

`python -m benchmarks.tensorboard_shot LOGDIR DEST [--early-step N] [--tag-filter REGEX]`: serves LOGDIR
with the `tensorboard` command on 127.0.0.1 (a free port), opens its images dashboard in headless Chromium
(tests/browser.py) and saves DEST: two screenshots side by side, TensorBoard as it was once the sweep had
processed the snapshots up to step N (a copy of LOGDIR holding the trainer's events and the neuron-atlas
event files of those snapshots only: each snapshot is its own file) and as it is at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image, ImageDraw

__all__ = ["serve_tensorboard", "dashboard_shot", "two_steps"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_tensorboard(logdir: Path, timeout: float = 90.0):
    """`tensorboard --logdir LOGDIR` on loopback; yields its base URL once it answers."""
    port = _free_port()
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
           "--port", str(port), "--reload_interval", "1", "--load_fast", "false"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/data/runs", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"tensorboard did not start: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def dashboard_shot(url: str, dest: Path, tag_filter: str, settle_s: float = 6.0) -> Path:
    """The images dashboard at `url`, its tags filtered by `tag_filter`, as a PNG at `dest`."""
    from tests.browser import chromium, screenshot

    with chromium(width=1400, height=1900) as driver:
        driver.get(f"{url}/?darkMode=false#images&tagFilter={urllib.request.quote(tag_filter)}")
        time.sleep(settle_s)  # the dashboard fetches its runs, tags and images after the page loads
        return screenshot(driver, dest)


def _early_copy(logdir: Path, step: int, into: Path) -> Path:
    """A copy of `logdir` with every file except the neuron-atlas event files of snapshots after `step`."""
    for path in logdir.rglob("*"):
        if not path.is_file():
            continue
        if path.parent.name == "neuron-atlas" and "tfevents" in path.name and int(path.name.rsplit(".", 1)[1]) > step:
            continue
        target = into / path.relative_to(logdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return into


def two_steps(logdir: Path, dest: Path, early_step: int, tag_filter: str) -> Path:
    """TensorBoard after the snapshots up to `early_step`, and at the end, side by side, captioned."""
    shots = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for name, folder in (("early", _early_copy(logdir, early_step, work / "early")), ("end", logdir)):
            with serve_tensorboard(folder) as url:
                shots.append(Image.open(dashboard_shot(url, work / f"{name}.png", tag_filter)).convert("RGB"))
    w, h = shots[0].size
    caption = 28
    sheet = Image.new("RGB", (2 * w + 10, h + caption), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (img, text) in enumerate(zip(shots, (f"after the snapshot of step {early_step}", "at the end of training"))):
        sheet.paste(img, (i * (w + 10), caption))
        draw.text((i * (w + 10) + 8, 8), f"TensorBoard images dashboard, {text}", fill="black")
    dest.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(dest)
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("logdir", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--early-step", type=int, default=60)
    ap.add_argument("--tag-filter", default=r"fc2/u[0-9]/s0$")
    args = ap.parse_args(argv)
    print(two_steps(args.logdir.resolve(), args.dest, args.early_step, args.tag_filter))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
