"""Image sets named by --images: folders (recursive, sorted, class folders as labels), Parquet rows (binary
or struct image columns, labels), files that are not images, unreadable files skipped with a reason, and
one-line errors for a missing or empty set."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from models.errors import UserInputError
from pipelines.imagesets import list_image_set, load_image, read_images


def png(seed: int, size=(9, 7)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def pixels(blob: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))


def test_class_folders_give_labels_and_other_files_are_named(tmp_path):
    for i, rel in enumerate(["cat/b.png", "cat/a.JPG", "dog/c.png"]):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(png(i) if rel.endswith("png") else _jpeg(i))
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    s = list_image_set(str(tmp_path), {})
    assert [src.uri for src in s.sources] == [str(tmp_path / r) for r in ("cat/a.JPG", "cat/b.png", "dog/c.png")]
    assert [src.label for src in s.sources] == ["cat", "cat", "dog"] and s.labelled
    assert s.ignored == (str(tmp_path / "dog" / "notes.txt"),)
    (tmp_path / "top.png").write_bytes(png(9))  # an image at the root: no class layout any more
    assert not list_image_set(str(tmp_path), {}).labelled


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(png(seed))).save(buf, format="JPEG")
    return buf.getvalue()


def test_unreadable_files_are_skipped_with_a_reason(tmp_path):
    (tmp_path / "good.png").write_bytes(png(1))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    sources = [s.uri for s in list_image_set(str(tmp_path), {}).sources]
    images, failed = read_images(sources + [str(tmp_path / "gone.png")], {})
    assert images[0] is None and np.array_equal(images[1], pixels(png(1))) and images[2] is None
    assert [f[0] for f in failed] == [str(tmp_path / "broken.jpg"), str(tmp_path / "gone.png")]
    assert all(f[1] for f in failed)
    with pytest.raises(OSError, match="broken.jpg"):
        load_image(str(tmp_path / "broken.jpg"), {})


@pytest.mark.parametrize("struct", [False, True])
def test_parquet_rows_with_labels(tmp_path, struct):
    blobs = [png(i) for i in range(5)] + [b"garbage"]
    column = (pa.array([{"bytes": b, "path": f"{i}.png"} for i, b in enumerate(blobs)]) if struct
              else pa.array(blobs, pa.binary()))
    table = pa.table({"id": list(range(6)), "image": column, "label": [3, 1, 3, None, 0, 2]})
    pq.write_table(table, tmp_path / "part-0.parquet", row_group_size=2)  # rows span several row groups
    s = list_image_set(str(tmp_path), {})
    assert [src.uri for src in s.sources] == [f"{tmp_path}/part-0.parquet#{i}" for i in range(6)]
    assert [src.label for src in s.sources] == ["3", "1", "3", None, "0", "2"]
    order = [4, 0, 5, 2]  # any order, any subset
    images, failed = read_images([s.sources[i].uri for i in order], {})
    assert np.array_equal(images[0], pixels(blobs[4])) and np.array_equal(images[3], pixels(blobs[2]))
    assert images[2] is None and failed[0][0].endswith("#5")
    assert list_image_set(str(tmp_path / "part-0.parquet"), {}).sources == s.sources


def test_a_parquet_file_without_image_bytes_is_refused(tmp_path):
    pq.write_table(pa.table({"a": [1], "b": ["x"]}), tmp_path / "t.parquet")
    with pytest.raises(UserInputError, match="no image column"):
        list_image_set(str(tmp_path), {})


def test_missing_and_empty_sets_are_one_line_errors(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        list_image_set(str(tmp_path / "nope"), {})
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(UserInputError, match="no .jpg/.jpeg/.png images"):
        list_image_set(str(tmp_path), {})
