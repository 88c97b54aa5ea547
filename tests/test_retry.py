import errno

import pytest

from models.errors import StorageError
from models.retry import RetryPolicy, is_transient, with_retries
from pipelines.storage import Store


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


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    store = Store(str(tmp_path))
    store.write_bytes("units/a/part-1.parquet", b"x")
    (tmp_path / "units" / "a" / "part-2.parquet.tmp-deadbeef").write_bytes(b"half")
    assert store.find("units") == ["units/a/part-1.parquet"]
    assert store.remove_stale_temporaries() == 1
    assert sorted(p.name for p in (tmp_path / "units" / "a").iterdir()) == ["part-1.parquet"]
