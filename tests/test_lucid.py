"""The Lucid recipe on tiny nets: Fourier parameterization, robustness views, Adam, channel objective."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.errors import UserInputError
from tasks.fourier import frequency_scale, image_to_spectrum, initial_spectra, render_spectrum
from tasks.image_am import STYLES, ImageAMConfig, image_parameterization
from tasks.loop import StepRule, optimize
from tasks.objectives import channel, per_item, unit
from tasks.quality import colourfulness, fixed_views, rms_contrast
from tasks.transforms import TRANSFORM_SETS, TransformSet, parse_transforms
from tests.test_synthesis import PRE, forward_fn

LUCID = ImageAMConfig.build("lucid")


def run(net, items, cfg, steps=30, objective=unit):
    obj = per_item([objective(*u) for u, _ in items])
    seeds = [s for _, s in items]
    param = image_parameterization(cfg, seeds, PRE.size, PRE.mean01, torch.device("cpu"))
    return optimize(param, obj, forward_fn(net)(obj.layers), steps, cfg.rule, views=cfg.views(seeds, PRE.size))


def test_lucid_style_raises_activation(tiny):
    items = [(("fc", 1), 0), (("fc", 3), 1), (("features.2", 2, 4, 4), 0)]
    r = run(tiny, items, LUCID)
    assert (r.act_final > r.act_start).all(), (r.act_start, r.act_final)


def test_a_seed_gives_the_same_image_whatever_else_is_in_its_batch(tiny):
    items = [(("fc", 1), 0), (("fc", 3), 7), (("fc", 1), 2), (("features.2", 1, 3, 3), 5)]
    batched = run(tiny, items, LUCID)
    again = run(tiny, items, LUCID)
    assert torch.equal(batched.images, again.images)
    for i in (1, 3):
        alone = run(tiny, [items[i]], LUCID)
        diff = (alone.images[0].int() - batched.images[i].int()).abs().max().item()
        assert diff <= 1, diff  # float reassociation may move a pixel across a rounding boundary
        assert alone.act_final[0] == pytest.approx(batched.act_final[i].item(), rel=1e-3, abs=1e-3)
    assert not torch.equal(batched.images[0], batched.images[2])  # different seeds, different images


def test_fourier_renders_stay_in_the_unit_interval_even_for_huge_coefficients():
    scale = frequency_scale(16, 16)
    spectrum = initial_spectra([0, 1], (16, 16), sd=1e4, device=torch.device("cpu"))
    x = render_spectrum(spectrum, (16, 16), scale)
    assert x.shape == (2, 3, 16, 16) and x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize("decorrelate", [True, False])
def test_fourier_round_trip_reproduces_an_image(decorrelate):
    g = torch.Generator().manual_seed(3)
    image = torch.rand(2, 3, 16, 20, generator=g) * 0.9 + 0.05
    scale = frequency_scale(16, 20, decay=1.0)
    spectrum = image_to_spectrum(image, scale, decorrelate)
    assert torch.allclose(render_spectrum(spectrum, (16, 20), scale, decorrelate), image, atol=1e-5)


def test_frequency_scale_is_one_over_frequency_floored_at_one_over_size():
    s = frequency_scale(8, 8, decay=1.0)
    assert s.shape == (8, 5)
    assert s[0, 0] == pytest.approx(8.0)  # DC: floored at 1 / max(H, W)
    assert s[0, 4] == pytest.approx(2.0)  # f = 0.5
    assert torch.allclose(frequency_scale(8, 8, decay=2.0), s ** 2)


def test_initial_spectrum_depends_on_the_seed_alone():
    a = initial_spectra([4, 9], (8, 8), 0.01, torch.device("cpu"))
    b = initial_spectra([9], (8, 8), 0.01, torch.device("cpu"))
    assert torch.equal(a[1], b[0]) and not torch.equal(a[0], a[1])


def test_transforms_pass_gradients_and_depend_on_seed_and_step_only():
    views = TRANSFORM_SETS["standard"].views([3, 11])
    x = torch.rand(2, 3, 24, 24, requires_grad=True)
    v = views(x, 5)
    assert v.shape == x.shape
    (g,) = torch.autograd.grad(v.sum(), x)
    assert g.abs().sum() > 0
    alone = TRANSFORM_SETS["standard"].views([11])(x[1:].detach(), 5)
    assert torch.allclose(alone, v[1:].detach(), atol=1e-6)
    assert not torch.allclose(views(x, 6), v)  # a new step, a new view


@pytest.mark.parametrize("transforms", ["zoom", "none"])
def test_planned_views_draw_every_step_at_once_and_the_same_as_step_by_step(transforms):
    """A run's draws made up front (TransformViews.plan, as the loop does) are exactly those drawn step by step,
    coarse steps included; a video's frames, which share their item's seed, share its draw."""
    cfg = ImageAMConfig.build("lucid", transforms=transforms, coarse=(0.5, 0.5))
    x = torch.rand(6, 3, 24, 24)
    seeds = [4, 4, 4, 9, 9, 9]  # two 3-frame videos
    planned = cfg.views(seeds, (24, 24), steps=6)
    planned.plan(6)
    step_by_step = cfg.views(seeds, (24, 24), steps=6)
    for t in range(6):
        v = planned(x, t)
        assert torch.equal(v, step_by_step(x, t)), t
        assert v.shape[-1] == (16 if t < 3 else 24)
        assert torch.equal(planned._theta(x, t)[:3], planned._theta(x, t)[:1].expand(3, 2, 3))
    assert torch.equal(planned(x, 7), step_by_step(x, 7))  # a step beyond the plan is drawn on its own


def test_transform_geometry_zoom_and_grey_padding():
    ramp = torch.linspace(0, 1, 16).expand(1, 3, 16, 16).contiguous()  # brightness grows left to right
    zoomed = TransformSet(scales=(2.0,)).views([0])(ramp, 0)
    row = zoomed[0, 0, 8]
    assert (row[1:] >= row[:-1]).all()  # still a ramp, the right way round
    assert row.max() - row.min() == pytest.approx(0.5, abs=0.07)  # scale 2 shows the middle half
    assert row.mean() == pytest.approx(0.5, abs=0.02)  # centred
    assert TRANSFORM_SETS["none"].views([0]) is None
    padded = TransformSet(pad=4).views([0])(torch.ones(1, 3, 8, 8), 0)
    assert padded[0, :, 0, 0].tolist() == pytest.approx([0.5] * 3, abs=0.05)  # outside: Lucent's grey
    assert padded[0, :, 4, 4].tolist() == pytest.approx([1.0] * 3)  # inside: the image


def test_parse_transforms_named_and_custom_sets():
    assert parse_transforms("standard") is TRANSFORM_SETS["standard"]
    t = parse_transforms("pad=16,jitter=16+8,scale=0.8:1.2:0.1,rotate=15")
    assert t.pad == 16 and t.jitter == (16, 8) and len(t.angles) == 31
    assert t.scales == pytest.approx((0.8, 0.9, 1.0, 1.1, 1.2))
    for bad in ("bogus", "pad=-1", "scale=1:0.5:0.1", "jitter=0", "pad=1,pad=2"):
        with pytest.raises(UserInputError, match="unknown --transforms"):
            parse_transforms(bad)


def test_channel_objective_is_the_spatial_mean():
    acts = {"conv": torch.randn(3, 5, 4, 6), "fc": torch.randn(3, 7)}
    assert torch.allclose(channel("conv", 2)(acts), acts["conv"][:, 2].mean((1, 2)))
    assert torch.allclose(channel("fc", 4)(acts), acts["fc"][:, 4])
    batch = per_item([channel("conv", 1), unit("conv", 2, 1, 1), channel("conv", 4)])
    expected = torch.stack([acts["conv"][0, 1].mean(), acts["conv"][1, 2, 1, 1], acts["conv"][2, 4].mean()])
    assert torch.allclose(batch(acts), expected)


def test_channel_objective_raises_the_channel_mean(tiny):
    r = run(tiny, [(("features.2", 2), 0), (("features.0", 1), 1)], LUCID, objective=channel)
    assert (r.act_final > r.act_start).all()


def test_adam_rule_raises_activation_on_pixels_too(tiny):
    cfg = ImageAMConfig.build("yosinski", optimizer="adam")
    assert cfg.rule == StepRule(1.0, None, False, "adam")
    r = run(tiny, [(("fc", 2), 0)], cfg)
    assert r.act_final[0] > r.act_start[0]


def test_styles_and_bad_values():
    assert LUCID.param == "fourier" and LUCID.transforms == "zoom" and LUCID.optimizer == "adam"
    assert LUCID.lr == 0.1 and LUCID.lr_end == 0.01 and STYLES["lucid"]["steps"] == 256
    assert LUCID.coarse_scale == 0.7 and LUCID.coarse_until == 0.5
    # another optimizer under the style keeps that optimizer's own step sizes
    assert ImageAMConfig.build("lucid", optimizer="ascent").rule == StepRule(0.05, 0.005, True, "ascent")
    pixel = ImageAMConfig.build("yosinski")
    old_keys = set(ImageAMConfig.from_preset("lowfreq").hyperparams())
    assert set(pixel.hyperparams()) == old_keys | {"style"}  # the pixel fields are what they were
    for kwargs, message in (({"param": "voxel"}, "unknown --param 'voxel'"),
                            ({"optimizer": "sgd"}, "unknown --optimizer 'sgd'"),
                            ({"transforms": "wobble"}, "unknown --transforms 'wobble'"),
                            ({"param": "fourier", "preset": "sparse"}, "--preset sparse is a pixel-space")):
        with pytest.raises(UserInputError, match=message):
            ImageAMConfig.build("lucid", **kwargs)
    with pytest.raises(UserInputError, match="unknown --style 'picasso'"):
        ImageAMConfig.build("picasso")


def test_quality_metrics_on_known_images():
    grey = np.full((8, 8, 3), 128, np.uint8)
    assert rms_contrast(grey) == 0 and colourfulness(grey) == 0
    checker = np.zeros((8, 8, 3), np.uint8)
    checker[::2, ::2] = checker[1::2, 1::2] = 255
    assert rms_contrast(checker) == pytest.approx(0.5, abs=1e-3)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    assert colourfulness(red) == pytest.approx(0.3 * np.hypot(255, 127.5))
    views = fixed_views(16, seed=0)
    assert len(views) == 16 and views == fixed_views(16, seed=0)
    assert all(0.35 - 1e-9 <= h * w <= 1 + 1e-9 and t + h <= 1 and l + w <= 1 for t, l, h, w in views)


def test_fourier_size_renders_small_and_upsamples_to_the_net_input(tiny):
    cfg = ImageAMConfig.build("lucid", fourier_size=8)
    param = image_parameterization(cfg, [0, 1], PRE.size, PRE.mean01, torch.device("cpu"))
    assert param.params.shape[2:4] == (8, 8 // 2 + 1)  # rfft2 of the 8 x 8 image, not of the 16 x 16 input
    x = param.render(param.params)
    assert x.shape == (2, 3, *PRE.size) and x.min() >= 0 and x.max() <= 1
    # (Lucent's pad and jitters, counted in 8 px-image pixels, would leave a 16 px net little to see)
    r = run(tiny, [(("fc", 1), 0), (("features.2", 2, 4, 4), 3)], replace(cfg, transforms="none"))
    assert (r.act_final > r.act_start).all()
    assert '"fourier_size": 8' in str(cfg.hyperparams()).replace("'", '"')
    with pytest.raises(UserInputError, match="--fourier-size 4 needs --param fourier"):
        ImageAMConfig.build("lucid", fourier_size=4)
    with pytest.raises(UserInputError, match="needs --param fourier"):
        ImageAMConfig.build("yosinski", fourier_size=64)


def test_views_are_drawn_from_the_small_render_in_its_pixels_and_upsampled_to_the_net(tiny):
    """Lucent's order: pad and jitter are counted in pixels of the image the parameterization draws (Lucent's
    128 px image before it is upsampled to 224), the view is sampled at that image's size, then upsampled."""
    ones = torch.ones(1, 3, 16, 16)
    pad = TransformSet(pad=2)
    # a row of the view of a white image: 1 - 0.5 * (the grey share of the field, 2 * pad / field)
    assert pad.views([0])(ones, 0)[0, 0, 8].mean() == pytest.approx(1 - 0.5 * 4 / 20, abs=0.02)
    wide = pad.views([0], (32, 32))(ones, 0)  # 32 px views of the 16 px image: the same share of grey
    assert wide.shape[-2:] == (32, 32) and wide[0, 0, 16].mean() == pytest.approx(1 - 0.5 * 4 / 20, abs=0.03)
    cfg = ImageAMConfig.build("lucid", fourier_size=8)
    x = torch.rand(1, 3, 8, 8)
    small = TRANSFORM_SETS["zoom"].views([0])(x, 3)
    assert small.shape[-2:] == (8, 8)
    assert torch.equal(cfg.views([0], (16, 16))(x, 3), F.interpolate(small, size=(16, 16), mode="bilinear",
                                                                      align_corners=True))
    param = image_parameterization(cfg, [0, 1], PRE.size, PRE.mean01, torch.device("cpu"))
    p = param.params
    assert torch.allclose(param.render(p), F.interpolate(param.source(p), size=PRE.size, mode="bilinear",
                                                         align_corners=True))
    drawn_from, seen = [], []
    views, net_forward = cfg.views([0, 1], PRE.size), forward_fn(tiny)(frozenset({"fc"}))

    def spy_views(x, t):
        drawn_from.append(tuple(x.shape[-2:]))
        return views(x, t)

    def forward(v):
        seen.append(tuple(v.shape[-2:]))
        return net_forward(v)
    r = optimize(param, per_item([unit("fc", 1), unit("fc", 2)]), forward, 6, cfg.rule, views=spy_views)
    assert set(drawn_from) == {(8, 8)}  # the views sample the small render, not its upsampled copy
    assert set(seen) == {PRE.size} and r.images.shape[1:3] == PRE.size  # the net always sees its own size


def test_zoom_set_is_the_pad_and_jitters_of_standard_with_zooms_to_one_and_a_half():
    assert parse_transforms("zoom") == parse_transforms("pad=12,jitter=8+4,scale=0.9:1.5:0.05,rotate=10")
    z, s = TRANSFORM_SETS["zoom"], TRANSFORM_SETS["standard"]
    assert (z.pad, z.jitter) == (s.pad, s.jitter) and max(z.scales) == pytest.approx(1.5)
