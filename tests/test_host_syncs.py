"""The synthesis hot loop never makes the host wait for the device after step 0 (tests/device_checks.py).

Every method runs a few steps on the `meta` device, which stands in for a GPU: image AM in each
parameterization (Lucid's Fourier image with coarse views, Yosinski's pixels with each regularizer preset,
MACO), DGN-AM through a generator, diversity, a batch mixing every objective kind and direction, and preferred
videos. After step 0 none may copy host data to the device, read a scalar back, or run a data-dependent op.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from models.capture import Capture
from models.generators import GeneratorEntry
from models.layout import PREFIX_ROW
from models.loading import load_net
from models.preprocess import Preprocessing
from models.registry import resolve_model
from models.video import trace_video
from tasks.dgn import DGNConfig, dgn_parameterization
from tasks.diversity import Diversity, groups_of
from tasks.image_am import PRESETS, ImageAMConfig, image_parameterization
from tasks.loop import StepRule, optimize
from tasks.objectives import ObjectiveSpec, per_item, unit
from tasks.video import pool_time, video_parameterization
from tasks.video.forward import VideoForward
from tests.conftest import tiny_net
from tests.device_checks import ACCELERATOR, HostSyncError, HostSyncGuard, foreach_optimizers
from tests.video_nets import ClipNet

STEPS = 4
PRE = Preprocessing(size=(16, 16))


def on_device(net: torch.nn.Module) -> torch.nn.Module:
    net = net.eval().requires_grad_(False)
    for m in net.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    return net.to(ACCELERATOR)


@pytest.fixture(autouse=True)
def cuda_optimizer_path():
    """Adam runs its multi-tensor kernels, as it does on CUDA."""
    with foreach_optimizers():
        yield


@pytest.fixture(scope="module")
def net():
    return on_device(tiny_net())


def guarded(run) -> HostSyncGuard:
    """Run `run(progress)` (setup and loop) under a guard armed after step 0; fail on any violation."""
    guard = HostSyncGuard(steps=STEPS)
    with guard:
        result = run(guard.progress)
    assert guard.armed and guard.finished
    assert guard.violations == [], "\n".join(guard.violations)
    assert guard.seen["convolution_backward"] > 0  # the backward passes ran under the guard too
    assert result.params.device == ACCELERATOR and result.images.device.type == "cpu" and len(result.images)
    return guard


def image_run(net, cfg: ImageAMConfig, objectives, seeds, *, coarse: bool = False, diversity=None, extra=()):
    def run(progress):
        obj = per_item(objectives)
        layers = obj.layers | set(extra)
        param = image_parameterization(cfg, seeds, PRE.size, PRE.mean01, ACCELERATOR)
        views = cfg.views(seeds, PRE.size, STEPS if coarse else None)
        norm = PRE.module().to(ACCELERATOR)
        with Capture(net, layers) as cap:
            return optimize(param, obj, lambda x: cap(norm(x)), STEPS, cfg.rule, views=views, progress=progress,
                            diversity=diversity)
    return run


CHANNELS = [ObjectiveSpec("channel").build("fc", 1), ObjectiveSpec("channel").build("features.2", 3)]
UNITS = [unit("fc", 1), unit("features.2", 2, 4, 4), unit("features.2", 5, 1, 2)]


def test_lucid_fourier_with_coarse_views(net):
    cfg = ImageAMConfig.build("lucid")
    assert cfg.coarse_size(PRE.size) == (8, 8)  # 8 px views for steps 0 and 1, then 16 px ones
    guarded(image_run(net, cfg, CHANNELS, [0, 1], coarse=True))


def test_lucid_fourier_at_the_nets_size_with_standard_views(net):
    cfg = ImageAMConfig.build("lucid", transforms="standard", fourier_size=16, coarse=False, optimizer="ascent")
    guarded(image_run(net, cfg, UNITS, [0, 1, 2]))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_yosinski_pixels_with_each_regularizer_preset(net, preset):
    cfg = replace(ImageAMConfig.build("yosinski", preset=preset), blur_every=1)  # blur after step 0 too
    guarded(image_run(net, cfg, UNITS, [0, 1, 2]))


def test_pixels_with_adam_and_views(net):
    cfg = ImageAMConfig.build("yosinski", optimizer="adam", transforms="zoom")
    guarded(image_run(net, cfg, UNITS, [0, 1, 2]))


def test_maco(net):
    cfg = ImageAMConfig.build("lucid", param="maco")
    guarded(image_run(net, cfg, CHANNELS, [0, 1], coarse=True))


def test_every_objective_kind_and_direction_in_one_batch(net):
    specs = [ObjectiveSpec(), ObjectiveSpec("channel"), ObjectiveSpec("softmax"), ObjectiveSpec("blend", 2, 0.5),
             ObjectiveSpec(direction="min"), ObjectiveSpec("blend", 4, 0.1, "min"),
             ObjectiveSpec("softmax", direction="min"), ObjectiveSpec("channel", direction="min")]
    units = [("fc", 1), ("features.2", 2), ("fc", 3), ("features.2", 1, 3, 3), ("features.2", 5, 2, 2), ("fc", 0),
             ("fc", 4), ("features.0", 1)]
    objectives = [s.build(*u) for s, u in zip(specs, units)]
    cfg = ImageAMConfig.build("lucid", coarse=False)
    guarded(image_run(net, cfg, objectives, list(range(len(objectives)))))


def test_diversity(net):
    cfg = ImageAMConfig.build("lucid", coarse=False)
    units = [("fc", 1)] * 3 + [("fc", 3)] * 2 + [("fc", 0)]
    diversity = Diversity(1.0, "features.2", groups_of(units))
    guarded(image_run(net, cfg, [unit(*u) for u in units], [0, 1, 2, 0, 1, 0], diversity=diversity,
                      extra=("features.2",)))


def tiny_generator() -> tuple[GeneratorEntry, torch.nn.Module]:
    entry = resolve_model("tiny")
    torch.manual_seed(0)
    return entry, on_device(entry.build())


@pytest.mark.parametrize("dgn", [DGNConfig(upper=3.0, transforms="standard"), DGNConfig(l2="paper", normalize=False)])
def test_dgn_am_through_a_generator(net, dgn):
    entry, generator = tiny_generator()

    def run(progress):
        obj = per_item([unit("fc", 1), unit("features.2", 2, 3, 3)])
        # the entry's own to_image01, as the actor passes it: its mean must not be copied at every render
        param = dgn_parameterization(dgn, generator, entry.to_image01, entry.code_shape, [0, 1], PRE.size,
                                     ACCELERATOR)
        norm = PRE.module().to(ACCELERATOR)
        with Capture(net, obj.layers) as cap:
            return optimize(param, obj, lambda x: cap(norm(x)), STEPS, dgn.rule, views=dgn.views([0, 1]),
                            progress=progress)
    guarded(run)


def test_a_vision_transformer_with_class_and_patch_token_units():
    loaded = load_net(resolve_model("tests.transformer_nets:tiny_vit", input_size=16))
    vit, norm = on_device(loaded.net), loaded.normalize.to(ACCELERATOR)
    layer = "encoder.layers.encoder_layer_1.mlp.0"
    specs = [ObjectiveSpec(), ObjectiveSpec(), ObjectiveSpec("channel"), ObjectiveSpec("blend", 9, 0.2, "min")]
    units = [(layer, 3, PREFIX_ROW, 0), (layer, 4, 1, 2), (layer, 5), (layer, 6, PREFIX_ROW, 0)]
    cfg = ImageAMConfig.build("lucid", coarse=False)

    def run(progress):
        obj = per_item([s.build(*u) for s, u in zip(specs, units)])
        param = image_parameterization(cfg, [0, 1, 2, 3], (16, 16), (0.5, 0.5, 0.5), ACCELERATOR)
        with Capture(vit, obj.layers, layouts=loaded.layouts) as cap:
            return optimize(param, obj, lambda x: cap(norm(x)), STEPS, cfg.rule, views=cfg.views([0, 1, 2, 3]),
                            progress=progress)
    guarded(run)


VIDEO_CONFIGS = {"pixel": ImageAMConfig.build("yosinski", lr=8.0),
                 "lucid": ImageAMConfig.build("lucid", fourier_size=8),
                 "dgn": DGNConfig(upper=3.0, transforms="standard")}


@pytest.mark.parametrize("method", sorted(VIDEO_CONFIGS))
def test_video_loop(method):
    """Preferred videos as the video actor runs them: per-frame parameters, chunked and checkpointed renders
    and CNN, temporal smoothness, time pooling, one view per video and step."""
    cfg, frames, seeds, size = VIDEO_CONFIGS[method], 3, [0, 4], (8, 8)
    torch.manual_seed(0)
    cpu_net = ClipNet().eval()
    video = trace_video(cpu_net, size, "clip")
    vnet = on_device(cpu_net)
    entry, generator = tiny_generator()

    def frame_parameterization(frame_seeds):
        if method == "dgn":
            return dgn_parameterization(cfg, generator, entry.to_image01, entry.code_shape, frame_seeds, size,
                                        ACCELERATOR)
        return image_parameterization(cfg, frame_seeds, size, (0.5, 0.5, 0.5), ACCELERATOR)

    def run(progress):
        obj = per_item([unit("fc", 1), unit("cnn.1", 2, 1, 1)])
        param = video_parameterization(frame_parameterization, seeds, frames, smoothness=0.1, chunk=2,
                                       use_checkpoint=True)
        views = cfg.views([s for s in seeds for _ in range(frames)], size)
        with VideoForward(vnet, video, obj.layers, chunk=2) as vf:
            def forward(x01):
                return pool_time(vf(x01.reshape(-1, frames, *x01.shape[1:])), "mean")
            return optimize(param, obj, forward, STEPS, cfg.rule, views=views, progress=progress)
    guarded(run)


def test_the_guard_catches_read_backs_and_copies_after_step_0(net):
    """A deliberate `.item()` and a host-to-device copy at every step: nothing at step 0, both after it."""
    cfg = ImageAMConfig.build("yosinski", preset="none")
    norm = PRE.module().to(ACCELERATOR)

    def forward_with(cap, bad):
        def forward(x):
            if bad == "item":
                float(x.mean().item())
            else:
                x = x + torch.tensor([0.0, 0.0, 0.0]).view(1, 3, 1, 1).to(x.device)
            return cap(norm(x))
        return forward

    for bad, what in (("item", "scalar read-back"), ("copy", "host tensor [1, 3, 1, 1] copied to the device")):
        guard = HostSyncGuard(steps=STEPS)
        with guard:
            obj = per_item([unit("fc", 1)])
            param = image_parameterization(cfg, [0], PRE.size, PRE.mean01, ACCELERATOR)
            with Capture(net, obj.layers) as cap:
                optimize(param, obj, forward_with(cap, bad), STEPS, StepRule(1.0), progress=guard.progress)
        # steps 1..3 and the final measurement of the picture
        assert len(guard.violations) == STEPS, guard.violations
        assert all(what in v and "tests/test_host_syncs.py" in v for v in guard.violations), guard.violations


def test_the_guard_refuses_data_dependent_ops():
    x = torch.ones(4, device=ACCELERATOR)
    with HostSyncGuard() as guard, pytest.raises(HostSyncError, match="boolean-mask"):
        x[x > 0] = 0.0
    assert guard.violations and "boolean-mask" in guard.violations[0]
    with HostSyncGuard(armed=True) as guard:
        assert torch.ones(3).sum().item() == 3  # the host's own work is no sync
        torch.zeros(2, device=ACCELERATOR).cpu()
    assert len(guard.violations) == 1 and "copied to the host" in guard.violations[0]
