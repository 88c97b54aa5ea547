"""`neuron-atlas snapshots` end to end through the CLI and Ray (marked integration), on a local folder and on
the moto S3 server: a trainer writes checkpoints, markers and metrics while the watcher follows; each
snapshot is processed exactly once; a checkpoint written slowly is never read before it is whole; corrupt
and wrong-architecture checkpoints are named, skipped and recorded; a SIGKILLed watcher started again loses
and duplicates nothing, in its outputs and in its TensorBoard event files on the bucket; --until-idle ends the
watch."""

from __future__ import annotations

import io
import json
import signal
import threading
import time
import types

import boto3
import pyarrow.parquet as pq
import pytest
import s3fs
import torch
from torch import nn

from tests.helpers import assert_each_key_once_with_png, key_of, run_cli, start_cli, unit_rows
from tests.s3server import MotoServer, s3_env
from tests.selfloading_net import ONetLike

pytestmark = pytest.mark.integration

# 2 units x 1 seed per snapshot on the small self-loading net; yosinski style (no random views), few steps
def sweep_args(units: str = "0:2", steps: int = 4) -> list[str]:
    return ["snapshots", "--model", "tests.selfloading_net:ONetLike", "--input-size", "48", "--layers", "dense6_3",
            "--units", units, "--seeds", "1", "--steps", str(steps), "--style", "yosinski", "--batch-size", "2"]


SWEEP = sweep_args()


def checkpoint_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    torch.save(ONetLike(weights_seed=seed).state_dict(), buf)
    return buf.getvalue()


def wrong_architecture_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save(nn.Linear(3, 2).state_dict(), buf)
    return buf.getvalue()


def write_snapshot(folder, step: int, data: bytes | None = None, marker: bool = True, accuracy: float | None = None):
    """What a trainer does: the checkpoint, its metrics sidecar, then its marker (see the README snippet)."""
    name = f"ckpt_{step:05d}.pt"
    (folder / name).write_bytes(checkpoint_bytes(step) if data is None else data)
    if accuracy is not None:
        (folder / f"{name}.json").write_text(json.dumps({"val_accuracy": accuracy}))
    if marker:
        (folder / f"{name}.done").write_text("")


