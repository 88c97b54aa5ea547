"""The video actor: a SynthesisActor whose target net takes clips, for preferred videos and frame-order analysis.

It loads the video model through the same machinery (weights from any URI, frozen, on its device), traces its
time layouts once (models/video.py), and serves two kinds of jobs:
- `video(VideoBatch)`: a batch of (unit, seed) items, each a T-frame video optimized by the ONE loop
  (tasks/loop.py) through `video_parameterization` (tasks/video/parameterization.py), the per-frame CNN chunked and
  checkpointed (tasks/video/forward.py); then the frame-order scores of every synthesized video
  (tasks/video/order.py). Frames come back as uint8, exactly the frames `act_final` was measured on.
- `order(OrderJob)`: the frame-order scores of real clips (decoded by the driver) for the selected units,
  with the model's decision (arg-max of its time-pooled output) as given, reversed and shuffled.
Like its parent, it does no storage I/O beyond loading weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from models.units import Unit
from models.video import VideoNetEntry, as_video_entry, trace_video

from ..actor import NetSpec, SynthesisActor, WorkItem
from ..dgn import DGNConfig
from ..image_am import ImageAMConfig
from ..loop import optimize
from ..objectives import ObjectiveSpec, per_item, position_vector
from .parameterization import VideoConfig, pool_time, video_parameterization
from .forward import VideoForward
from .order import order_scores

__all__ = ["VideoNetSpec", "VideoBatch", "VideoItemResult", "VideoBatchResult", "OrderJob", "OrderResult",
           "VideoActor"]


@dataclass(frozen=True)
class VideoNetSpec(NetSpec):
    """A NetSpec whose model takes clips [B, T, 3, H, W] (its entry is a VideoNetEntry)."""

    def entry(self) -> VideoNetEntry:
        return as_video_entry(super().entry())


@dataclass(frozen=True)
class VideoBatch:
    items: tuple[WorkItem, ...]
    config: ImageAMConfig | DGNConfig
    video: VideoConfig
    steps: int
    objective: ObjectiveSpec = ObjectiveSpec()


@dataclass
class VideoItemResult:
    item: WorkItem
    frames: np.ndarray  # uint8 [T, H, W, 3]: the saved frames, on which act_final was measured
    act_start: float
    act_final: float
    act_best: float
    activation: np.ndarray  # float32 [C]: the probed layer, time-pooled, at the unit's position
    objective: str
    order: dict  # OrderScores.row: score, score_reversed, score_shuffled_mean/std/min


@dataclass
class VideoBatchResult:
    results: list[VideoItemResult]
    seconds: float
    device: str


@dataclass(frozen=True)
class OrderJob:
    """Real clips to score: `clips[i]` is uint8 [T_i, H, W, 3] at the net's input size."""

    names: tuple[str, ...]
    clips: tuple[np.ndarray, ...]
    units: tuple[Unit, ...]
    video: VideoConfig


@dataclass
class OrderResult:
    rows: list[dict]  # one per (clip, unit): name, layer, unit, y, x, frames + OrderScores.row
    seconds: float


class VideoActor(SynthesisActor):
    """Holds a video model (and optionally a generator) on one device; see the module docstring."""

    def __init__(self, spec: NetSpec, **kwargs):
        super().__init__(spec, **kwargs)
        if not self.usable:
            return  # its first ping raises why (tasks/device.DeviceActor)
        self.video_net = trace_video(self.target.net, self.preprocessing.size, spec.model, self.device)

    def _forward(self, layers, video: VideoConfig, truncate: bool = True) -> VideoForward:
        return VideoForward(self.target.net, self.video_net, layers, chunk=video.chunk,
                            use_checkpoint=video.checkpoint, truncate=truncate, model_name=self.spec.model)

    def _clips(self, frames01: torch.Tensor, t: int) -> torch.Tensor:
        """Frames [N*T, 3, H, W] in [0, 1] -> the net's input clips [N, T, 3, H, W]."""
        x = self.model_input(frames01)
        return x.reshape(-1, t, *x.shape[1:])

    def video(self, batch: VideoBatch) -> VideoBatchResult:
        """Synthesize a batch of preferred videos and score their frame order."""
        t0 = time.perf_counter()
        v, seeds = batch.video, [w.seed for w in batch.items]
        b, t = len(seeds), v.frames
        objective = per_item([batch.objective.build(w.unit.layer, w.unit.channel, w.unit.y, w.unit.x)
                              for w in batch.items])
        param = video_parameterization(lambda fs: self.parameterization(batch.config, fs), seeds, t,
                                       smoothness=v.smoothness, chunk=v.chunk, use_checkpoint=v.checkpoint)
        # every frame of a video sees the same random view at a step: the views keep its motion intact
        views = batch.config.views([s for s in seeds for _ in range(t)], self.preprocessing.size)
        with self._forward(objective.layers, v) as vf:
            def forward(x01: torch.Tensor):
                return pool_time(vf(self._clips(x01, t)), v.time_pool)

            r = optimize(param, objective, forward, batch.steps, batch.config.rule, views=views)
            frames = r.images.reshape(b, t, *r.images.shape[1:])
            clips01 = frames.to(self.device).permute(0, 1, 4, 2, 3).float() / 255.0
            own = per_item([replace(batch.objective, direction="max").build(w.unit.layer, w.unit.channel,
                                                                             w.unit.y, w.unit.x)
                            for w in batch.items])  # the unit's own score, also for --direction min
            order = order_scores(lambda c: own(forward(c.flatten(0, 1))), clips01, v.shuffles, v.order_seed)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        sign, out = batch.objective.sign, []
        for i, w in enumerate(batch.items):
            u = w.unit
            vec = position_vector(r.final_acts, u.layer, i, u.y, u.x)
            out.append(VideoItemResult(w, frames[i].numpy(), sign * float(r.act_start[i]),
                                       sign * float(r.act_final[i]), sign * float(r.act_best[i]),
                                       vec.float().cpu().numpy(), batch.objective.describe(u.layer, u.channel, u.y, u.x),
                                       order.row(i)))
        return VideoBatchResult(out, time.perf_counter() - t0, str(self.device))

    @torch.no_grad()
    def order(self, job: OrderJob) -> OrderResult:
        """Frame-order scores of real clips for every unit of the job (one row per clip and unit)."""
        t0 = time.perf_counter()
        units, v = list(job.units), job.video
        objectives = [ObjectiveSpec().build(u.layer, u.channel, u.y, u.x) for u in units]
        layers = {u.layer for u in units}
        rows = []
        with self._forward(layers, v, truncate=False) as vf:
            for name, clip in zip(job.names, job.clips):
                t = clip.shape[0]

                def score(c: torch.Tensor):
                    acts = pool_time(vf(self._clips(c.flatten(0, 1), t)), v.time_pool)
                    scores = torch.stack([o(acts)[0] for o in objectives])
                    out = vf.last_output
                    decision = out.mean(1) if out.dim() == 3 and v.time_pool == "mean" else (
                        out[:, -1] if out.dim() == 3 else out)
                    return scores, decision.expand(len(units), -1)

                c = torch.from_numpy(np.array(clip)).to(self.device)  # a copy: Ray hands out read-only arrays
                c = c.permute(0, 3, 1, 2).float().div(255.0).unsqueeze(0)
                res = order_scores(score, c, v.shuffles, v.order_seed)
                for i, u in enumerate(units):
                    rows.append({"name": name, "layer": u.layer, "unit": u.channel, "y": u.y, "x": u.x,
                                 "frames": t, **res.row(i)})
        return OrderResult(rows, time.perf_counter() - t0)
