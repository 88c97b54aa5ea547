"""`neuron-atlas video` on bad input: exit status 2, one line naming the bad value and the fix, nothing written
(all of these stop before Ray starts); and `layers` on video models."""

import numpy as np
import pytest

from pipelines.cli import main
from pipelines.video.media import mp4_bytes

CLIP = ["video", "--model", "tests.video_nets:clip_net", "--input-size", "8", "--frames", "4", "--steps", "2"]

CASES = {
    "image model": (["video", "--model", "tests.selfloading_net:ONetLike", "--input-size", "48"],
                    "model 'tests.selfloading_net:ONetLike' does not take video clips [B, T, 3, H, W]: given "
                    "[1, 3, 3, 48, 48] it raised RuntimeError"),
    "not class scores": (["video", "--model", "tests.video_nets:not_a_video_net", "--input-size", "8"],
                         "given clips [2, 3, 3, 8, 8] it returned [2, 3, 1, 1]"),
    "frames below 1": ([*CLIP, "--frames", "0"], "--frames 0 must be at least 1"),
    "unit out of range": ([*CLIP, "--units", "7"], "unit 7 out of range for layer 'fc', which has 3 units"),
    "hidden unit out of range": ([*CLIP, "--layers", "lstm", "--units", "6"], "unit 6 out of range for layer 'lstm'"),
    "unknown layer": ([*CLIP, "--layers", "conv9"], "unknown layer 'conv9' of video model"),
    "unknown time pool": ([*CLIP, "--time-pool", "median"], "unknown --time-pool 'median'"),
    "negative smoothness": ([*CLIP, "--temporal-smoothness", "-1"], "--temporal-smoothness -1 must be at least 0"),
    "videos without analyze": ([*CLIP, "--videos", "x"], "add --analyze-order"),
    "analyze without videos": ([*CLIP, "--analyze-order"], "pass --videos URI"),
    "missing videos": ([*CLIP, "--analyze-order", "--videos", "/nonexistent/videos"], "not found"),
    "registered without weights": (["video", "--model", "video-motion"], "pass --weights URI"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_video_input_is_one_line_and_writes_nothing(name, tmp_path, capsys):
    argv, message = CASES[name]
    out = tmp_path / "out"
    code = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("neuron-atlas: error: ") and message in err, err
    assert "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_unreadable_video_is_named_before_anything_runs(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "good.mp4").write_bytes(mp4_bytes(np.zeros((3, 8, 8, 3), np.uint8), 25.0))
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom truncated")
    out = tmp_path / "out"
    code = main([*CLIP, "--analyze-order", "--videos", str(videos), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("neuron-atlas: error: cannot read video ") and "broken.mp4" in err, err
    assert "\n" not in err and not out.exists()


def test_layers_lists_a_video_models_time_layouts(capsys):
    assert main(["layers", "--model", "tests.video_nets:loop_net", "--input-size", "8", "--video"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["cnn"][1:4] == ["Sequential", "(per-frame", "module)"] and rows["cnn"][4] == "steps"
    assert rows["cell"][2] == "steps" and rows["seq"][2] == "tb" and rows["fc"][-3:] == ["bt", "3", "-"]
    assert main(["layers", "--model", "video-motion"]) == 0  # registered video models need no --video
    assert "Linear (output)                clip    7" in capsys.readouterr().out