def write_slowly(path, data: bytes, pieces: int = 8, pause: float = 0.4) -> None:
    with open(path, "wb") as f:
        for i in range(pieces):
            f.write(data[i * len(data) // pieces:(i + 1) * len(data) // pieces])
            f.flush()
            time.sleep(pause)


def wait_until(predicate, proc, log, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.time() < deadline, "timed out; " + log.read_text()[-3000:]
        time.sleep(0.2)


def labels_done(out) -> set[str]:
    try:
        return {r["snapshot"] for r in unit_rows(str(out))}
    except (FileNotFoundError, OSError):
        return set()


def test_follow_local_markers_corrupt_and_late_checkpoints_then_until_idle(tmp_path):
    ckpts, out = tmp_path / "ckpts", tmp_path / "out"
    ckpts.mkdir()
    write_snapshot(ckpts, 100, accuracy=0.3)
    write_snapshot(ckpts, 200, accuracy=0.6)
    write_snapshot(ckpts, 300, data=checkpoint_bytes(300)[:5000])  # truncated
    write_snapshot(ckpts, 400, data=wrong_architecture_bytes())
    log = tmp_path / "watch.log"
    proc = start_cli(*SWEEP, "--checkpoints", str(ckpts), "--follow", "--interval", "1", "--until-idle", "6",
                     "--out", str(out), cwd=tmp_path, log=open(log, "w"))
    wait_until(lambda: {"000000100", "000000200"} <= labels_done(out), proc, log)
    # a later checkpoint, written slowly and marked only when whole: never read before its marker
    write_slowly(ckpts / "ckpt_00500.pt", checkpoint_bytes(500))
    (ckpts / "ckpt_00500.pt.json").write_text(json.dumps({"val_accuracy": 0.9}))
    (ckpts / "ckpt_00500.pt.done").write_text("")
    assert proc.wait(timeout=240) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "no new snapshot for 6 s; stopping (--until-idle)" in text

    rows = unit_rows(str(out))
    keys = [key_of(r) for r in rows]
    assert len(keys) == len(set(keys)) == 3 * 2
    assert sorted({r["snapshot"] for r in rows}) == ["000000100", "000000200", "000000500"]
    skipped = [ln for ln in text.splitlines() if ln.startswith("skipped checkpoint")]
    assert len(skipped) == 2, text[-3000:]
    assert f"{ckpts}/ckpt_00300.pt: weights" in skipped[0] and "not a PyTorch checkpoint" in skipped[0]
    assert f"{ckpts}/ckpt_00400.pt: weights" in skipped[1] and "do not fit model" in skipped[1]
    assert "ckpt_00500.pt" not in "".join(skipped)

    manifest = json.loads((out / "manifest.json").read_text())
    run = manifest["runs"][manifest["latest_run"]]
    assert sorted(run["failed_checkpoints"]) == ["ckpt_00300.pt", "ckpt_00400.pt"]
    assert sorted(run["snapshots"]) == ["000000100", "000000200", "000000500"] and run["status"] == "idle"

    tracking = next(out.glob("tracking/*/*/steps.parquet"))
    table = pq.read_table(tracking).to_pylist()
    assert sorted((r["step"], r["unit"], r["val_accuracy"]) for r in table) == [
        (100, 0, 0.3), (100, 1, 0.3), (200, 0, 0.6), (200, 1, 0.6), (500, 0, 0.9), (500, 1, 0.9)]
    assert all((out / r["filmstrip"]).is_file() and (out / r["plot"]).is_file() for r in table)

    again = run_cli(*SWEEP, "--checkpoints", str(ckpts), "--out", str(out), cwd=tmp_path)
    assert "nothing to do: 3 snapshots" in again.stdout and "skipped checkpoint" not in again.stderr


def test_without_markers_a_slowly_written_checkpoint_waits_until_it_is_stable(tmp_path):
    ckpts, out = tmp_path / "ckpts", tmp_path / "out"
    ckpts.mkdir()
    write_snapshot(ckpts, 10, marker=False)
    log = tmp_path / "watch.log"
    proc = start_cli(*SWEEP, "--checkpoints", str(ckpts), "--follow", "--interval", "1", "--until-idle", "5",
                     "--out", str(out), cwd=tmp_path, log=open(log, "w"))
    wait_until(lambda: "000000010" in labels_done(out), proc, log)
    writer = threading.Thread(target=write_slowly, args=(ckpts / "ckpt_00020.pt", checkpoint_bytes(20), 10, 0.5))
    writer.start()  # 5 s of writing: size changes between every two polls
    writer.join()
    assert proc.wait(timeout=240) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "skipped checkpoint" not in text, text[-3000:]
    rows = unit_rows(str(out))
    assert sorted(r["snapshot"] for r in rows) == ["000000010"] * 2 + ["000000020"] * 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runs"][manifest["latest_run"]]["failed_checkpoints"] == {}


@pytest.fixture(scope="module")
def s3():
    server = MotoServer()
    client = boto3.client("s3", endpoint_url=server.url, aws_access_key_id="testing",
                          aws_secret_access_key="testing-secret", region_name="us-east-1")
    fs = s3fs.S3FileSystem(endpoint_url=server.url, key="testing", secret="testing-secret", skip_instance_cache=True)
    yield types.SimpleNamespace(env=s3_env(server.url), client=client, fs=fs)
    server.stop()


def test_s3_sigkilled_watcher_restarted_loses_and_duplicates_nothing_and_follows_new_checkpoints(s3, tmp_path):
    s3.client.create_bucket(Bucket="na-snap")

    def upload(step: int, data: bytes | None = None) -> None:
        name = f"na-snap/ckpts/ckpt_{step:05d}.pt"
        s3.fs.pipe_file(name, checkpoint_bytes(step) if data is None else data)
        s3.fs.pipe_file(f"{name}.json", json.dumps({"val_accuracy": step / 1000}).encode())
        s3.fs.pipe_file(f"{name}.done", b"")

    for step in (100, 200, 300, 400, 500):
        upload(step)
    upload(600, checkpoint_bytes(600)[:3000])  # truncated
    args = [*sweep_args("0:6", 24), "--checkpoints", "s3://na-snap/ckpts", "--follow",
            "--interval", "1", "--out", "s3://na-snap/out", "--tensorboard", "s3://na-snap/tb"]
    first_log = tmp_path / "first.log"
    proc = start_cli(*args, cwd=tmp_path, env=s3.env, log=open(first_log, "w"))

    def parts() -> int:
        s3.fs.invalidate_cache()
        return len([p for p in s3.fs.find("na-snap/out/units") if p.endswith(".parquet")])

    wait_until(lambda: parts() >= 2, proc, first_log)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = parts()
    assert written < 15, "the watcher finished before the kill; nothing was tested"

    second_log = tmp_path / "second.log"
    proc = start_cli(*args, "--until-idle", "5", cwd=tmp_path, env=s3.env, log=open(second_log, "w"))
    wait_until(lambda: parts() == 15, proc, second_log)
    upload(700)  # written while the restarted watcher follows
    assert proc.wait(timeout=240) == 0, second_log.read_text()[-3000:]
    text = second_log.read_text()
    assert "skipped checkpoint s3://na-snap/ckpts/ckpt_00600.pt: " in first_log.read_text()
    assert "resuming: skipping" in text and "ckpt_00600" not in text  # recorded as failed: not read again
    rows = assert_each_key_once_with_png(s3, "na-snap/out", 6 * 6)
    assert sorted({r["snapshot"] for r in rows}) == [f"000000{s}" for s in (100, 200, 300, 400, 500, 700)]
    s3.fs.invalidate_cache()
    manifest = json.loads(s3.fs.cat_file("na-snap/out/manifest.json"))
    run = manifest["runs"][manifest["latest_run"]]
    assert list(run["failed_checkpoints"]) == ["ckpt_00600.pt"] and len(run["snapshots"]) == 6
    tracking = [p for p in s3.fs.find("na-snap/out/tracking") if p.endswith("steps.parquet")]
    table = pq.read_table(io.BytesIO(s3.fs.cat_file(tracking[0]))).to_pylist()
    assert len(table) == 36 and {r["val_accuracy"] for r in table} == {0.1, 0.2, 0.3, 0.4, 0.5, 0.7}
    # TensorBoard: one event file per snapshot on the bucket, every unit once per step despite the SIGKILL
    from tensorboard.backend.event_processing import event_accumulator as ea

    events = [p for p in s3.fs.find("na-snap/tb/neuron-atlas") if "tfevents" in p.rsplit("/", 1)[1]]
    assert len(events) == 6, events
    local = tmp_path / "tb" / "neuron-atlas"
    local.mkdir(parents=True)
    for p in events:
        (local / p.rsplit("/", 1)[1]).write_bytes(s3.fs.cat_file(p))
    acc = ea.EventAccumulator(str(local), size_guidance={ea.IMAGES: 0, ea.SCALARS: 0})
    acc.Reload()
    for unit in range(6):
        assert [e.step for e in acc.Images(f"neuron-atlas/dense6_3/u{unit}/s0")] == [100, 200, 300, 400, 500, 700]
