import numpy as np
import pytest
from PIL import Image

from models.errors import UserInputError
from models.units import Unit
from pipelines.keys import ItemKey, safe_segment
from pipelines.sink import done_keys, read_units, write_batch
from pipelines.storage import Store
from tasks.actor import ItemResult, WorkItem


def key(unit, seed=0, layer="features.2", y=3, x=4):
    return ItemKey("tinynet", "snap", layer, unit, y, x, seed, "image", '{"lr":1}')


def result(k):
    img = np.full((8, 8, 3), k.unit * 10, np.uint8)
    return ItemResult(WorkItem(Unit(k.layer, k.unit, k.y, k.x), k.seed), img, 0.5, 2.0, 2.5,
                      np.arange(6, dtype=np.float32), f"unit({k.layer}, {k.unit})")


@pytest.mark.parametrize("bad", ["..", ".", "", "../../etc"])
def test_unsafe_segments_are_refused(bad):
    with pytest.raises(UserInputError):
        safe_segment(bad)


def test_segments_are_sanitized():
    assert safe_segment("a/b\\c:d e") == "a_b_c_d_e"
    assert safe_segment("/abs") == "_abs"
    assert safe_segment("features.14.conv.1") == "features.14.conv.1"


def test_image_paths_derive_from_the_key():
    k = key(5, seed=2)
    assert k.image_path.startswith("images/tinynet/snap/features.2/5_3_4_s2_image-")
    assert key(5, y=None, x=None, layer="fc").image_path.split("/")[-1].startswith("5_s0_")
    assert k.image_path != ItemKey(*k.as_tuple()[:-1], '{"lr":2}').image_path


def test_write_then_read_back_every_key_once(tmp_path):
    store = Store(str(tmp_path / "out"))
    keys = [key(u, s) for u in range(3) for s in range(2)]
    write_batch(store, keys, [result(k) for k in keys], steps=7, device="cpu")
    write_batch(store, keys, [result(k) for k in keys], steps=7, device="cpu")  # a retried batch overwrites
    assert done_keys(store) == {k.as_tuple() for k in keys}
    table = read_units(store)
    assert table.num_rows == len(keys)
    row = table.to_pylist()[0]
    assert row["model"] == "tinynet" and row["layer"] == "features.2" and row["steps"] == 7
    img = Image.open(tmp_path / "out" / row["image"])
    assert img.format == "PNG" and img.size == (8, 8)
    assert not list((tmp_path / "out").rglob("*.tmp-*"))


def test_batches_never_span_partitions(tmp_path):
    keys = [key(0), key(1, layer="fc", y=None, x=None)]
    with pytest.raises(ValueError):
        write_batch(Store(str(tmp_path)), keys, [result(k) for k in keys], 1, "cpu")
