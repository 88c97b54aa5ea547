"""Both methods through the one loop, on the tiny net: activation rises, bounds hold, seeds reproduce."""

import numpy as np
import pytest
import torch

from models.capture import capture
from models.errors import UserInputError
from models.generators import TinyGenerator
from models.preprocess import Preprocessing
from tasks.dgn import DGNConfig, dgn_parameterization
from tasks.image_am import PRESETS, ImageAMConfig, image_parameterization
from tasks.loop import StepRule, optimize
from tasks.objectives import per_item, unit

PRE = Preprocessing(size=(16, 16))
GEN_OUT = dict(code_shape=(8,), size=(16, 16))


def forward_fn(net):
    norm = PRE.module()
    return lambda layers: (lambda x: capture(net, norm(x), layers))


def run_image(net, items, cfg, steps=30):
    obj = per_item([unit(*u) for u, _ in items])
    param = image_parameterization(cfg, [s for _, s in items], PRE.size, PRE.mean01, torch.device("cpu"))
    return optimize(param, obj, forward_fn(net)(obj.layers), steps, cfg.rule)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_image_am_raises_activation_and_keeps_pixels_valid(tiny, preset):
    items = [(("fc", 1), 0), (("fc", 3), 1), (("features.2", 2, 4, 4), 0)]
    r = run_image(tiny, items, ImageAMConfig.from_preset(preset))
    assert (r.act_final > r.act_start).all(), (preset, r.act_start, r.act_final)
    assert r.images.dtype == torch.uint8 and r.images.shape == (3, 16, 16, 3)


def test_pixels_stay_in_range_after_every_step(tiny):
    cfg = ImageAMConfig.from_preset("none", lr=500.0, lr_end=500.0)  # huge steps try to leave the range
    mean255 = torch.tensor(PRE.mean01).view(1, 3, 1, 1) * 255
    obj = per_item([unit("fc", 0)])
    param = image_parameterization(cfg, [0], PRE.size, PRE.mean01, torch.device("cpu"))
    seen = []
    optimize(param, obj, forward_fn(tiny)(obj.layers), 10, cfg.rule,
             progress=lambda t: seen.append(((param.params + mean255).min().item(),
                                             (param.params + mean255).max().item())))
    assert len(seen) == 10
    assert all(lo >= -1e-4 and hi <= 255 + 1e-4 for lo, hi in seen)


def test_same_seed_same_result_and_batching_does_not_couple_items(tiny):
    cfg = ImageAMConfig.from_preset("lowfreq")
    items = [(("fc", 1), 0), (("fc", 3), 1), (("fc", 1), 2)]
    a = run_image(tiny, items, cfg)
    b = run_image(tiny, items, cfg)
    assert torch.equal(a.images, b.images) and torch.equal(a.act_final, b.act_final)
    alone = run_image(tiny, [items[1]], cfg)
    assert torch.allclose(alone.act_final, a.act_final[1:2], rtol=1e-4, atol=1e-4)
    assert not torch.equal(a.images[0], a.images[2])  # different seeds, different images


def test_unknown_preset_is_a_user_error():
    with pytest.raises(UserInputError, match="unknown preset 'bogus'"):
        ImageAMConfig.from_preset("bogus")


def test_lr_decays_linearly():
    rule = StepRule(8.0, 0.0)
    assert [rule.lr_at(t, 5) for t in range(5)] == [8.0, 6.0, 4.0, 2.0, 0.0]
    assert StepRule(3.0).lr_at(7, 10) == 3.0


def linear_generator():
    """code [B, 8] -> raw image [B, 3, 16, 16]: a generator whose images really depend on the code."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 3 * 16 * 16)
    torch.nn.init.normal_(lin.weight, std=0.1)
    return torch.nn.Sequential(lin, torch.nn.Unflatten(1, (3, 16, 16))).eval().requires_grad_(False)


def dgn_run(net, cfg, upper=None, steps=40, items=((("fc", 1), 0), (("fc", 2), 1)), check=None):
    gen = linear_generator()
    obj = per_item([unit(*u) for u, _ in items])
    to01 = lambda raw: raw + 0.5  # noqa: E731
    param = dgn_parameterization(cfg, gen, to01, (8,), [s for _, s in items], (16, 16), torch.device("cpu"), upper)
    progress = (lambda t: check(param.params)) if check else None
    return optimize(param, obj, forward_fn(net)(obj.layers), steps, cfg.rule, progress=progress), param


@pytest.mark.parametrize("l2", ["decay", "paper"])
@pytest.mark.parametrize("normalize", [True, False])
def test_dgn_am_raises_activation(tiny, l2, normalize):
    cfg = DGNConfig(lr=2.0 if normalize else 20.0, lr_end=0.0, normalize=normalize, l2=l2, upper=6.0)
    r, _ = dgn_run(tiny, cfg)
    assert (r.act_final > r.act_start).all(), (r.act_start, r.act_final)


def test_dgn_code_bounds_hold_exactly_after_every_step(tiny):
    upper = np.array([0.5, 1.0, 2.0, 0.1, 3.0, 0.7, 1.5, 0.2], dtype=np.float32)
    hi = torch.tensor(upper)
    steps_seen = []

    def check(p):
        steps_seen.append(1)
        assert (p >= 0).all() and (p <= hi).all()

    for l2 in ("decay", "paper"):
        r, param = dgn_run(tiny, DGNConfig(lr=5.0, lr_end=1.0, l2=l2), upper=upper, check=check)
        assert (param.params >= 0).all() and (param.params <= hi).all()
    assert len(steps_seen) == 80


def test_dgn_paper_penalty_is_lambda_times_code_norm(tiny):
    cfg = DGNConfig(l2="paper", l2_lambda=0.5)
    gen = TinyGenerator(code_dim=8, width=16)
    param = dgn_parameterization(cfg, gen, lambda r: r, (8,), [0, 1], (16, 16), torch.device("cpu"))
    p = torch.tensor([[3.0, 4.0] + [0.0] * 6, [0.0] * 8])
    assert torch.allclose(param.penalty(p), torch.tensor([2.5, 0.0]))


def test_bad_l2_mode_is_a_user_error():
    with pytest.raises(UserInputError, match="unknown --l2"):
        DGNConfig(l2="l1")


@pytest.mark.parametrize("name,code_shape", [("deepsim-fc6", (4096,)), ("deepsim-pool5", (256, 6, 6)),
                                             ("tiny", (64,))])
def test_generator_architectures_render_into_the_target_size(name, code_shape):
    from models.loading import load_net
    from models.registry import resolve_model
    from tasks.dgn import fit_to

    entry = resolve_model(name)
    assert entry.code_shape == code_shape
    gen = load_net(entry, "random")
    raw = gen.net(torch.zeros(1, *code_shape))
    assert raw.shape[-2:] == (entry.out_size, entry.out_size)
    x = fit_to(entry.to_image01(raw), (224, 224))
    assert x.shape == (1, 3, 224, 224)
    if entry.bgr:  # a zero image is the dataset mean colour: 123/255 red, 104/255 blue
        flat = entry.to_image01(torch.zeros(1, 3, 2, 2))
        assert torch.allclose(flat[0, :, 0, 0], torch.tensor([123.0, 117.0, 104.0]) / 255)
