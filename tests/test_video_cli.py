"""`neuron-atlas video` end to end through the CLI and Ray on a tiny CNN + LSTM (marked integration)."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from models.registry import resolve_model
from models.video import load_video_net
from pipelines.video.media import decode_frames, mp4_bytes, webp_frames
from tests.helpers import assert_rerun_does_nothing, run_cli

pytestmark = pytest.mark.integration

TINY = ["--model", "tests.video_nets:clip_net", "--input-size", "8"]


def test_video_run_lands_files_and_rows_and_reruns_do_nothing(tmp_path):
    out = tmp_path / "out"
    args = ["video", *TINY, "--layers", "fc,lstm", "--units", "0:2", "--layer-units", "lstm=4", "--frames", "6",
            "--steps", "6", "--style", "yosinski", "--shuffles", "3", "--fps", "12", "--out", str(out)]
    first = run_cli(*args, cwd=tmp_path)
    assert "done: 3 videos" in first.stdout
    rows = pd.read_parquet(out / "videos")
    assert sorted(zip(rows["layer"].astype(str), rows["unit"])) == [("fc", 0), ("fc", 1), ("lstm", 4)]
    assert {"model", "snapshot", "layer", "unit", "y", "x", "seed", "method", "objective", "activation_start",
            "activation_final", "steps", "image", "hyperparams", "frames", "fps", "video", "lossless", "strip",
            "score_reversed", "score_shuffled_mean", "score_shuffled_std"} <= set(rows.columns)
    loaded, video = load_video_net(resolve_model("tests.video_nets:clip_net", input_size=8))
    for r in rows.itertuples():
        frames = webp_frames((out / r.lossless).read_bytes(), r.fps)
        assert frames.shape == (6, 8, 8, 3) and r.frames == 6
        assert decode_frames((out / r.video).read_bytes()).shape == (6, 8, 8, 3)
        with Image.open(out / r.image) as strip:
            assert strip.format == "PNG"
        if r.layer == "fc":  # activation_final is the unit's score on exactly the saved frames
            clips = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)
            score = loaded.net(loaded.to_input(clips).reshape(1, 6, 3, 8, 8))[0, r.unit]
            assert float(score) == pytest.approx(r.activation_final, abs=1e-4)
        assert r.activation_final > r.activation_start
    assert '"frames":6' in rows["hyperparams"][0] and '"time_pool":"mean"' in rows["hyperparams"][0]

    assert_rerun_does_nothing(args, out, tmp_path)


def test_dgn_videos_and_the_order_analysis_of_real_videos(tmp_path):
    out = tmp_path / "out"
    run_cli("video", *TINY, "--method", "dgn", "--generator", "tiny", "--generator-weights", "random",
            "--code-bound", "3", "--units", "2", "--seeds", "2", "--frames", "5", "--steps", "4", "--out", str(out),
            cwd=tmp_path)
    rows = pd.read_parquet(out / "videos")
    assert len(rows) == 2 and set(rows["method"]) == {"dgn"} and sorted(rows["seed"]) == [0, 1]

    videos = tmp_path / "real"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (videos / label).mkdir(parents=True)
        (videos / label / "clip.mp4").write_bytes(mp4_bytes(rng.integers(0, 256, (7, 8, 8, 3), np.uint8), 25.0))
    (videos / "b" / "frames").mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), np.uint8)).save(videos / "b" / "frames" / f"{i}.png")
    args = ["video", *TINY, "--analyze-order", "--videos", str(videos), "--shuffles", "4", "--out", str(out)]
    first = run_cli(*args, cwd=tmp_path)
    assert "frame-order analysis of 3 videos (9 rows)" in first.stdout
    (table,) = (out / "video-order").glob("part-*.parquet")
    t = pd.read_parquet(table)
    assert len(t) == 9 and sorted(set(t["name"])) == ["a/clip.mp4", "b/clip.mp4", "b/frames"]
    assert set(t["frames"]) == {7, 5}
    assert dict(zip(t["name"], t["label"])) == {"a/clip.mp4": "a", "b/clip.mp4": "b", "b/frames": "b"}
    assert t[["score", "score_reversed", "score_shuffled_mean"]].notna().all().all()
    assert t["predicted_shuffled_same"].between(0, 1).all()
    second = run_cli(*args, cwd=tmp_path)
    assert "nothing to do" in second.stdout
