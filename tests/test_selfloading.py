"""Which weights a net runs with: an import-path callable as built (`built-<sha8>`), `--weights URI` over it,
`--weights random` re-initialized by each module's reset_parameters (seeded) for every model."""

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from models.errors import UserInputError
from models.loading import is_built, load_net
from models.net_state import reinitialize, state_digest
from models.registry import resolve_model
from models.weights import read_weights
from pipelines.cli import main
from tests.conftest import TINY_ENTRY, tiny_net
from tests.helpers import run_cli, unit_rows
from tasks.actor import NetSpec, SynthesisActor, pin_build
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


def test_a_worker_refuses_a_build_other_than_the_one_planned(tmp_path):
    planned = load_net(onet_entry())
    spec = pin_build(NetSpec(ONET, input_size=48), planned)
    assert is_built(planned.weights_uri) and spec.built_sha256 == planned.weights_sha256
    assert SynthesisActor(spec).target.weights_sha256 == planned.weights_sha256  # the same build: runs
    other = replace(spec, model="tests.selfloading_net:onet_retrained")
    with pytest.raises(UserInputError, match=rf"built different weights on this worker \(state digest "
                       rf"{state_digest(onet_retrained())[:8]}\) than where the run was planned "
                       rf"\({planned.weights_sha256[:8]}\).*--weights URI"):
        SynthesisActor(other)
    path = tmp_path / "w.pt"
    torch.save(ONetLike().state_dict(), path)
    from_file = load_net(onet_entry(), str(path))
    assert pin_build(NetSpec(ONET, weights=str(path)), from_file).built_sha256 is None  # a file pins itself
    assert pin_build(NetSpec(ONET, weights="random"), load_net(onet_entry(), "random")).built_sha256 is None


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


@pytest.mark.integration
def test_a_cluster_whose_workers_build_other_weights_stops_with_one_line(tmp_path):
    """The driver plans under built-<sha8> of its own build; actors that build other weights refuse, and the
    run stops with their reason (exit 2, one error line) with no unit written under the driver's label."""
    out = tmp_path / "out"
    # local-ray: Ray workers, not the in-process actor a one-actor local run uses (which builds the driver's net)
    proc = run_cli("atlas", "--model", "tests.selfloading_net:onet_other_on_workers", "--input-size", "48",
                   "--layers", "conv4", "--units", "0:2", "--seeds", "1", "--steps", "4", "--out", str(out),
                   "--address", "local-ray", cwd=tmp_path, check=False)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("neuron-atlas: error:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(errors) == 1 and "built different weights on this worker" in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr.split(errors[0])[-1]
    assert not (out / "units").exists()


@pytest.mark.integration
def test_stats_of_an_import_path_model_as_built_and_of_one_whose_workers_build_other_weights(tmp_path):
    base = ["stats", "--input-size", "48", "--layer", "conv4", "--images", "offline-photos", "--shard-size", "8"]
    run_cli(*base, "--model", ONET, "--out", str(tmp_path / "ok"), cwd=tmp_path)
    meta = json.loads((tmp_path / "ok" / "stats.json").read_text())
    assert meta["weights_sha256"] == state_digest(ONetLike()) and meta["units"] == 32 * 3 * 3  # conv4: every code
    bad = run_cli(*base, "--model", "tests.selfloading_net:onet_other_on_workers", "--out", str(tmp_path / "bad"),
                  cwd=tmp_path, check=False)
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("neuron-atlas: error:")]
    assert bad.returncode == 2 and len(errors) == 1, bad.stderr[-3000:]
    assert errors[0].startswith("neuron-atlas: error: model 'tests.selfloading_net:onet_other_on_workers' built "
                                "different weights on this worker"), errors[0]
    assert not (tmp_path / "bad" / "stats.json").exists()
