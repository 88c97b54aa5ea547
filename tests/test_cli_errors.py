"""Bad input: exit status 2, one line naming the bad value and the fix, no traceback, nothing written."""

import os

import pytest
import torch

from pipelines.cli import main


class Payload:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.fixture
def evil(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"w": Payload()}, path)
    return str(path)


CASES = {
    "unknown model": (["--model", "resnet9000"], "unknown model 'resnet9000'"),
    "unknown layer": (["--layers", "features.99"], "unknown layer 'features.99'; run 'neuron-atlas layers"),
    "unknown preset": (["--preset", "gorilla"], "unknown preset 'gorilla'"),
    "unit out of range": (["--layers", "classifier.1", "--units", "1000"], "unit 1000 out of range"),
    "position out of range": (["--layers", "features.3", "--units", "1@99,0"], "position @99,0 out of range"),
    "malformed units": (["--layers", "features.3", "--units", "1-4"], "malformed --units '1-4'"),
    "no weights": (["--model", "alexnet", "--layers", "features.0"], "pass --weights URI"),
    "missing weights": (["--weights", "/nonexistent/w.pth"], "weights '/nonexistent/w.pth' not found"),
    "zero seeds": (["--seeds", "0"], "--seeds 0 must be at least 1"),
    "dgn without generator weights": (["--method", "dgn", "--generator", "tiny"],
                                      "pass --generator-weights URI"),
    "not a generator": (["--method", "dgn", "--generator", "alexnet", "--generator-weights", "random"],
                        "is not a generator"),
    "bad layer-units": (["--layers", "features.3", "--layer-units", "fc=1"], "not in --layers"),
    "softmax on a conv layer": (["--layers", "features.3", "--objective", "softmax"], "needs a logit layer"),
    "blend partner out of range": (["--layers", "classifier.1", "--objective", "blend:1,5000:0.1"],
                                   "unit 5000 is out of range"),
    "blend with --units": (["--layers", "classifier.1", "--units", "3", "--objective", "blend:1,2:0.1"],
                           "drop --units"),
    "unknown param": (["--param", "voxel"], "unknown --param 'voxel'; use one of pixel, fourier"),
    "unknown transforms": (["--transforms", "wobble"], "unknown --transforms 'wobble'; use 'none', 'standard', 'zoom'"),
    "unknown optimizer": (["--optimizer", "sgd"], "unknown --optimizer 'sgd'; use one of ascent, adam"),
    "unknown style": (["--style", "picasso"], "unknown --style 'picasso'; use one of"),
    "preset with fourier": (["--param", "fourier", "--preset", "sparse"], "drop it with --param fourier"),
    "style with dgn": (["--method", "dgn", "--style", "lucid"], "--style is for --method image"),
    "channel objective at a position": (["--layers", "features.3", "--units", "1@2,2", "--objective", "channel"],
                                        "drop the '@2,2'"),
}

INVERSE = ["inverse", "--generator", "tiny", "--generator-weights", "random", "--code-bound", "3"]
INVERSE_CASES = {
    "z1 >= z2": (["--constraint", "classifier.1:980:14:10"], "z1 = 14 must be below z2 = 10"),
    "n < k": (["--constraint", "classifier.1:980:10:14", "--n", "5"], "--n 5 must be at least --k 10"),
    "unknown layer": (["--constraint", "features.99:1:0:1"], "unknown layer 'features.99'"),
    "unit out of range": (["--constraint", "classifier.1:1000:0:1"], "unit 1000 out of range"),
    "malformed": (["--constraint", "classifier.1:980"], "must look like LAYER:UNIT[@Y,X]:Z1:Z2"),
    "not numbers": (["--constraint", "classifier.1:980:a:b"], "Z1 and Z2 must be numbers"),
    "no constraint": ([], "pass at least one --constraint"),
    "fan-out and intersection": (["--constraint", "classifier.1:1,2:0:1", "--constraint", "classifier.1:3:0:1"],
                                 "cannot be intersected"),
}


@pytest.mark.parametrize("name", list(INVERSE_CASES))
def test_bad_inverse_input_is_one_line_and_writes_nothing(name, tmp_path, capsys):
    argv, message = INVERSE_CASES[name]
    out = tmp_path / "out"
    code = main([*INVERSE, "--out", str(out), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("neuron-atlas: error: ") and message in err, err
    assert "\n" not in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(name, tmp_path, capsys):
    argv, message = CASES[name]
    out = tmp_path / "out"
    code = main(["atlas", "--out", str(out), "--steps", "1", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("neuron-atlas: error: ") and message in err, err
    assert "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_unsafe_weights_are_refused(evil, tmp_path, capsys):
    code = main(["atlas", "--weights", evil, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "needs code to unpickle" in err and evil in err
    assert not (tmp_path / "out").exists()


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["atlas", "--out", str(blocker / "out"), "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "is not writable" in err


def test_config_file_supplies_flags_and_unknown_keys_are_named(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('layers = "features.99"\n')
    assert main(["atlas", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "unknown layer 'features.99'" in capsys.readouterr().err
    cfg.write_text('colour = "blue"\n')
    assert main(["atlas", "--config", str(cfg)]) == 2
    assert "unknown keys ['colour']" in capsys.readouterr().err


def test_layers_command_lists_the_net(capsys):
    assert main(["layers", "--model", "tinynet"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["layer", "type", "layout", "units", "positions"]
    assert "features.2  Conv2d" in out
