"""MACO (tasks/maco.py): only the phase moves, the magnitude stays the shipped natural spectrum, activation rises,
and a style built with --param maco runs through the same loop as every other parameterization."""

from __future__ import annotations

import pytest
import torch

from models.errors import UserInputError
from models.spectra import natural_spectrum
from tasks.fourier import COLOR_SQRT_COV
from tasks.image_am import ImageAMConfig
from tasks.maco import _standardize, fit_magnitude, initial_phases, maco_parameterization, natural_magnitude
from tests.test_lucid import run

MACO = ImageAMConfig.build("lucid", param="maco")


def test_a_render_keeps_the_natural_magnitude_whatever_the_phase():
    mag = natural_spectrum(3)
    assert mag.shape == (3, 224, 113) and natural_spectrum(1).shape == (1, 224, 113)
    fitted = fit_magnitude(mag, (32, 32))
    phases = initial_phases([0, 1], (32, 32), 3, torch.device("cpu"))
    for p in (phases, phases * 7 + 3):
        pre = torch.fft.irfft2(torch.polar(fitted.expand_as(p), _standardize(p)), s=(32, 32))
        got = torch.fft.rfft2(pre).abs()
        # columns 0 and W/2 hold their own conjugates, which irfft2 symmetrizes; every other bin is exact
        torch.testing.assert_close(got[..., 1:-1], fitted.expand_as(got)[..., 1:-1], rtol=1e-3, atol=1e-3)
    param = maco_parameterization([0, 1], (32, 32), torch.device("cpu"), mag)
    x = param.render(param.params)
    assert x.shape == (2, 3, 32, 32) and 0 < x.min() and x.max() < 1
    assert not torch.equal(x[0], x[1])  # two seeds, two images


def test_natural_magnitude_falls_with_frequency_as_photos_do():
    mag = natural_spectrum(1)[0]
    low, high = mag[1:4, 1:4].mean(), mag[100:110, 100:110].mean()
    assert low > 20 * high
    flat = natural_magnitude(torch.rand(4, 1, 32, 32))[0]  # white noise: flat by comparison
    assert flat[1:4, 1:4].mean() < 3 * flat[12:16, 12:16].mean()


def test_maco_raises_activation_and_starts_from_a_photos_phase(tiny):
    items = [(("fc", 1), 0), (("fc", 3), 1), (("features.2", 2, 4, 4), 0)]
    r = run(tiny, items, MACO)
    assert (r.act_final > r.act_start).all(), (r.act_start, r.act_final)
    photo = torch.rand(1, 3, 16, 16)
    param = maco_parameterization([0], (16, 16), torch.device("cpu"), natural_spectrum(3), init=photo)
    expected = torch.fft.rfft2(torch.einsum("ck,bkhw->bchw", torch.linalg.inv(COLOR_SQRT_COV),
                                            _standardize(photo))).angle()
    torch.testing.assert_close(param.params, expected, rtol=1e-4, atol=1e-4)


def test_maco_flags_follow_the_spectral_rules():
    assert (MACO.param, MACO.fourier_size, MACO.preset, MACO.lr) == ("maco", 128, "none", 1.0)
    with pytest.raises(UserInputError, match="pixel-space regularizer"):
        ImageAMConfig.build("lucid", param="maco", preset="lowfreq")
