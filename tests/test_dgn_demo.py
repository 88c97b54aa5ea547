"""The DGN-AM demo's whole pipeline at toy size, through the real CLI and Ray: retrain (the nets, the judge,
stats and train-generator) on a few hundred real Fashion-MNIST photos, DGN-AM of both nets' logits, image AM
for comparison, nearest training photos, the site, and the measurement harness's table."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.dataset as ds
import pytest

from pipelines.idx import FASHION_MNIST_DIR
from tests.test_idx import idx_bytes

pytestmark = pytest.mark.integration


def toy_fashion(root, n_train=300, n_test=120):
    """The first photos of each real split, as a FASHION_MNIST_DIR of their own."""
    from pipelines.idx import idx_split

    if not os.path.exists(os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")):
        if os.environ.get("CI"):
            pytest.fail("Fashion-MNIST is not installed: make test installs dataset-fashion-mnist")
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    for split, name, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images, labels = idx_split(f"fashion-mnist:{split}").arrays()
        (root / f"{name}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images[:n])))
        (root / f"{name}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels[:n])))


def test_the_demo_pipeline_at_toy_size(tmp_path):
    data = tmp_path / "fashion"
    data.mkdir()
    toy_fashion(data)
    out = tmp_path / "demo"
    env = {**os.environ, "FASHION_MNIST_DIR": str(data)}
    r = subprocess.run([sys.executable, "-m", "pipelines.fashion.demo", "--out", str(out), "--retrain",
                        "--limit", "300", "--generator-steps", "6", "--seeds", "2", "--steps", "4"],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ("fashion_cnn.pt", "fashion_resnet.pt", "judge.pt"):
        assert (out / "retrained" / "nets" / f).exists()
    prior = out / "retrained" / "prior"
    assert (prior / "generator.pt").exists() and (prior / "bounds.npy").exists()
    units = ds.dataset(str(out / "atlas" / "units"), format="parquet", partitioning="hive").to_table().to_pylist()
    dgn = {(u["model"], u["layer"], u["unit"], u["seed"]) for u in units if u["method"] == "dgn"}
    assert {("fashion_cnn", "classifier.6", c, s) for c in range(10) for s in range(4)} <= dgn
    assert {("fashion_resnet", "fc", c, s) for c in range(10) for s in range(4)} <= dgn
    assert any(u["layer"] == "features.10" for u in units) and any(u["method"] == "image" for u in units)
    from PIL import Image

    with Image.open(out / "atlas" / units[0]["image"]) as img:
        assert img.mode == "L" and img.size == (28, 28)
    assert (out / "atlas" / "site" / "index.html").exists()
    assert list((out / "atlas").glob("nearest*")) or list((out / "atlas").rglob("nearest/*"))
    scores = json.loads((out / "quality.json").read_text())
    assert {"DGN-AM, fashion_cnn", "real held-out photos", "image AM, lucid style"} <= set(scores)
    for row, s in scores.items():
        if not row.startswith("_"):
            assert 0.0 <= s["judge"] <= 1.0 and np.isfinite(s["realism"]) and s["sharpness"] > 0
    assert "| DGN-AM, fashion_cnn |" in r.stdout
