"""Preferred videos on tiny CNN + LSTM nets: layouts, the loop, per-frame codes, batch independence, checkpointed
gradients, time pooling and the frame-order analysis (fast: no Ray, no storage)."""

from __future__ import annotations

import pytest
import torch

from models.errors import UserInputError
from models.loading import load_net
from models.registry import resolve_model
from models.units import Unit
from models.video import as_video_entry, load_video_net, trace_video
from tasks.actor import WorkItem
from tasks.dgn import DGNConfig, initial_codes
from tasks.image_am import ImageAMConfig
from tasks.video import VideoConfig, frame_seed, pool_time, temporal_change, video_parameterization
from tasks.video.actor import VideoActor, VideoBatch, VideoNetSpec
from tasks.video.forward import VideoForward
from tasks.video.order import order_scores, permutations
from tests.video_nets import ClipNet, LoopNet

CLIP = "tests.video_nets:clip_net"
PIXEL = ImageAMConfig.build("yosinski", preset="none", lr=8.0, lr_end=8.0)


def actor(model=CLIP, **kw) -> VideoActor:
    return VideoActor(VideoNetSpec(model, input_size=8, **kw), device="cpu", threads=1)


def batch(units, seeds=None, frames=5, steps=12, config=PIXEL, **video) -> VideoBatch:
    seeds = seeds or [0] * len(units)
    return VideoBatch(tuple(WorkItem(u, s) for u, s in zip(units, seeds)), config,
                      VideoConfig(frames=frames, shuffles=3, chunk=2, **video), steps)


def test_layouts_of_every_kind():
    clip = trace_video(ClipNet().eval(), (8, 8), "clip")
    assert {n: l.layout for n, l in clip.layers.items()} == {
        "cnn.0": "frames", "cnn.1": "frames", "cnn.2": "frames", "cnn.3": "frames", "cnn.4": "frames",
        "cnn": "frames", "lstm": "bt", "fc": "clip"}
    assert (clip.frame_module, clip.output_layer, clip.per_frame_output) == ("cnn", "fc", False)
    assert clip.layers["cnn.0"].info.shape == (4, 4, 4) and clip.layers["lstm"].info.units == 6
    loop = trace_video(LoopNet().eval(), (8, 8), "loop")
    assert {n: loop.layers[n].layout for n in ("cnn", "cnn.0", "cell", "seq", "fc")} == {
        "cnn": "steps", "cnn.0": "steps", "cell": "steps", "seq": "tb", "fc": "bt"}
    assert loop.frame_module == "cnn" and loop.per_frame_output


def test_contract_refuses_image_nets_and_wrong_outputs():
    image = resolve_model("tests.selfloading_net:ONetLike", input_size=48)
    with pytest.raises(UserInputError, match=r"does not take video clips \[B, T, 3, H, W\]: given \[1, 3, 3, 48, 48\]"):
        load_video_net(image)
    odd = resolve_model("tests.video_nets:not_a_video_net", input_size=8)
    with pytest.raises(UserInputError, match=r"returned \[2, 3, 1, 1\]; a video model returns class scores"):
        load_video_net(odd)


def test_activation_rises_for_output_cnn_and_lstm_units():
    a = actor()
    units = [Unit("fc", 0), Unit("fc", 2), Unit("cnn.0", 1, 2, 2), Unit("lstm", 3)]
    for u in units:  # one layer per batch, as the driver batches
        r = a.video(batch([u])).results[0]
        assert r.act_final > r.act_start + 0.05, (u, r.act_start, r.act_final)
        assert r.frames.shape == (5, 8, 8, 3) and r.frames.dtype.name == "uint8"
        assert set(r.order) >= {"score", "score_reversed", "score_shuffled_mean", "score_shuffled_std"}
        assert r.order["score"] == pytest.approx(r.act_final, abs=1e-5)


def test_per_frame_codes_are_independent_per_frame():
    a = actor(generator="tiny", generator_weights="random")
    cfg = DGNConfig(upper=3.0)
    seeds, frames = [4, 9], 3
    param = video_parameterization(lambda fs: a.parameterization(cfg, fs), seeds, frames)
    codes = param.params
    assert codes.shape == (2, 3, 64)
    # frame t of seed s starts from its own seed alone
    for i, s in enumerate(seeds):
        for t in range(frames):
            expect = initial_codes((64,), [frame_seed(s, t)], cfg.init_std, torch.device("cpu")).clamp(0, 3)[0]
            assert torch.equal(codes[i, t], expect)
    assert not torch.equal(codes[0, 0], codes[0, 1])
    # a frame is drawn from its own code only
    base = param.render(codes).detach()
    moved = codes.clone()
    moved[0, 1] += 0.5
    diff = (param.render(moved).detach() - base).flatten(1).abs().amax(1)
    assert diff[1] > 0 and diff[[0, 2, 3, 4, 5]].max() == 0


def test_a_video_does_not_depend_on_its_batch_mates():
    a = actor()
    alone = a.video(batch([Unit("fc", 1)], [3])).results[0]
    mates = a.video(batch([Unit("fc", 0), Unit("fc", 1), Unit("fc", 2)], [0, 3, 5])).results[1]
    assert abs(int(alone.frames.astype(int).sum()) - int(mates.frames.astype(int).sum())) <= alone.frames.size // 100
    assert (alone.frames.astype(int) - mates.frames.astype(int)).__abs__().max() <= 1
    assert mates.act_final == pytest.approx(alone.act_final, abs=1e-3)


