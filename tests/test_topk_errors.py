"""Bad input to `topk` and `nearest` exits 2 with one line naming the value and the fix, before anything is
written (fast tier: every case fails while planning, before Ray starts)."""

import pytest

from pipelines.cli import main


@pytest.mark.parametrize("args, message", [
    (["--images", "{tmp}/nope"], "--images '{tmp}/nope' not found"),
    (["--images", "{tmp}/empty"], "no .jpg/.jpeg/.png images"),
    (["--images", "offline", "--units", "3@1,1"], "drop the '@1,1'"),
    (["--images", "offline", "--layers", "features.99"], "unknown layer 'features.99'"),
    (["--images", "offline", "--k", "0"], "--k 0 must be at least 1"),
    (["--images", "offline", "--layer-units", "classifier.1=1"], "not in --layers"),
])
def test_topk_bad_input(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no pictures here")
    argv = ["topk", "--out", str(tmp_path / "o"), *[a.format(tmp=tmp_path) for a in args]]
    if "--layers" not in args:
        argv += ["--layers", "features.3"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neuron-atlas: error:") and message.format(tmp=tmp_path) in err[0]
    assert not (tmp_path / "o").exists()


def test_nearest_without_synthesized_images_or_model(tmp_path, capsys):
    assert main(["nearest", "--atlas", str(tmp_path), "--images", "offline"]) == 2
    assert "cannot tell which model" in capsys.readouterr().err
    assert main(["nearest", "--atlas", str(tmp_path), "--images", "offline", "--model", "mobilenet_v2"]) == 2
    assert "no synthesized images of model 'mobilenet_v2'" in capsys.readouterr().err
    assert not (tmp_path / "nearest").exists()
