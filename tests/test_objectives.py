"""Multi-unit objectives and directions: blends, the softmax objective, least-preferred inputs."""

import pytest
import torch

from models.layout import PREFIX_ROW, prefix_key
from models.units import Unit
from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem
from tasks.image_am import ImageAMConfig
from tasks.objectives import ObjectiveSpec, blend, channel, per_item, softmax_unit, unit


@pytest.fixture(scope="module")
def actor():
    return SynthesisActor(NetSpec("tinynet", weights="random"))


def run(actor, objective: ObjectiveSpec, channel=1, steps=30):
    cfg = ImageAMConfig.from_preset("none", lr=4.0, lr_end=1.0)
    return actor.run(Batch((WorkItem(Unit("fc", channel), 0), WorkItem(Unit("fc", channel), 1)), cfg, steps,
                           objective)).results


def fc_of(actor, image) -> torch.Tensor:
    x = torch.tensor(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        return actor.target.net(actor.model_input(x))[0]


def test_blend_is_both_units_minus_gamma_times_their_squared_gap():
    acts = {"fc": torch.tensor([[1.0, 3.0, 0.5], [2.0, 2.0, 0.0]])}
    obj = blend(unit("fc", 0), unit("fc", 1), 0.5)
    assert torch.allclose(obj(acts), torch.tensor([1 + 3 - 0.5 * 4, 4.0]))


def test_softmax_objective_is_the_class_probability():
    acts = {"fc": torch.tensor([[0.0, 1.0, 2.0]])}
    assert torch.allclose(softmax_unit("fc", 2)(acts), torch.softmax(acts["fc"], 1)[:, 2])


def test_a_batch_of_every_kind_and_direction_scores_each_row_as_its_objective_alone():
    """per_item's grouped path (a few gathers per kind, tensor and sign) gives every row exactly what its own
    objective gives on that row alone, gradients included; a user-composed objective keeps its own row."""
    g = torch.Generator().manual_seed(0)
    acts = {"fc": torch.randn(14, 5, generator=g), "conv": torch.randn(14, 6, 4, 4, generator=g),
            "tok": torch.randn(14, 8, 3, 3, generator=g), prefix_key("tok"): torch.randn(14, 8, 2, generator=g)}
    acts = {k: v.requires_grad_(True) for k, v in acts.items()}
    kinds = ("unit", "channel", "softmax", "blend")
    s = {kind: ObjectiveSpec(kind, 2 if kind == "blend" else None, 0.3) for kind in kinds}
    low = {kind: ObjectiveSpec(kind, 4 if kind == "blend" else None, 0.1, "min") for kind in kinds}
    objectives = [s["unit"].build("conv", 1, 2, 3), low["softmax"].build("fc", 2), s["channel"].build("conv", 5),
                  s["blend"].build("conv", 0, 1, 1), s["unit"].build("tok", 7, PREFIX_ROW, 1),
                  low["unit"].build("fc", 3), s["softmax"].build("fc", 0), low["blend"].build("tok", 1, 2, 0),
                  low["channel"].build("tok", 6), s["unit"].build("fc", 4), unit("fc", 1) + channel("conv", 2),
                  s["blend"].build("fc", 3), low["blend"].build("tok", 5, PREFIX_ROW, 0), 2 * softmax_unit("fc", 1)]
    batched = per_item(objectives)(acts)
    alone = torch.cat([o({k: v[i:i + 1] for k, v in acts.items()}) for i, o in enumerate(objectives)])
    assert batched.shape == (14,) and torch.equal(batched, alone)
    grads = [torch.autograd.grad(out.sum(), list(acts.values())) for out in (batched, alone)]
    for a, b in zip(*grads):
        assert torch.equal(a, b)
    one_group = [low["softmax"].build("fc", c % 5) for c in range(14)]  # every row in one group, in order
    assert torch.equal(per_item(one_group)(acts), torch.cat([o(acts)[i:i + 1] for i, o in enumerate(one_group)]))


def test_blend_raises_both_units(actor):
    for r in run(actor, ObjectiveSpec("blend", partner=3, gamma=0.1)):
        start = fc_of(actor, torch.full((16, 16, 3), 128, dtype=torch.uint8).numpy())
        end = fc_of(actor, r.image)
        assert end[1] > start[1] and end[3] > start[3]
        assert r.act_final > r.act_start and r.objective.startswith("unit(fc, 1) + unit(fc, 3)")


def test_softmax_raises_the_class_probability(actor):
    for r in run(actor, ObjectiveSpec("softmax")):
        assert r.act_final > r.act_start and 0 < r.act_final < 1
        assert r.act_final == pytest.approx(float(torch.softmax(fc_of(actor, r.image), 0)[1]), abs=1e-5)


def test_direction_min_lowers_the_unit_and_reports_its_own_activation(actor):
    for r in run(actor, ObjectiveSpec(direction="min")):
        assert r.act_final < r.act_start and r.objective == "min unit(fc, 1)"
        assert r.act_final == pytest.approx(float(fc_of(actor, r.image)[1]), abs=1e-5)
        assert r.act_best <= r.act_final + 1e-6
