"""Compaction: parts merged per partition, every key exactly once for every reader at every moment (also when
a compaction dies between any two of its writes), nothing lost, resumed runs still skip what is done."""

import pyarrow.parquet as pq
import pytest

from pipelines.compaction import compact, live_files
from pipelines.sink import done_keys, read_dataset, read_units, write_batch
from pipelines.storage import Store
from tests.test_sink import key, result


def write_parts(store, layers=("features.2", "fc"), batches=4, per=3, first=0):
    keys = []
    for layer in layers:
        for b in range(batches):
            ks = [key(first + b * per + i, layer=layer, y=None, x=None) for i in range(per)]
            write_batch(store, ks, [result(k) for k in ks], steps=5, device="cpu")
            keys += ks
    return {k.as_tuple() for k in keys}


def assert_each_key_once(store, want):
    rows = read_units(store).to_pylist()
    got = [(r["model"], r["snapshot"], r["layer"], r["unit"], r["y"], r["x"], r["seed"], r["method"],
            r["hyperparams"]) for r in rows]
    assert len(got) == len(set(got)) and set(got) == want
    assert done_keys(store) == want
    acts = read_dataset(store, "activations", columns=["unit", "layer"])
    assert acts.num_rows == len(want)


def parquet_files(store):
    return [p for d in ("units", "activations") for p in store.find(d, ".parquet")]


def test_compaction_merges_each_partition_into_one_file_and_loses_nothing(tmp_path):
    store = Store(str(tmp_path / "out"))
    want = write_parts(store)
    assert len(parquet_files(store)) == 16
    s = compact(store)
    assert s.partitions == 4 and s.merged == 4 and s.files_after == 4 and s.removed == 16
    assert len(parquet_files(store)) == 4
    assert_each_key_once(store, want)
    assert compact(store).merged == 0  # a compacted output stays as it is
    more = write_parts(store, layers=("fc",), batches=2, per=2, first=20)  # a later run's new parts
    compact(store)
    assert len(parquet_files(store)) == 4
    assert_each_key_once(store, want | more)


class Killed(Exception):
    pass


@pytest.mark.parametrize("die_after", [*range(0, 20, 2), 19])
def test_a_compaction_killed_after_any_write_or_delete_leaves_each_key_once(tmp_path, monkeypatch, die_after):
    store = Store(str(tmp_path / "out"))
    want = write_parts(store)
    calls = {"n": 0}
    real_write, real_remove = Store.write_bytes, Store.remove

    def counting(real):
        def op(self, *a, **k):
            if calls["n"] >= die_after:
                raise Killed
            calls["n"] += 1
            return real(self, *a, **k)
        return op
    monkeypatch.setattr(Store, "write_bytes", counting(real_write))
    monkeypatch.setattr(Store, "remove", counting(real_remove))
    with pytest.raises(Killed):
        compact(store)
    monkeypatch.setattr(Store, "write_bytes", real_write)
    monkeypatch.setattr(Store, "remove", real_remove)
    assert_each_key_once(store, want)  # mid-compaction, for every reader of the project
    compact(store)
    assert len(parquet_files(store)) == 4
    assert_each_key_once(store, want)


def test_live_files_hide_merged_sources_and_compact_files_record_them(tmp_path):
    store = Store(str(tmp_path / "out"))
    write_parts(store, layers=("fc",), batches=3)
    parts = store.find("units", ".parquet")
    compact(store)
    (merged,) = store.find("units", ".parquet")
    sources = pq.read_metadata(store.path(merged)).metadata[b"neuron-atlas.sources"]
    assert all(p.rsplit("/", 1)[1].encode() in sources for p in parts)
    assert live_files(store, [*parts, merged]) == [merged]


def test_the_resume_check_lists_only_the_partitions_of_the_run(tmp_path):
    store = Store(str(tmp_path / "out"))
    write_parts(store)
    fc = key(0, layer="fc", y=None, x=None).partition()
    got = done_keys(store, partitions=[fc])
    assert got and {k[2] for k in got} == {"fc"}
    compact(store)
    assert done_keys(store, partitions=[fc]) == got
