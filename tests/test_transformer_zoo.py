"""The docs' recipes for today's model families, run as built: timm (`pretrained=False`, through its import path)
and open_clip's ViT-B-32 visual tower (tests/zoo_nets.py), with seeded random weights and no download.

Each net's layer table reads its layouts (a token layer with its class token, a channels-last or patch-grid MLP,
a channels-first ConvNeXt), and a short channel-objective atlas on one of its MLP layers writes one row per unit
with an activation vector of the layer's width.
"""

from __future__ import annotations

import json

import pytest

from pipelines.cli import main
from pipelines.sink import read_units
from pipelines.storage import Store

pytestmark = pytest.mark.integration

CLIP_MEAN, CLIP_STD = "0.4815,0.4578,0.4082", "0.2686,0.2613,0.2758"

# (model, extra flags, layer, layout kind, units, positions)
RECIPES = [
    ("timm.models:vit_tiny_patch16_224", [], "blocks.3.mlp.fc1", "tokens", 768, "197 tokens = cls + 14x14"),
    ("timm.models:deit_tiny_patch16_224", [], "blocks.1.mlp.fc1", "tokens", 768, "197 tokens = cls + 14x14"),
    ("timm.models:swin_tiny_patch4_window7_224", [], "layers.0.blocks.0.norm1", "channels_last", 96, "56x56"),
    ("timm.models:convnext_atto", [], "stages.1.blocks.0.mlp.fc1", "channels_first", 320, "28x28"),
    ("tests.zoo_nets:clip_vit_b_32", ["--mean", CLIP_MEAN, "--std", CLIP_STD], "transformer.resblocks.3.mlp.c_fc",
     "tokens", 3072, "50 tokens = cls + 7x7"),
]


@pytest.mark.parametrize("model, extra, layer, kind, units, positions", RECIPES, ids=[r[0] for r in RECIPES])
def test_recipe_lists_its_layouts_and_runs_a_channel_atlas(model, extra, layer, kind, units, positions, tmp_path,
                                                           capsys):
    assert main(["layers", "--model", model, *extra, "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["layer"] == layer)
    assert (row["layout"]["kind"], row["units"], row["positions"]) == (kind, units, positions)
    out = tmp_path / "out"
    assert main(["atlas", "--model", model, *extra, "--layers", layer, "--units", "0,1", "--objective", "channel",
                 "--steps", "2", "--seeds", "1", "--out", str(out)]) == 0
    rows = read_units(Store(str(out))).to_pylist()
    assert sorted((r["unit"], r["y"], r["x"]) for r in rows) == [(0, None, None), (1, None, None)]
    assert all(r["objective"] == f"channel({layer}, {r['unit']})" for r in rows)
