"""IDX image sets (Fashion-MNIST's format): parsing, labels, listing as --images, and clear errors."""

import gzip

import numpy as np
import pytest

from models.errors import UserInputError
from pipelines.idx import FASHION_MNIST_NAMES, idx_split, parse_idx
from pipelines.imagesets import list_image_set, read_images


def idx_bytes(a: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + a.astype(np.uint8).tobytes()


def write_split(root, split="train", n=6, gz=True, labels=True):
    rng = np.random.default_rng(len(split))
    images = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
    ys = np.arange(n, dtype=np.uint8) % 10
    suffix = ".gz" if gz else ""
    pack = gzip.compress if gz else (lambda b: b)
    (root / f"{split}-images-idx3-ubyte{suffix}").write_bytes(pack(idx_bytes(images)))
    if labels:
        (root / f"{split}-labels-idx1-ubyte{suffix}").write_bytes(pack(idx_bytes(ys)))
    return images, ys


def test_parse_reads_images_and_labels_compressed_or_not():
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(a), "x"), a)
    np.testing.assert_array_equal(parse_idx(gzip.compress(idx_bytes(a)), "x.gz"), a)


@pytest.mark.parametrize("cut", [3, 10, 40])
def test_a_truncated_file_is_one_error_naming_it_and_the_package(cut):
    a = np.zeros((2, 28, 28), np.uint8)
    with pytest.raises(UserInputError, match=r"some/train-images.*(truncated|not an IDX).*dataset-fashion-mnist"):
        parse_idx(idx_bytes(a)[:cut], "some/train-images-idx3-ubyte")
    with pytest.raises(UserInputError, match="truncated or corrupt"):
        parse_idx(gzip.compress(idx_bytes(a))[:30], "some/train-images-idx3-ubyte.gz")


def test_fashion_mnist_splits_list_with_class_names_and_read_back(tmp_path, monkeypatch):
    images, ys = write_split(tmp_path, "train")
    test_images, _ = write_split(tmp_path, "t10k", n=4, gz=False)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    s = list_image_set("fashion-mnist:train", {})
    assert [src.label for src in s.sources] == [FASHION_MNIST_NAMES[y] for y in ys]
    pixels, failed = read_images([src.uri for src in s.sources], {})
    assert not failed
    for got, want in zip(pixels, images):
        assert got.shape == (28, 28, 3) and (got == want[..., None]).all()
    t = list_image_set("fashion-mnist:test", {})
    assert len(t.sources) == 4
    out, _ = read_images([t.sources[3].uri], {})
    assert (out[0][..., 0] == test_images[3]).all()


def test_a_folder_of_idx_files_is_its_training_split_and_a_bad_row_fails_alone(tmp_path):
    write_split(tmp_path, "train", n=3)
    write_split(tmp_path, "t10k", n=2)
    s = list_image_set(str(tmp_path), {})
    assert len(s.sources) == 3 and [x.label for x in s.sources] == ["0", "1", "2"]  # not Fashion: indices
    one = list_image_set(str(tmp_path / "t10k-images-idx3-ubyte.gz"), {})
    assert len(one.sources) == 2
    pixels, failed = read_images([s.sources[0].uri, s.sources[0].uri.replace("#0", "#9")], {})
    assert pixels[0] is not None and pixels[1] is None and "row 9" in failed[0][1]


def test_missing_dataset_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(UserInputError, match="missing.*apt-get install dataset-fashion-mnist"):
        list_image_set("fashion-mnist:train", {})
    with pytest.raises(UserInputError, match="fashion-mnist:train or fashion-mnist:test"):
        idx_split("fashion-mnist:validation")


def test_labels_that_do_not_match_the_images_are_refused(tmp_path):
    write_split(tmp_path, "train", n=3, labels=False)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(5, np.uint8))))
    with pytest.raises(UserInputError, match="5 labels for 3 images"):
        list_image_set(str(tmp_path), {})
