"""The offline photo sets as image sources: names, contents, and the set without the LFW faces."""

import numpy as np
import pytest

from models.errors import UserInputError
from pipelines.photos import offline_photos
from pipelines.stats import list_images, load_image


def test_offline_sets_name_every_photo_and_load_the_same_pixels():
    everything = list_images("offline", {})
    photos = list_images("offline-photos", {})
    assert len(everything) == len(offline_photos()) and len(photos) == len(offline_photos(faces=False))
    assert len(everything) - len(photos) == 200 and not any("lfw" in s for s in photos)
    assert set(photos) < set(everything) and len(set(everything)) == len(everything)
    for (name, img), source in zip(offline_photos(), everything):
        assert source == f"offline:{name}"
        got = load_image(source, {})
        assert got.dtype == np.uint8 and got.shape[2] == 3 and np.array_equal(got, img)


def test_a_missing_folder_names_the_offline_sets(tmp_path):
    with pytest.raises(UserInputError, match="'offline', 'offline-photos'"):
        list_images(str(tmp_path / "nope"), {})
