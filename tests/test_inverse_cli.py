"""`neuron-atlas inverse` end to end through Ray on MobileNetV2 (marked integration): every saved sample,
measured again from its PNG, satisfies every constraint; one row per sample; reruns do nothing; an
unreachable range exits 2 with one line and keeps what it found."""

import json

import numpy as np
import pyarrow.dataset as ds
import pytest
import torch
from PIL import Image

from models.units import Unit
from pipelines.inverse import _PARTITIONING
from tasks.actor import InverseJob, NetSpec, SynthesisActor
from tasks.dgn import DGNConfig
from tasks.inverse import Constraint, InverseConfig
from tests.helpers import run_cli

pytestmark = pytest.mark.integration

GEN = ["--generator", "tiny", "--generator-weights", "random", "--code-bound", "3"]
UNITS = (Unit("classifier.1", 980), Unit("features.9", 3, 7, 7))


@pytest.fixture(scope="module")
def actor():
    return SynthesisActor(NetSpec("mobilenet_v2", generator="tiny", generator_weights="random"))


@pytest.fixture(scope="module")
def spread(actor):
    """Both units' activations over 24 random codes of the generator: ranges inside are reachable."""
    job = InverseJob(tuple(Constraint(u, -1e6, 1e6) for u in UNITS), InverseConfig(k=24, n=24), "features.7",
                     dgn=DGNConfig(upper=3.0))
    result, _ = actor.inverse(job)
    return result.activations.numpy()


def remeasure(actor, png, units):
    x = torch.tensor(np.asarray(Image.open(png).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    acts = {}
    mods = dict(actor.target.net.named_modules())
    hooks = [mods[u.layer].register_forward_hook(lambda m, i, o, n=u.layer: acts.setdefault(n, o)) for u in units]
    with torch.no_grad():
        actor.target.net(actor.model_input(x))
    for h in hooks:
        h.remove()
    return [float(acts[u.layer][0, u.channel, u.y, u.x] if u.y is not None else acts[u.layer][0, u.channel])
            for u in units]


def table(out, what):
    return ds.dataset(out / "inverse" / what, format="parquet", partitioning=_PARTITIONING).to_table().to_pylist()


def test_intersection_samples_satisfy_both_ranges_and_rerun_does_nothing(tmp_path, actor, spread):
    lo = np.quantile(spread, 0.5, axis=0)
    width = spread.std(0) * 1.5
    ranges = [(float(lo[j]), float(lo[j] + width[j])) for j in range(2)]
    args = ["inverse", *GEN, "--constraint", f"classifier.1:980:{ranges[0][0]}:{ranges[0][1]}",
            "--constraint", f"features.9:3@7,7:{ranges[1][0]}:{ranges[1][1]}", "--k", "4", "--n", "12",
            "--lr", "0.1", "--beta", "0.1", "--out", str(tmp_path / "o")]
    run_cli(*args, cwd=tmp_path)
    out = tmp_path / "o"
    samples, runs = table(out, "samples"), table(out, "runs")
    assert len(runs) == 1 and len(samples) == 12 and sorted(s["sample"] for s in samples) == list(range(12))
    run = runs[0]
    assert run["status"] == "complete" and run["samples"] == 12 and run["diversity"] > 0
    assert run["diversity_space"] == "encoder" and run["encoder_layer"] == "features.9"
    assert run["sampling_steps"] >= 2 and (out / run["sheet"]).exists()
    for s in samples:
        assert s["in_range"] and s["constraints"] == ["classifier.1:980", "features.9:3@7,7"]
        again = remeasure(actor, out / s["image"], UNITS)
        for j, (z1, z2) in enumerate(ranges):
            assert z1 <= again[j] <= z2, (s["sample"], j, again[j], (z1, z2))
            assert abs(again[j] - s["activation"][j]) < 1e-3
    (entry,) = json.loads((out / "manifest.json").read_text())["runs"].values()
    assert entry["method"] == "inverse" and entry["status"] == "finished" and entry["incomplete"] == 0
    assert entry["constraints"] == [[f"classifier.1:980:{ranges[0][0]:g}:{ranges[0][1]:g}",
                                     f"features.9:3@7,7:{ranges[1][0]:g}:{ranges[1][1]:g}"]]
    assert entry["weights_sha256"] and entry["generator"] == "tiny" and "torch" in entry["versions"]
    assert entry["hyperparams"]["encoder_layer"] == "features.9"
    second = run_cli(*args, cwd=tmp_path)
    assert "nothing to do" in second.stdout


def test_unreachable_range_exits_2_with_one_line(tmp_path, spread):
    z1 = float(spread[:, 0].max() + 1000)
    proc = run_cli("inverse", *GEN, "--constraint", f"classifier.1:980:{z1}:{z1 + 4}", "--k", "2", "--n", "4",
                   "--max-outer", "1", "--seed-steps", "2", "--out", str(tmp_path / "o"), cwd=tmp_path, check=False)
    assert proc.returncode == 2
    err = [line for line in proc.stderr.splitlines() if line.startswith("neuron-atlas: error:")]
    assert len(err) == 1 and "not reached by all 2 seeds" in err[0] and "raise --max-outer" in err[0]
    runs = table(tmp_path / "o", "runs")
    assert runs[0]["status"] == "seeds-out-of-reach" and runs[0]["samples"] == 0
