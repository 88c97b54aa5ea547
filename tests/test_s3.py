"""S3 end to end against a real S3-protocol server (moto in server mode, a separate process on loopback):
outputs and weights on S3, driver SIGKILL + resume, transient and persistent storage faults, a server that
stops answering (the run stops within --storage-retry-s + one attempt's timeout), and a scan of every output
byte and log line for a distinctive fake secret."""

from __future__ import annotations

import os
import signal
import time

import pytest

from models.registry import packaged_mobilenet_v2
from models.retry import RetryPolicy
from tests.helpers import SMALL_ATLAS, assert_each_key_once_with_png, run_cli, start_cli, unit_rows, wait_for_parts
from tests.s3server import s3_stack

pytestmark = pytest.mark.integration
SECRET = "NAFAKESECRET-7f3c9e21d4b8-do-not-leak"
ARGS = ["atlas", "--layers", "features.3", "--units", "0:12", "--seeds", "1", "--steps", "40", "--batch-size", "2"]


@pytest.fixture(scope="module")
def s3():
    with s3_stack(SECRET) as stack:
        yield stack


@pytest.fixture
def bucket(s3, request):
    name = "na-" + request.node.name.replace("_", "-").lower()[:40]
    s3.client.create_bucket(Bucket=name)
    return name


