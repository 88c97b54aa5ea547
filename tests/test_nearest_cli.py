"""`neuron-atlas nearest` end to end through the CLI and Ray (marked integration): a real image that is an
exact copy of a synthesized one is found at distance 0 in every space (the memorization check works);
--same-class keeps a logit unit's neighbours in its class; one row per (image, space, rank); one sheet per
synthesized image; reruns do nothing."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.photos import offline_photos
from tests.helpers import run_cli, unit_rows

pytestmark = pytest.mark.integration
SPACES = ["pixel", "features.3", "classifier.1"]


def test_nearest_finds_a_copied_image_at_distance_zero_and_keeps_classes(tmp_path):
    out = tmp_path / "atlas"
    run_cli("atlas", "--layers", "features.3,classifier.1", "--units", "0", "--layer-units", "classifier.1=980",
            "--seeds", "1", "--steps", "2", "--out", str(out), cwd=tmp_path)
    synth = {r["layer"]: r["image"] for r in unit_rows(str(out))}
    real = tmp_path / "real"
    for i, (_, img) in enumerate(offline_photos(faces=False)[:6]):
        (real / ("980" if i % 2 else "7")).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(real / ("980" if i % 2 else "7") / f"{i}.png")
    # a 256 px copy whose centre crop (the net's view of it) is exactly the synthesized features.3 image
    copy = np.zeros((256, 256, 3), np.uint8)
    copy[16:240, 16:240] = np.asarray(Image.open(out / synth["features.3"]).convert("RGB"))
    Image.fromarray(copy).save(real / "7" / "copy.png")

    args = ["nearest", "--atlas", str(out), "--images", str(real), "--spaces", ",".join(SPACES), "--k", "2",
            "--same-class", "--shard-size", "3"]
    first = run_cli(*args, cwd=tmp_path)
    assert "7 images read" in first.stdout
    (part,) = (out / "nearest" / "neighbours").glob("part-*.parquet")
    rows = pq.read_table(part).to_pylist()
    keys = [(r["image"], r["space"], r["rank"]) for r in rows]
    assert len(keys) == len(set(keys)) == 2 * len(SPACES) * 2
    for space in SPACES:
        best = next(r for r in rows if r["image"] == synth["features.3"] and r["space"] == space and r["rank"] == 0)
        assert best["source"] == str(real / "7" / "copy.png") and best["distance"] == pytest.approx(0, abs=1e-6)
        logit = [r for r in rows if r["image"] == synth["classifier.1"] and r["space"] == space]
        assert {r["label"] for r in logit} == {"980"} and all(r["distance"] > 0 for r in logit)
        assert logit[0]["distance"] <= logit[1]["distance"]
    sheets = sorted((out / "nearest" / "sheets").rglob("*.png"))
    assert len(sheets) == 2
    with Image.open(sheets[0]) as sheet:
        assert sheet.width == 128 * (1 + len(SPACES))
    assert "nothing to do" in run_cli(*args, cwd=tmp_path).stdout
