"""Which weights a net runs with: an import-path callable as built (`built-<sha8>`), `--weights URI` over it,
`--weights random` re-initialized by each module's reset_parameters (seeded) for every model."""

import json

import pytest
import torch
from torch import nn

from models.errors import UserInputError
from models.loading import load_net
from models.net_state import reinitialize, state_digest
from models.registry import resolve_model
from models.weights import read_weights
from pipelines.cli import main
from tests.conftest import TINY_ENTRY, tiny_net
from tests.helpers import run_cli, unit_rows
from tests.selfloading_net import ONetLike, onet_retrained

ONET = "tests.selfloading_net:ONetLike"


def onet_entry(name=ONET):
    return resolve_model(name, input_size=48)


def test_an_import_path_model_runs_as_built_under_its_state_digest():
    built = ONetLike()
    net = load_net(onet_entry())
    digest = state_digest(built)
    assert net.weights_uri == f"built-{digest[:8]}" and net.weights_sha256 == digest
    assert torch.equal(net.net.conv1.weight, built.conv1.weight)
    assert torch.equal(net.net.dense6_3.bias, built.dense6_3.bias)
    other = load_net(onet_entry("tests.selfloading_net:onet_retrained"))
    assert other.weights_uri != net.weights_uri  # two builds never share a snapshot


def test_weights_uri_loads_over_the_built_net(tmp_path):
    path = tmp_path / "retrained.pt"
    torch.save(onet_retrained().state_dict(), path)
    net = load_net(onet_entry(), str(path))
    assert torch.equal(net.net.conv2.weight, onet_retrained().conv2.weight)
    assert net.weights_uri == str(path) and net.weights_sha256 == read_weights(str(path)).sha256


def test_random_reinitializes_an_import_path_model_with_each_modules_reset_parameters():
    built = ONetLike()
    net = load_net(onet_entry(), "random")
    assert net.weights_uri == "random" and net.weights_sha256 is None
    assert not torch.equal(net.net.conv1.weight, built.conv1.weight)
    assert torch.all(net.net.prelu1.weight == 0.25)  # nn.PReLU's reset_parameters value; built: not 0.25
    assert not torch.any(built.prelu1.weight == 0.25)
    bound = 1 / (3 * 3 * 3) ** 0.5  # nn.Conv2d's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert net.net.conv1.bias.abs().max() <= bound < built.conv1.bias.abs().max()
    again = load_net(onet_entry(), "random")
    assert state_digest(again.net) == state_digest(net.net)  # seeded
    assert not torch.equal(load_net(onet_entry(), "random", seed=1).net.conv1.weight, net.net.conv1.weight)


def test_random_reinitializes_registry_models_too():
    net = load_net(TINY_ENTRY, "random")
    assert net.weights_uri == "random"
    assert not torch.equal(net.net.fc.weight, tiny_net().fc.weight)  # not the builder's own initialization
    assert torch.equal(load_net(TINY_ENTRY, "random").net.fc.weight, net.net.fc.weight)


def test_registry_models_keep_their_rules():
    with pytest.raises(UserInputError, match="has no embedded weights; pass --weights URI"):
        load_net(TINY_ENTRY)


class RawParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.scale = nn.Parameter(torch.full((2,), 3.0))


def test_random_refuses_parameters_no_reset_parameters_covers():
    with pytest.raises(UserInputError, match=r"no reset_parameters\(\) re-initializes \(in <root>\)"):
        reinitialize(RawParameter(), "pkg:RawParameter")


def test_state_digest_follows_values_not_layout():
    a, b = tiny_net(), tiny_net()
    assert state_digest(a) == state_digest(b.to(memory_format=torch.channels_last))
    with torch.no_grad():
        b.fc.bias[0] += 1e-6
    assert state_digest(a) != state_digest(b)


def test_layers_lists_an_import_path_model_without_weights(capsys):
    assert main(["layers", "--model", ONET, "--input-size", "48"]) == 0
    out = capsys.readouterr().out
    assert "conv4" in out and "dense6_3" in out


@pytest.mark.integration
def test_atlas_files_an_import_path_model_under_built_and_random_snapshots(tmp_path):
    out = tmp_path / "out"
    args = ["atlas", "--model", ONET, "--input-size", "48", "--layers", "conv4", "--units", "0:2", "--seeds", "1",
            "--steps", "4", "--out", str(out)]
    run_cli(*args, cwd=tmp_path)
    run_cli(*args, "--weights", "random", cwd=tmp_path)
    digest = state_digest(ONetLike())
    rows = unit_rows(str(out))
    assert sorted(r["snapshot"] for r in rows) == sorted([f"built-{digest[:8]}"] * 2 + ["random"] * 2)
    runs = {r["snapshot"]: r for r in json.loads((out / "manifest.json").read_text())["runs"].values()}
    assert runs[f"built-{digest[:8]}"]["weights_sha256"] == digest
    assert runs["random"]["weights"] == "random" and runs["random"]["weights_sha256"] is None
    start = {(r["snapshot"], r["unit"]): r["activation_start"] for r in rows}
    assert start[(f"built-{digest[:8]}", 0)] != start[("random", 0)]  # the random run really ran other weights
