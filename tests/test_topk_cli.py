"""`neuron-atlas topk` end to end through the CLI and Ray (marked integration): the result equals a brute-force
top-k computed here; unreadable files are skipped, counted and named; a SIGKILLed run on the S3 server,
rerun, has every (unit, rank) exactly once; the statistics count every readable image."""

from __future__ import annotations

import signal
import time
import types

import boto3
import numpy as np
import pyarrow.dataset as ds
import pytest
import s3fs
import torch
from PIL import Image

from models.capture import capture
from models.loading import load_net
from models.registry import resolve_model
from pipelines.photos import offline_photos, to_model_input
from pipelines.sink import PARTITIONING
from tests.helpers import run_cli, start_cli
from tests.s3server import MotoServer, s3_env

pytestmark = pytest.mark.integration
LAYERS = ["features.3", "classifier.1"]


def brute_force(pictures: list[np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{layer: (value [N, U], y [N, U], x [N, U])} of every image, one forward pass of the whole set."""
    net = load_net(resolve_model("mobilenet_v2"))
    x = torch.tensor(np.stack([to_model_input(p, (224, 224)) for p in pictures]))
    acts = capture(net.net, net.to_input(x), LAYERS)
    conv = acts["features.3"].flatten(2)
    flat = conv.argmax(2).numpy()
    return {"features.3": (conv.max(2).values.numpy(), flat // 56, flat % 56),
            "classifier.1": (acts["classifier.1"].numpy(), None, None)}


def table(root, what, filesystem=None) -> list[dict]:
    return ds.dataset(f"{root}/topk/{what}", filesystem=filesystem, format="parquet",
                      partitioning=PARTITIONING).to_table().to_pylist()


def check_against(rows: list[dict], truth: dict, sources: list[str], k: int, units: dict[str, list[int]]) -> None:
    """Every (layer, unit, rank) once; ranks follow the brute-force order, up to float noise between batch
    sizes where two activations are within 1e-3 of each other."""
    keys = [(r["layer"], r["unit"], r["rank"]) for r in rows]
    assert len(keys) == len(set(keys)) == sum(len(u) for u in units.values()) * min(k, len(sources))
    by = {(r["layer"], r["unit"], r["rank"]): r for r in rows}
    for layer, us in units.items():
        value, ys, xs = truth[layer]
        for u in us:
            col = value[:, u]
            order = sorted(range(len(col)), key=lambda i: (-col[i], i))[:k]
            for rank, i in enumerate(order):
                r = by[(layer, u, rank)]
                assert r["activation"] == pytest.approx(float(col[i]), rel=1e-4, abs=1e-4)
                gap = min([abs(col[i] - col[j]) for j in range(len(col)) if j != i] or [1.0])
                if gap > 1e-3:
                    assert r["source"] == sources[i], (layer, u, rank)
                    if ys is not None:
                        assert (r["y"], r["x"]) == (ys[i, u], xs[i, u])


def test_topk_on_local_files_matches_brute_force_skips_unreadable_and_reruns_do_nothing(tmp_path):
    photos = offline_photos(faces=False)[:10]
    images = tmp_path / "imgs"
    names = []
    for i, (_, img) in enumerate(photos):
        rel = f"{'ab'[i % 2]}/{i:02d}.{'png' if i % 3 else 'jpg'}"
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(images / rel, quality=95)
        names.append(rel)
    (images / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (images / "b" / "notes.txt").write_text("not an image")
    order = sorted(range(len(names)), key=lambda i: names[i])
    pictures = [np.asarray(Image.open(images / names[i]).convert("RGB")) for i in order]
    sources = [str(images / names[i]) for i in order]

    out = tmp_path / "out"
    args = ["topk", "--layers", ",".join(LAYERS), "--layer-units", "classifier.1=285,504,948,967,980",
            "--images", str(images), "--k", "4", "--shard-size", "3", "--out", str(out)]
    first = run_cli(*args, cwd=tmp_path)
    assert f"skipped unreadable image {images / 'a' / 'broken.jpg'}" in first.stderr
    assert f"ignored {images / 'b' / 'notes.txt'}" in first.stderr
    assert "10 images read, 1 skipped" in first.stdout

    rows = table(out, "examples")
    check_against(rows, brute_force(pictures), sources, 4,
                  {"features.3": list(range(24)), "classifier.1": [285, 504, 948, 967, 980]})
    assert {r["label"] for r in rows} == {"a", "b"}
    for r in rows[:30]:
        y0, x0, y1, x1 = r["box"]
        with Image.open(out / r["image"]) as crop:
            assert crop.size == (x1 - x0, y1 - y0)
        if r["layer"] == "features.3":  # a 19-pixel field around (4y, 4x), clipped to the image
            assert (y0, x0) == (max(0, 4 * r["y"] - 9), max(0, 4 * r["x"] - 9)) and y1 - y0 <= 19
        else:
            assert r["box"] == [0, 0, 224, 224] and r["y"] is None
    stats = table(out, "stats")
    assert len(stats) == 29 and {s["count"] for s in stats} == {10}
    value = brute_force(pictures)["classifier.1"][0]
    s980 = next(s for s in stats if s["layer"] == "classifier.1" and s["unit"] == 980)
    assert s980["mean"] == pytest.approx(float(value[:, 980].mean()), rel=1e-4)
    assert s980["positive_share"] == pytest.approx(float((value[:, 980] > 0).mean()))
    assert s980["min"] <= s980["q25"] <= s980["q50"] <= s980["q75"] <= s980["max"]

    second = run_cli(*args, cwd=tmp_path)
    assert "nothing to do" in second.stdout


@pytest.fixture(scope="module")
def s3():
    server = MotoServer()
    env = s3_env(server.url)
    client = boto3.client("s3", endpoint_url=server.url, aws_access_key_id="testing",
                          aws_secret_access_key="testing-secret", region_name="us-east-1")
    fs = s3fs.S3FileSystem(endpoint_url=server.url, key="testing", secret="testing-secret", skip_instance_cache=True)
    yield types.SimpleNamespace(env=env, client=client, fs=fs)
    server.stop()


def test_sigkill_on_s3_then_rerun_has_every_unit_rank_once(s3, tmp_path):
    s3.client.create_bucket(Bucket="na-topk")
    faces = [img for name, img in offline_photos() if "lfw" in name][:24]
    for i, img in enumerate(faces):
        buf = tmp_path / "f.png"
        Image.fromarray(img).save(buf)
        s3.fs.pipe_file(f"na-topk/imgs/{i:03d}.png", buf.read_bytes())
    s3.fs.pipe_file("na-topk/imgs/999-broken.png", b"\x89PNG broken")
    args = ["topk", "--layers", "features.3", "--images", "s3://na-topk/imgs", "--k", "9", "--shard-size", "2",
            "--batch-size", "2", "--out", "s3://na-topk/out"]
    proc = start_cli(*args, cwd=tmp_path, env=s3.env, log=open(tmp_path / "first.log", "w"))
    deadline = time.time() + 300
    while True:
        s3.fs.invalidate_cache()
        records = s3.fs.find("na-topk/out/topk/shards") if s3.fs.exists("na-topk/out/topk/shards") else []
        if len(records) >= 2:
            break
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "first.log").read_text()[-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    s3.fs.invalidate_cache()
    recorded = len(s3.fs.find("na-topk/out/topk/shards"))
    assert 2 <= recorded < 13 and not s3.fs.exists("na-topk/out/topk/stats")

    second = run_cli(*args, cwd=tmp_path, env=s3.env)
    assert f"resuming: {recorded} of 13 shards already recorded" in second.stderr
    assert "24 images read, 1 skipped" in second.stdout
    s3.fs.invalidate_cache()
    rows = table("na-topk/out", "examples", s3.fs)
    sources = [f"s3://na-topk/imgs/{i:03d}.png" for i in range(24)]
    check_against(rows, brute_force(faces), sources, 9, {"features.3": list(range(24))})
    stats = table("na-topk/out", "stats", s3.fs)
    assert len(stats) == 24 and {s["count"] for s in stats} == {24}
    crops = [p for p in s3.fs.find("na-topk/out/topk/images") if p.endswith(".png")]
    assert sorted(crops) == sorted({f"na-topk/out/{r['image']}" for r in rows})  # one file per (image, box)
