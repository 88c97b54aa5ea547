"""`neuron-atlas compact` on the S3 server: SIGKILLed at random moments (10 times) and run again, every key
stays present exactly once for every reader at every moment and no row is lost; a resumed atlas after
compaction does no work; bad input is one line."""

import random
import signal
import time

import pytest

from pipelines.sink import done_keys, read_dataset, read_units, write_batch
from pipelines.storage import Store
from tests.helpers import run_cli, start_cli
from tests.s3server import s3_stack
from tests.test_sink import key, result

pytestmark = pytest.mark.integration
SECRET = "compaction-test-secret"


@pytest.fixture(scope="module")
def s3():
    with s3_stack(SECRET) as stack:
        yield stack


def s3_store(s3, prefix: str) -> Store:
    return Store(f"s3://{prefix}", {"endpoint_url": s3.proxy.url, "key": "testing", "secret": SECRET})


def keys_once(store: Store) -> set:
    rows = read_units(store).to_pylist()
    got = [(r["model"], r["snapshot"], r["layer"], r["unit"], r["y"], r["x"], r["seed"], r["method"],
            r["hyperparams"]) for r in rows]
    assert len(got) == len(set(got)), "a key is present twice"
    assert done_keys(store) == set(got)
    assert read_dataset(store, "activations", columns=["unit"]).num_rows == len(got)
    return set(got)


def test_compaction_killed_ten_times_keeps_every_key_exactly_once(s3, tmp_path):
    s3.client.create_bucket(Bucket="compact-kills")
    store = s3_store(s3, "compact-kills/out")
    want = set()
    for p in range(24):  # 24 partitions x 5 parts x (units + activations) = 240 small files
        layer = f"layer{p:02d}"
        for b in range(5):
            ks = [key(b * 4 + i, layer=layer, y=None, x=None) for i in range(4)]
            write_batch(store, ks, [result(k) for k in ks], steps=5, device="cpu")
            want |= {k.as_tuple() for k in ks}
    store.write_bytes("manifest.json", b"{}")
    rng = random.Random(7)
    args = ["compact", "s3://compact-kills/out"]
    kills = 0
    for attempt in range(40):
        proc = start_cli(*args, cwd=tmp_path, env=s3.env)
        time.sleep(rng.uniform(0.5, 3.0))
        if proc.poll() is not None:
            break  # it finished before this kill: every later attempt would too
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert keys_once(store) == want, f"after kill {kills}"
        if kills == 10:
            break
    assert kills == 10, f"compaction finished after {kills} kills; the test needs it to run longer"
    done = run_cli(*args, cwd=tmp_path, env=s3.env)
    assert "compacted" in done.stdout
    assert keys_once(store) == want
    files = [p for d in ("units", "activations") for p in store.find(d, ".parquet")]
    assert len(files) == 48 and all("/compact-" in p for p in files)


def test_a_resumed_atlas_after_compaction_does_no_work(tmp_path):
    out = tmp_path / "atlas"
    args = ["atlas", "--model", "tests.selfloading_net:ONetLike", "--input-size", "48", "--layers", "conv[34]",
            "--units", "0:3", "--seeds", "2", "--steps", "2", "--batch-size", "2", "--out", str(out)]
    first = run_cli(*args, cwd=tmp_path)
    assert "compacted" in first.stderr
    assert all("compact-" in p.name for p in (out / "units").rglob("*.parquet"))
    again = run_cli(*args, cwd=tmp_path)
    assert "nothing to do" in again.stdout
    assert "compacted" in run_cli("compact", str(out), cwd=tmp_path).stdout


@pytest.mark.parametrize("case", ["not an output", "unwritable"])
def test_bad_compact_input_is_one_line(tmp_path, case, capsys, monkeypatch):
    import os

    from pipelines.cli import main

    out = tmp_path / "x"
    out.mkdir()
    if case == "unwritable":
        (out / "manifest.json").write_text("{}")
        real = os.access  # root writes anywhere: an unwritable folder is simulated where the check asks
        monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p) == str(out) else real(p, mode, **k))
    code = main(["compact", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert ("not a neuron-atlas output folder" if case == "not an output" else "is not writable") in lines[0]
