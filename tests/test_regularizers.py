import torch

from tasks.regularizers import (clamp_range, clip_small_contribution, clip_small_norm, gaussian_blur,
                                gaussian_kernel, l2_decay)


def test_l2_decay_scales_towards_zero():
    x = torch.randn(2, 3, 8, 8)
    y = x.clone()
    l2_decay(y, 0.3)
    assert torch.allclose(y, 0.7 * x)


def test_blur_keeps_constants_and_removes_high_frequencies():
    const = torch.full((1, 3, 16, 16), 5.0)
    gaussian_blur(const, 1.0)
    assert torch.allclose(const, torch.full_like(const, 5.0), atol=1e-5)
    checker = ((torch.arange(16).view(-1, 1) + torch.arange(16)) % 2).float().expand(1, 3, 16, 16).clone() * 2 - 1
    before = checker.abs().mean()
    gaussian_blur(checker, 1.0)
    assert checker.abs().mean() < 0.05 * before  # the finest pattern all but vanishes
    k = gaussian_kernel(0.5)
    assert k.numel() == 5 and abs(float(k.sum()) - 1) < 1e-6


def test_small_norm_clipping_zeroes_the_weakest_pixels_per_image():
    x = torch.zeros(2, 3, 4, 4)
    norms = torch.arange(1, 17, dtype=torch.float32).view(4, 4)
    x[:, 0] = norms
    x[1, 0] *= 100  # per-image percentiles: scale must not matter
    clip_small_norm(x, 50)
    for b in range(2):
        kept = (x[b].norm(dim=0) > 0)
        assert kept.sum() == 8 and kept.view(-1)[8:].all()


def test_small_contribution_clipping_uses_x_times_gradient():
    x = torch.ones(1, 3, 2, 2)
    grad = torch.zeros(1, 3, 2, 2)
    grad[0, :, 0, 0] = 5.0  # only one pixel contributes
    grad[0, :, 1, 1] = -4.0  # a large negative contribution also counts (absolute value)
    clip_small_contribution(x, grad, 50)
    assert x[0, :, 0, 0].eq(1).all() and x[0, :, 1, 1].eq(1).all()
    assert x[0, :, 0, 1].eq(0).all() and x[0, :, 1, 0].eq(0).all()


def test_clamp_range_holds_per_channel():
    x = torch.randn(2, 3, 5, 5) * 300
    lo = torch.tensor([-100.0, -50.0, 0.0]).view(1, 3, 1, 1)
    hi = lo + 255
    clamp_range(x, lo, hi)
    assert (x >= lo).all() and (x <= hi).all()