@pytest.mark.parametrize("layer", ["fc", "cnn.0", "lstm"])
def test_chunked_checkpointing_gives_the_plain_gradients(layer):
    net = load_net(as_video_entry(resolve_model(CLIP, input_size=8)), "random").net
    video = trace_video(net, (8, 8), "clip")
    clips = torch.rand(2, 7, 3, 8, 8)
    grads = []
    for chunk, ckpt in ((None, False), (3, True), (2, False)):
        x = clips.clone().requires_grad_(True)
        with VideoForward(net, video, [layer], chunk=chunk, use_checkpoint=ckpt) as vf:
            acts = vf(x)[layer]
        assert acts.shape[:2] == ((2, 1) if layer == "fc" else (2, 7))
        (g,) = torch.autograd.grad(acts.pow(2).sum(), x)
        grads.append(g)
    assert grads[0].abs().sum() > 0
    for g in grads[1:]:
        torch.testing.assert_close(g, grads[0], rtol=1e-4, atol=1e-6)


def test_checkpointed_render_gives_the_plain_gradients():
    a = actor(generator="tiny", generator_weights="random")
    cfg = DGNConfig(upper=3.0)
    grads = []
    for chunk, ckpt in ((None, False), (2, True)):
        param = video_parameterization(lambda fs: a.parameterization(cfg, fs), [1, 2], 3, chunk=chunk,
                                       use_checkpoint=ckpt, smoothness=0.5)
        p = param.params.requires_grad_(True)
        (g,) = torch.autograd.grad((param.render(p).mean() - param.penalty(p).sum()), p)
        grads.append(g)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-7)


def test_frames_drawn_small_are_the_source_the_views_sample():
    """Lucid frames rendered at 8 px for a 16 px net: the video exposes the 8 px frames as its source (chunked
    or not), so the views draw from them as for images, and the render is their upsampled copy."""
    from tasks.image_am import image_parameterization

    cfg = ImageAMConfig.build("lucid", fourier_size=8)
    make = lambda fs: image_parameterization(cfg, fs, (16, 16), (0.5, 0.5, 0.5), torch.device("cpu"))
    plain, chunked = (video_parameterization(make, [1, 2], 3, chunk=c) for c in (None, 2))
    p = plain.params
    small = plain.source(p)
    assert small.shape == (6, 3, 8, 8) and torch.equal(chunked.source(p), small)
    torch.testing.assert_close(plain.render(p), torch.nn.functional.interpolate(small, size=(16, 16), mode="bilinear",
                                                                                 align_corners=True))
    assert video_parameterization(lambda fs: actor(generator="tiny", generator_weights="random")
                                  .parameterization(DGNConfig(upper=3.0), fs), [1], 2).source is None


def test_time_pooling_is_the_mean_over_frames_or_the_last_frame():
    acts = {"a": torch.arange(24.0).reshape(2, 3, 4)}
    torch.testing.assert_close(pool_time(acts, "mean")["a"], acts["a"].mean(1))
    torch.testing.assert_close(pool_time(acts, "last")["a"], acts["a"][:, 2])
    # through the actor: a per-frame model's unit score is its per-frame output pooled over time
    a = actor("tests.video_nets:frame_net")
    for mode in ("mean", "last"):
        r = a.video(batch([Unit("fc", 1)], frames=4, steps=2, time_pool=mode)).results[0]
        clips = a._clips(torch.from_numpy(r.frames).permute(0, 3, 1, 2).float() / 255, 4)
        out = a.target.net(clips)[0, :, 1]
        assert r.act_final == pytest.approx(float(out.mean() if mode == "mean" else out[-1]), abs=1e-5)


def test_temporal_smoothness_penalizes_change_only():
    still = torch.ones(1, 4, 3, 2, 2) * 0.3
    moving = still.clone()
    moving[0, 2] += 0.2
    assert temporal_change(still).item() == 0
    assert temporal_change(moving).item() == pytest.approx(2 * 0.04 / 3)


def test_order_scores_separate_order_free_from_order_dependent_scores():
    perms = permutations(6, 5, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(perms, permutations(6, 5, seed=1)))
    assert all(not torch.equal(p, torch.arange(6)) for p in perms)
    clips = torch.rand(3, 6, 2)
    free = order_scores(lambda c: c.mean((1, 2)), clips, 5, 1)
    torch.testing.assert_close(free.reversed, free.score)
    torch.testing.assert_close(free.shuffled, free.score[:, None].expand(3, 5))
    ramp = torch.linspace(0, 1, 6).view(1, 6, 1).expand(3, 6, 2)
    dependent = order_scores(lambda c: c[:, -1].mean(1) - c[:, 0].mean(1), ramp, 5, 1)
    assert dependent.score.min() > 0.99 and dependent.reversed.max() < -0.99
    assert dependent.shuffled.mean() < 0.5


def test_video_config_validates():
    with pytest.raises(UserInputError, match="--frames 0 must be at least 1"):
        VideoConfig(frames=0)
    with pytest.raises(UserInputError, match="unknown --time-pool 'median'"):
        VideoConfig(time_pool="median")
    assert "temporal_smoothness" not in VideoConfig().hyperparams()
    assert VideoConfig(smoothness=2.0).hyperparams()["temporal_smoothness"] == 2.0
