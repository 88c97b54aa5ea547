"""The demo's ingredients on a tiny scale: procedural activity clips, and a tiny trained CNN + LSTM whose classes
need frame order loses its score when the frames are reversed or shuffled (fast: ~20 s of training)."""

from __future__ import annotations

import torch

from models.preprocess import Preprocessing
from tasks.video.activities import MOTIONS, SHAPES, make_clips
from tasks.video.order import order_scores
from tasks.video.train import clip_logits, first_classes, train_video_classifier
from tests.video_nets import ClipNet


def test_activity_clips_are_seeded_and_labelled():
    a, b = make_clips(64, 3, frames=6, size=16), make_clips(64, 3, frames=6, size=16)
    assert torch.equal(a.clips, b.clips) and a.clips.shape == (64, 6, 3, 16, 16)
    assert 0 <= float(a.clips.min()) and float(a.clips.max()) <= 1
    assert set(a.motion.tolist()) == set(range(len(MOTIONS))) and set(a.shape.tolist()) == set(range(len(SHAPES)))
    right = first_classes(make_clips(200, 1, frames=6, size=16, noise=0), "motion", 2, 50)
    mass = lambda c: (c - c[:, :, :1, :1]).abs().sum(1) > 0.05  # noqa: E731 (object pixels of [n, 3, S, S])
    xs = torch.arange(16.0)
    centre = [(mass(right.clips[:, t]).float() * xs).sum((1, 2)) / mass(right.clips[:, t]).sum((1, 2))
              for t in (0, 5)]
    moved = centre[1] - centre[0]
    assert bool(((moved < 0) == (right.motion == 0)).all())  # 'left' moves left, 'right' moves right


def test_an_order_dependent_trained_model_loses_score_when_frames_are_reversed():
    torch.manual_seed(0)
    net = ClipNet(size=16, classes=2)  # its head reads the LSTM's last step: direction needs order
    norm = Preprocessing(size=(16, 16), mean=(0.5,) * 3, std=(0.25,) * 3).module()
    train_video_classifier(net, "motion", norm, steps=100, lr=1e-2, frames=8, size=16, classes=2)
    test = first_classes(make_clips(512, 10 ** 6, frames=8, size=16), "motion", 2, 128)

    def true_class(clips):
        logits = clip_logits(net, clips, norm)
        return logits.gather(1, test.motion[:, None])[:, 0], logits

    r = order_scores(true_class, test.clips, shuffles=4, seed=0)
    assert (r.top == test.motion).float().mean() > 0.9
    assert r.score.mean() > 1.0
    assert r.reversed.mean() < r.score.mean() - 2.0 and (r.top_reversed == test.motion).float().mean() < 0.2
    assert r.shuffled.mean() < r.score.mean() - 1.0
