import errno
import os
import subprocess
import sys
import time

import pytest

from models.errors import StorageError
from models.retry import RetryPolicy, is_transient, with_retries
from models.storage_client import bounded_options, url_to_fs
from pipelines.storage import STALE_S, Store, _host_tag, is_stale
from tests.s3server import FlakyProxy, free_port


class FakeClientError(Exception):
    pass


@pytest.mark.parametrize("exc,transient", [
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), True),
    (TimeoutError("read timed out"), True),
    (OSError("An error occurred (SlowDown): Please reduce your request rate"), True),
    (FakeClientError("503 Service Unavailable"), True),
    (FileNotFoundError("The specified bucket does not exist"), False),
    (PermissionError("Access Denied"), False),
    (FakeClientError("Unable to locate credentials"), False),
    (ValueError("a bug"), False),
])
def test_fault_classification(exc, transient):
    assert is_transient(exc) is transient


def test_transient_faults_are_retried_until_success():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError(errno.ECONNRESET, "reset")
        return "ok"

    assert with_retries(flaky, "s3://b/k", RetryPolicy(budget_s=5, first_s=0.01)) == "ok"
    assert len(calls) == 3


def test_persistent_faults_raise_one_line_naming_uri_and_cause():
    def denied():
        raise PermissionError("Access Denied")

    with pytest.raises(StorageError, match=r"storage error at 's3://b/k': access denied"):
        with_retries(denied, "s3://b/k")


def test_faults_past_the_budget_become_storage_errors():
    def down():
        raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")

    with pytest.raises(StorageError, match="still failing after"):
        with_retries(down, "s3://b/k", RetryPolicy(budget_s=0.05, first_s=0.01))


def test_bugs_are_not_swallowed():
    def bug():
        raise KeyError("x")

    with pytest.raises(KeyError):
        with_retries(bug, "s3://b/k")


def _exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    store = Store(str(tmp_path))
    store.write_bytes("units/a/part-1.parquet", b"x")
    (tmp_path / "units" / "a" / f"part-2.parquet.tmp-{_host_tag()}-{_exited_pid()}-beef").write_bytes(b"half")
    assert store.find("units") == ["units/a/part-1.parquet"]
    assert store.remove_stale_temporaries() == 1
    assert sorted(p.name for p in (tmp_path / "units" / "a").iterdir()) == ["part-1.parquet"]


def test_only_provably_stale_temporaries_are_removed(tmp_path):
    """Commands that share --out clean up only what no live writer owns: a live process of this host keeps its
    file; a file of another host, or of an older name, is removed only after STALE_S."""
    d = tmp_path / "units"
    d.mkdir()
    live = d / f"a.parquet.tmp-{_host_tag()}-{os.getpid()}-1"
    dead = d / f"b.parquet.tmp-{_host_tag()}-{_exited_pid()}-2"
    elsewhere, old_elsewhere = d / "c.parquet.tmp-0badc0de-17-3", d / "d.parquet.tmp-0badc0de-17-4"
    legacy, old_legacy = d / "e.parquet.tmp-deadbeef", d / "f.parquet.tmp-cafe"
    for f in (live, dead, elsewhere, old_elsewhere, legacy, old_legacy):
        f.write_bytes(b"half")
    hour_ago = time.time() - STALE_S - 60
    for f in (old_elsewhere, old_legacy):
        os.utime(f, (hour_ago, hour_ago))
    assert Store(str(tmp_path)).remove_stale_temporaries() == 3
    assert sorted(p.name for p in d.iterdir()) == sorted(f.name for f in (live, elsewhere, legacy))
    assert not is_stale(str(d / "gone.tmp-x")), "a file removed meanwhile is nobody's to remove"


def test_the_budget_runs_from_the_first_failed_attempt_and_no_attempt_starts_after_it():
    calls = []

    def hangs_then_times_out():
        calls.append(time.monotonic())
        time.sleep(0.3)
        raise TimeoutError("read timed out")

    policy = RetryPolicy(budget_s=1.0, first_s=0.25, max_s=8.0)
    t0 = time.monotonic()
    with pytest.raises(StorageError, match="still failing after 1 s"):
        with_retries(hangs_then_times_out, "s3://b/k", policy)
    assert time.monotonic() - t0 < 1.0 + 0.3 + 0.15  # budget + one attempt (+ scheduling)
    assert calls[-1] - t0 <= 1.0 + 0.05


def test_s3_clients_are_built_without_retries_of_their_own_and_with_budget_timeouts():
    policy = RetryPolicy(budget_s=2)
    options = bounded_options("s3://b/run", {"endpoint_url": "http://127.0.0.1:1"}, policy)
    assert options["endpoint_url"] == "http://127.0.0.1:1"
    config = options["config_kwargs"]
    assert {k: config[k] for k in ("connect_timeout", "read_timeout", "retries")} == {
        "connect_timeout": 1.0, "read_timeout": 1.0, "retries": {"total_max_attempts": 1, "mode": "standard"}}
    assert policy.attempt_timeout_s == 2.0 and RetryPolicy().attempt_timeout_s == 20.0  # s3fs's 5 s + 15 s
    fs, _ = url_to_fs("s3://b/run", {"endpoint_url": "http://127.0.0.1:1", "key": "k", "secret": "s"}, policy)
    assert fs.retries == 1 and fs.config_kwargs["read_timeout"] == 1.0
    assert bounded_options("/tmp/x", {"auto_mkdir": True}, policy) == {"auto_mkdir": True}


def test_a_store_whose_server_never_answers_gives_up_within_budget_plus_one_attempt():
    proxy = FlakyProxy(free_port())  # nothing behind it: while down with hang, it only holds connections
    proxy.outage(hang=True)
    policy = RetryPolicy(budget_s=2)
    try:
        store = Store("s3://bucket/run", {"endpoint_url": proxy.url, "key": "testing", "secret": "testing"}, policy)
        t0 = time.monotonic()
        with pytest.raises(StorageError, match=r"s3://bucket/run/x.png.*still failing after \d+ s.*Read timeout"):
            store.write_bytes("x.png", b"png")
        elapsed = time.monotonic() - t0
    finally:
        proxy.restore()
        proxy.close()
    assert proxy.refused >= 2  # several attempts, each ended by the client's read timeout
    assert policy.budget_s <= elapsed <= policy.budget_s + policy.attempt_timeout_s + 0.5


def test_image_reads_of_topk_and_nearest_hold_the_budget_when_storage_hangs():
    """The images `topk`/`nearest` read go through the same bounded clients: a hanging server stops the
    listing and the reads within budget + one attempt, instead of inside s3fs's own retries."""
    from pipelines.imagesets import list_image_set, read_images

    proxy = FlakyProxy(free_port())
    proxy.outage(hang=True)
    policy = RetryPolicy(budget_s=2)
    options = {"endpoint_url": proxy.url, "key": "testing", "secret": "testing"}
    try:
        for call in (lambda: list_image_set("s3://bucket/images/", options, policy),
                     lambda: read_images(["s3://bucket/images/a.jpg"], options, policy)):
            t0 = time.monotonic()
            with pytest.raises(StorageError, match=r"s3://bucket/images.*still failing after"):
                call()
            assert policy.budget_s <= time.monotonic() - t0 <= policy.budget_s + policy.attempt_timeout_s + 0.5
    finally:
        proxy.restore()
        proxy.close()
