"""train-generator at dataset scale: IDX images read once into memory, 1-channel prior, and a run killed
mid-way resumes from its checkpoint onto the very loss curve of an uninterrupted run."""

import json

import pytest

from pipelines.train_generator import TrainSpec, train_generator
from tasks.deepsim import LossWeights
from tests.test_idx import write_split


class Killed(Exception):
    pass


def spec(images, out, steps=6):
    return TrainSpec(generator="fashion-fc", encoder_model="fashion_cnn", encoder_layer="classifier.2",
                     comparator_layer="features.10", images=images, out=str(out), steps=steps, batch_size=4,
                     encoder_weights="random", checkpoint_every=2, augment="flip",
                     weights=LossWeights(1.0, 0.1, 0.01))


def test_a_killed_run_resumes_onto_the_same_loss_curve(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_split(data, "train", n=16)
    whole = train_generator(spec(str(data), tmp_path / "whole"), log=lambda m: None)
    assert len(whole) == 6

    def kill_at_step_5(message: str) -> None:
        if message.startswith("step 5/"):
            raise Killed  # after the checkpoint of step 4, before the one of step 6
    with pytest.raises(Killed):
        train_generator(spec(str(data), tmp_path / "killed"), log=kill_at_step_5)
    lines = []
    resumed = train_generator(spec(str(data), tmp_path / "killed"), log=lines.append)
    assert any("resuming from step 4 of 6" in m for m in lines)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(whole, resumed):
        for key in ("loss_g", "pixel", "feature", "adversarial", "loss_d"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (a["step"], key)
    assert json.loads((tmp_path / "killed" / "losses.json").read_text())[-1]["step"] == 6
    assert (tmp_path / "killed" / "generator.pt").exists() and (tmp_path / "killed" / "loss_curve.png").exists()
    assert any("read 16 training images into memory" in m for m in lines)