def test_s3_weights_and_outputs_rerun_and_no_secret_anywhere(s3, bucket, tmp_path):
    with open(packaged_mobilenet_v2(), "rb") as f:
        s3.fs.pipe_file(f"{bucket}/weights/mnv2.pth", f.read())
    out = f"s3://{bucket}/run"
    args = [*ARGS, "--weights", f"s3://{bucket}/weights/mnv2.pth", "--out", out,
            "--storage-option", "key=testing", "--storage-option", f"secret={SECRET}"]
    first = run_cli(*args, cwd=tmp_path, env=s3.env)
    rows = assert_each_key_once_with_png(s3, f"{bucket}/run", 12)
    assert {r["snapshot"] for r in rows} == {"mnv2"}
    second = run_cli(*args, cwd=tmp_path, env=s3.env)
    assert "nothing to do" in second.stdout

    s3.fs.invalidate_cache()
    objects = s3.fs.find(bucket)
    assert f"{bucket}/run/manifest.json" in objects
    for path in objects:
        assert SECRET.encode() not in s3.fs.cat_file(path), path
    for proc in (first, second):
        assert SECRET not in proc.stdout and SECRET not in proc.stderr
    for root, _dirs, files in os.walk(tmp_path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                assert SECRET.encode() not in f.read()


def test_driver_sigkill_then_resume_finishes_with_every_key_once(s3, bucket, tmp_path):
    out = f"s3://{bucket}/run"
    log = open(tmp_path / "first.log", "w")
    proc = start_cli(*ARGS, "--out", out, cwd=tmp_path, env=s3.env, log=log)
    wait_for_parts(s3, f"{bucket}/run", 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    s3.fs.invalidate_cache()
    present = len(unit_rows(f"{bucket}/run", filesystem=s3.fs))
    assert 0 < present < 12
    second = run_cli(*ARGS, "--out", out, cwd=tmp_path, env=s3.env)
    assert f"resuming: skipping {present} of 12 items" in second.stderr
    assert f"done: {12 - present} items ({present} already present)" in second.stdout
    assert_each_key_once_with_png(s3, f"{bucket}/run", 12)


def test_transient_outage_is_retried_and_loses_nothing(s3, bucket, tmp_path):
    out = f"s3://{bucket}/run"
    log = open(tmp_path / "run.log", "w")
    proc = start_cli(*ARGS, "--out", out, cwd=tmp_path, env=s3.env, log=log)
    wait_for_parts(s3, f"{bucket}/run", 1, proc)
    refused = s3.proxy.refused
    s3.proxy.outage()
    # 4 s from the first refused request: the next write may be a whole (slow, on a loaded machine) batch away
    while s3.proxy.refused == refused and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(4.0)
    s3.proxy.restore()
    assert proc.wait(600) == 0, (tmp_path / "run.log").read_text()[-2000:]
    assert s3.proxy.refused > refused  # the outage really hit the run
    assert_each_key_once_with_png(s3, f"{bucket}/run", 12)


def test_outage_past_the_retry_budget_stops_cleanly_and_resumes(s3, bucket, tmp_path):
    out = f"s3://{bucket}/run"
    log_path = tmp_path / "run.log"
    proc = start_cli(*ARGS, "--out", out, "--storage-retry-s", "2", cwd=tmp_path, env=s3.env,
                     log=open(log_path, "w"))
    wait_for_parts(s3, f"{bucket}/run", 1, proc)
    # down until the run gives up: a fixed-length outage can end while the S3 client's own retries
    # (inside one of ours) still wait, and the run then rightly succeeds
    s3.proxy.outage()
    try:
        code = proc.wait(300)
    finally:
        s3.proxy.restore()
    lines = [ln for ln in log_path.read_text().splitlines() if ln.startswith("neuron-atlas: error:")]
    assert code == 3 and len(lines) == 1 and out in lines[0], log_path.read_text()[-2000:]
    s3.fs.invalidate_cache()
    rows = unit_rows(f"{bucket}/run", filesystem=s3.fs)  # whatever was written is complete and readable
    assert all(s3.fs.exists(f"{bucket}/run/{r['image']}") for r in rows)
    run_cli(*ARGS, "--out", out, cwd=tmp_path, env=s3.env)
    assert_each_key_once_with_png(s3, f"{bucket}/run", 12)


def test_a_server_that_stops_answering_stops_the_run_within_budget_plus_one_attempt(s3, bucket, tmp_path):
    budget = 4.0
    policy = RetryPolicy(budget_s=budget)
    out = f"s3://{bucket}/run"
    log_path = tmp_path / "run.log"
    proc = start_cli(*SMALL_ATLAS, "--seeds", "1", "--out", out, "--storage-retry-s", str(budget), cwd=tmp_path,
                     env=s3.env, log=open(log_path, "w"))
    wait_for_parts(s3, f"{bucket}/run", 1, proc)
    # connections are accepted and never answered: only the client's own timeouts end an attempt
    s3.proxy.outage(hang=True)
    outage_at, error_at = time.monotonic(), None
    try:
        deadline = outage_at + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if error_at is None and "neuron-atlas: error:" in log_path.read_text():
                error_at = time.monotonic()
            time.sleep(0.05)
        exit_at = time.monotonic()
    finally:
        s3.proxy.restore()
        if proc.poll() is None:
            proc.kill()
    lines = [ln for ln in log_path.read_text().splitlines() if ln.startswith("neuron-atlas: error:")]
    assert proc.returncode == 3 and len(lines) == 1 and out in lines[0], log_path.read_text()[-2000:]
    assert "Read timeout" in lines[0]
    error_at = error_at or exit_at
    stop_s = error_at - s3.proxy.blocked_at  # from the first request the outage swallowed
    print(f"\nbudget {budget:g} s + one attempt {policy.attempt_timeout_s:g} s: error line {stop_s:.2f} s after the "
          f"first unanswered request ({error_at - outage_at:.2f} s after the outage began), exit after "
          f"{exit_at - s3.proxy.blocked_at:.2f} s")
    assert budget <= stop_s <= budget + policy.attempt_timeout_s + 1.0  # + 1 s to print the line under load
    assert exit_at - s3.proxy.blocked_at <= budget + policy.attempt_timeout_s + 15  # then Ray shuts down


@pytest.mark.parametrize("case", ["missing bucket", "no credentials"])
def test_persistent_storage_errors_are_one_line(s3, tmp_path, case):
    env = dict(s3.env)
    out = "s3://na-no-such-bucket/run"
    if case == "no credentials":
        env.pop("AWS_ACCESS_KEY_ID")
        env.pop("AWS_SECRET_ACCESS_KEY")
        s3.client.create_bucket(Bucket="na-creds-check")
        out = "s3://na-creds-check/run"
    proc = run_cli(*ARGS, "--out", out, cwd=tmp_path, env=env, check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 3, proc.stderr
    assert len(err) == 1 and err[0].startswith("neuron-atlas: error:") and out in err[0]
    assert ("bucket does not exist" if case == "missing bucket" else "credentials") in err[0]
    assert "Traceback" not in proc.stderr
