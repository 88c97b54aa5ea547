"""DeePSiM training: the losses fall on a fixed batch, and train-generator resumes from its checkpoint."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from models.registry import resolve_model
from tasks.deepsim import DeePSiMTrainer, LossWeights


def test_generator_learns_to_invert_a_fixed_encoder():
    torch.manual_seed(0)
    encoder_net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    encoder_net.requires_grad_(False)
    g = nn.Sequential(nn.Linear(32, 3 * 16 * 16), nn.Unflatten(1, (3, 16, 16)))
    trainer = DeePSiMTrainer(g, lambda raw: raw + 0.5, lambda x: (encoder_net(x), encoder_net(x)), 32,
                             LossWeights(pixel=1.0, feature=1.0, adversarial=0.001), lr=1e-3)
    x = torch.rand(4, 3, 16, 16)
    first = trainer.step(x)
    for _ in range(150):
        last = trainer.step(x)
    assert last["pixel"] < 0.8 * first["pixel"] and last["feature"] < 0.8 * first["feature"]
    assert last["step"] == 151 and all(np.isfinite(v) for v in last.values())


@pytest.mark.integration
def test_train_generator_checkpoints_and_resumes(tmp_path):
    from tests.helpers import run_cli

    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((40, 50, 3)) * 255).astype(np.uint8)).save(images / f"{i}.png")
    out = tmp_path / "gen"
    args = ["train-generator", "--generator", "mnv2-pool", "--images", str(images), "--batch-size", "2",
            "--checkpoint-every", "1", "--out", str(out)]
    run_cli(*args, "--steps", "2", cwd=tmp_path)
    second = run_cli(*args, "--steps", "3", cwd=tmp_path)
    assert "resuming from step 2 of 3" in second.stderr
    history = json.loads((out / "losses.json").read_text())
    assert [h["step"] for h in history] == [1, 2, 3]
    g = resolve_model("mnv2-pool").build()
    g.load_state_dict(torch.load(out / "generator.pt", weights_only=True), strict=True)
    with Image.open(out / "loss_curve.png") as curve:
        assert curve.format == "PNG"
