"""The synthesis actor: loads the target net (and generator) once on its device, then optimizes batches.

`SynthesisActor` is a plain class so it can be tested without Ray; `pipelines` wraps it with `ray.remote`.
A batch holds many (unit, seed) items of one method; they are optimized together, each with its own
objective, and the net runs only as deep as the deepest layer the batch needs. A batch may name the target
weights it runs on (`Batch.weights`, a training snapshot's checkpoint): the actor loads them when they differ
from the ones it holds and keeps them for the next batches, so a run grouped by snapshot loads each
snapshot's weights once per group of batches, not once per item. No storage I/O happens here
except loading weights through `models` (images and numbers go back to the caller).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import torch

from models.capture import Capture
from models.errors import StorageError, UserInputError
from models.frozen import FrozenBatchNorm
from models.inference import folded_copy
from models.loading import LoadedNet, is_built, load_net
from models.registry import resolve_model
from models.units import Unit

from .device import DeviceActor, configure_cuda, pick_device
from .diversity import Diversity, default_layer, groups_of
from .dgn import DGNConfig, code_clipper, dgn_parameterization, fit_to, initial_codes
from .image_am import ImageAMConfig, image_parameterization
from .inverse import Constraint, InverseConfig, InverseResult, inverse_set, quantize_st, throttled_report
from .loop import LoopResult, Parameterization, optimize
from .objectives import Objective, ObjectiveSpec, per_item, position_vector, unit

__all__ = ["NetSpec", "pin_build", "WorkItem", "Batch", "ItemResult", "BatchResult", "InverseJob", "SynthesisActor",
           "pick_device", "DeviceActor"]


@dataclass(frozen=True)
class NetSpec:
    """What an actor loads: the target net (+ preprocessing overrides) and, for DGN-AM, the generator.

    `built_sha256`: set by the driver (`pin_build`) for a net used as its callable built it; every worker's
    build must have this state digest, or it refuses to run (models/loading.py)."""

    model: str
    weights: str | None = None
    input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    bgr: bool | None = None
    channels: int | None = None
    layouts: tuple[tuple[str, str], ...] | None = None  # --layout LAYER=KIND overrides
    generator: str | None = None
    generator_weights: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    built_sha256: str | None = None
    precision: str = "tf32"  # fp32, tf32 (TF32 matmuls on a GPU) or bf16 (bf16 autocast around the target net)

    def entry(self):
        return resolve_model(self.model, input_size=self.input_size, mean=self.mean, std=self.std, bgr=self.bgr,
                             channels=self.channels, layouts=self.layouts)


def pin_build(net: NetSpec, target: LoadedNet) -> NetSpec:
    """`net` carrying the state digest of `target` when the driver used it as built (else `net` itself)."""
    return replace(net, built_sha256=target.weights_sha256) if is_built(target.weights_uri) else net


@dataclass(frozen=True)
class WorkItem:
    unit: Unit
    seed: int


@dataclass(frozen=True)
class Batch:
    items: tuple[WorkItem, ...]
    config: ImageAMConfig | DGNConfig
    steps: int
    objective: ObjectiveSpec = ObjectiveSpec()
    weights: str | None = None  # target weights URI for this batch (a snapshot); None: the actor's own
    diversity: tuple[float, str | None] | None = None  # (weight, Gram layer or None for the default): a unit's
    # seeds optimized as one group (tasks/diversity.py)
    init: tuple[np.ndarray, ...] | None = None  # per item: the photo it starts from, float32 [C, H, W] in [0, 1]

    @property
    def method(self) -> str:
        return "dgn" if isinstance(self.config, DGNConfig) else "image"


@dataclass(frozen=True)
class InverseJob:
    """One inverse-set run: samples satisfying every constraint, diversity measured at `encoder_layer`
    of the target net, initial codes from `seed` (code i from seed * 1000 + i)."""

    constraints: tuple[Constraint, ...]
    config: InverseConfig
    encoder_layer: str
    seed: int = 0
    dgn: DGNConfig = DGNConfig()  # code bounds (lower, constant upper) for the generator's codes


@dataclass
class ItemResult:
    item: WorkItem
    image: np.ndarray  # uint8 [H, W, 3]
    act_start: float
    act_final: float
    act_best: float
    activation: np.ndarray  # float32 [C]: the probed layer at the unit's position, for the final image
    objective: str


@dataclass
class BatchResult:
    results: list[ItemResult]
    seconds: float  # time spent synthesizing (the accounting numerator)
    device: str
    load_seconds: float = 0.0  # time spent loading this batch's target weights (0 when already held)
    error: str | None = None  # the batch's weights could not be loaded (no results): the one-line reason


_FOLDED_KEPT = 4  # folded copies an actor keeps (one per captured layer set; a run rarely mixes more)


class SynthesisActor(DeviceActor):
    """Holds the loaded nets on one device and turns batches into images and activations."""

    def __init__(self, spec: NetSpec, *, device: str | None = None, threads: int | None = None,
                 code_upper: np.ndarray | None = None, seed: int = 0):
        if not self.open_device(device, threads):
            return
        if self.device.type == "cpu":
            # gradients far below a unit's scale (a near-grey start, a saturated sigmoid) are subnormal floats,
            # which x86 CPUs compute tens of times slower; flushing them to zero changes nothing visible
            # (tests/test_speed_paths.py) and nothing on a GPU, which flushes in its own kernels
            torch.set_flush_denormal(True)
        if self.device.type == "cuda":
            configure_cuda(tf32=spec.precision != "fp32")
        self.spec = spec
        self._fits: int | None = None  # the largest batch that fitted after running out of memory
        entry = spec.entry()
        self.target = load_net(entry, spec.weights, storage_options=spec.storage_options, device=self.device,
                               seed=seed, expect_sha256=spec.built_sha256)
        self.weights, self.weight_loads, self._entry, self._seed = spec.weights, 0, entry, seed
        self.preprocessing = entry.preprocessing
        self._runs_at: dict[tuple[int, int], bool] = {}  # input sizes (coarse views) the target net runs on
        self._folded: dict[frozenset[str], torch.nn.Module] = {}  # captured convs and BatchNorms -> folded copy
        self._foldable: set[str] | None = None  # the target net's convolutions and BatchNorms, by name
        self.generator = None
        self._encoder: LoadedNet | None = None  # the generator's encoder net (DGN-AM from a photo), loaded on use
        self.code_upper = code_upper
        if spec.generator:
            gen_entry = resolve_model(spec.generator)
            self.generator = load_net(gen_entry, spec.generator_weights, storage_options=spec.storage_options,
                                      device=self.device, seed=seed)

    def model_input(self, x01: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB images -> the target net's input (see LoadedNet.to_input)."""
        return self.target.to_input(x01)

    def setup(self, batch: Batch) -> tuple[Parameterization, Objective]:
        """The batch's parameterization (initialised from each item's seed) and per-item objective."""
        objective = per_item([batch.objective.build(w.unit.layer, w.unit.channel, w.unit.y, w.unit.x)
                              for w in batch.items])
        init = None
        if batch.init is not None:
            init = torch.from_numpy(np.stack(batch.init)).to(self.device)
        return self.parameterization(batch.config, [w.seed for w in batch.items], init), objective

    def parameterization(self, config: ImageAMConfig | DGNConfig, seeds: list[int],
                         init: torch.Tensor | None = None) -> Parameterization:
        """The method's parameters for one net-sized image per seed (an item, or a video frame), started from
        the photos `init` [B, C, H, W] in [0, 1] when given: as the image itself (image AM), or as the
        generator's encoder's code of it (DGN-AM, `encode`)."""
        size = self.preprocessing.size
        if isinstance(config, DGNConfig):
            if self.generator is None:
                raise ValueError("this actor was started without a generator; DGN-AM batches need one")
            g = self.generator
            codes = self.encode(init) if init is not None else None
            return dgn_parameterization(config, g.net, g.entry.to_image01, g.entry.code_shape, seeds, size,
                                        self.device, self.code_upper, init=codes)
        return image_parameterization(config, seeds, size, self.preprocessing.mean01, self.device, init=init)

    def encode(self, photos: torch.Tensor) -> torch.Tensor:
        """The generator's codes of `photos` [B, C, H, W] in [0, 1]: its encoder layer's activations
        (`NetEntry.encoder`: the target net when it names the target's model, else that net with its default
        weights, loaded once), as the released DGN-AM code starts from a real image's code."""
        model, layer = self.generator.entry.encoder
        if model == self.spec.model:
            enc = self.target
        else:
            if self._encoder is None:
                self._encoder = load_net(resolve_model(model), None, storage_options=self.spec.storage_options,
                                         device=self.device)
            enc = self._encoder
        with torch.no_grad(), Capture(enc.net, [layer], model_name=model, layouts=enc.layouts) as cap:
            return cap(enc.to_input(fit_to(photos, enc.entry.preprocessing.size)))[layer].flatten(1)

    def inverse(self, job: InverseJob) -> tuple[InverseResult, float]:
        """Run one inverse-set job (tasks/inverse.py); returns the result and the seconds it took."""
        if self.generator is None:
            raise ValueError("this actor was started without a generator; inverse sets need one")
        t0 = time.perf_counter()
        g, size = self.generator, self.preprocessing.size
        shape = g.entry.code_shape
        clip = code_clipper(shape, self.device, self.code_upper, job.dgn.upper, job.dgn.lower)
        init = initial_codes(shape, [job.seed * 1000 + i for i in range(job.config.k)], job.config.init_std,
                             self.device)
        units = [unit(c.unit.layer, c.unit.channel, c.unit.y, c.unit.x) for c in job.constraints]
        layers = list(dict.fromkeys([c.unit.layer for c in job.constraints] + [job.encoder_layer]))
        capture = Capture(self.synthesis_net(layers), layers, model_name=self.spec.model, layouts=self.target.layouts)

        def render(c: torch.Tensor) -> torch.Tensor:
            return quantize_st(fit_to(g.entry.to_image01(g.net(c)), size))

        def probe(x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            acts = capture(self.model_input(x01))
            return torch.stack([u(acts) for u in units], 1), acts[job.encoder_layer].flatten(1)

        with capture:
            result = inverse_set(render, probe, init, clip, list(job.constraints), job.config,
                                 progress=throttled_report(" & ".join(map(str, job.constraints)), job.config))
        return result, time.perf_counter() - t0

    def use_weights(self, weights: str | None) -> float:
        """Hold the target net with `weights` (None: keep the current ones); returns the seconds spent loading
        (0 when they are already held). The architecture and preprocessing stay the spec's."""
        if weights is None or weights == self.weights:
            return 0.0
        t0 = time.perf_counter()
        self.target = load_net(self._entry, weights, storage_options=self.spec.storage_options, device=self.device,
                               seed=self._seed)
        self.weights = weights
        self.weight_loads += 1
        self._folded.clear()
        self._foldable = None
        return time.perf_counter() - t0

    def run(self, batch: Batch) -> BatchResult:
        """Synthesize the batch; when its `weights` cannot be loaded (a snapshot deleted or rewritten since the
        driver read it), no results and the reason in `error`, so the driver can skip that snapshot.

        Out of device memory, the batch runs again as two halves (a unit's seeds stay together), and batches
        after it are cut to the size that fitted: the results are the same, since rows never interact."""
        if self._fits is not None and len(batch.items) > self._fits and (halves := split_batch(batch)):
            return _joined([self.run(h) for h in halves])
        try:
            return self._run(batch)
        except torch.OutOfMemoryError:
            halves = split_batch(batch)
            if halves is None:
                raise
        # out of the except block: the failed attempt's tensors (held by its traceback) are freed now
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self._fits = max(len(h.items) for h in halves)
        print(f"out of memory on {self.device} at a batch of {len(batch.items)}; running batches of at most "
              f"{self._fits}", file=sys.stderr, flush=True)
        return _joined([self.run(h) for h in halves])

    def _run(self, batch: Batch) -> BatchResult:
        try:
            load_s = self.use_weights(batch.weights)
        except StorageError:
            raise  # storage is down, not the snapshot: stop the run
        except UserInputError as e:
            return BatchResult([], 0.0, str(self.device), error=str(e))
        t0 = time.perf_counter()
        param, objective = self.setup(batch)
        coarse = self._coarse_allowed(batch)
        views = batch.config.views([w.seed for w in batch.items], self.preprocessing.size,
                                   batch.steps if coarse else None, fixed=coarse == "fixed")
        layers, diversity = objective.layers, None
        if batch.diversity is not None:
            weight, gram_layer = batch.diversity
            gram_layer = gram_layer or default_layer(batch.items[0].unit.layer, self.target.layers)
            layers = layers | {gram_layer}
            diversity = Diversity(weight, gram_layer, groups_of([w.unit for w in batch.items]))
        with Capture(self.synthesis_net(layers), layers, model_name=self.spec.model,
                     layouts=self.target.layouts) as cap:
            result = optimize(param, objective, self._net_forward(cap), batch.steps, batch.config.rule,
                              views=views, diversity=diversity)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return BatchResult(self._item_results(batch, result), time.perf_counter() - t0, str(self.device), load_s)

    def _net_forward(self, cap: Capture):
        """images in [0, 1] -> the captured activations; with `precision` bf16 the net runs under bf16 autocast
        and its activations come back as fp32 (the render's FFT and sigmoid, the objectives and the
        quantization stay fp32: they run outside)."""
        if self.spec.precision != "bf16":
            return lambda x: cap(self.model_input(x))

        def forward(x: torch.Tensor):
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                acts = cap(self.model_input(x))
            return {k: v.float() for k, v in acts.items()}
        return forward

    def memory_per_item(self, batch: Batch) -> tuple[float, float] | None:
        """(device bytes one item of `batch` needs at its peak, bytes free now) from a 2-step run of it on a
        GPU; None on other devices. The driver sizes GPU batches from it (pipelines/runner.py)."""
        if self.device.type != "cuda":
            return None
        torch.cuda.synchronize(self.device)
        base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self._run(replace(batch, steps=2))
        peak = torch.cuda.max_memory_allocated(self.device) - base
        return peak / len(batch.items), float(torch.cuda.mem_get_info(self.device)[0])

    def synthesis_net(self, layers) -> torch.nn.Module:
        """The target net for optimizing towards `layers`: a copy with BatchNorms folded into their convs
        (models/inference.folded_copy; the same activations and input gradients up to rounding, 14 % less
        time per step for MobileNetV2 on a CPU) and, on a CPU, each conv fused with its activation
        (models/fused.py). Copies differ only in the captured convolutions and BatchNorms they keep apart
        (a captured pre-activation output), so one copy serves every layer set with the same ones; the last
        few are kept."""
        if self._foldable is None:
            kinds = (torch.nn.modules.conv._ConvNd, FrozenBatchNorm)
            self._foldable = {n for n, m in self.target.net.named_modules() if isinstance(m, kinds)}
        key = frozenset(layer for layer in layers if layer in self._foldable)
        if key not in self._folded:
            if len(self._folded) >= _FOLDED_KEPT:
                del self._folded[next(iter(self._folded))]
            self._folded[key] = folded_copy(self.target.net, key, fuse=self.device.type == "cpu")
        return self._folded[key]

    def _coarse_allowed(self, batch: Batch) -> bool | str:
        """Whether the batch may see coarse views early on (ImageAMConfig.coarse_scale): no item's objective
        has a position. True when the net runs on the coarse size (checked once per size with a forward pass),
        "fixed" when it takes one input size only (the coarse views are upsampled to it)."""
        size = getattr(batch.config, "coarse_size", lambda s: None)(self.preprocessing.size)
        if size is None or any(w.unit.y is not None for w in batch.items):
            return False
        if size not in self._runs_at:
            try:
                with torch.no_grad():
                    self.target.net(self.model_input(torch.full((1, self.preprocessing.channels, *size), 0.5,
                                                                device=self.device)))
                self._runs_at[size] = True
            except (RuntimeError, AssertionError, ValueError):
                self._runs_at[size] = False  # a fixed-size head or ViT's size assert: coarse views upsampled
        return True if self._runs_at[size] else "fixed"

    @staticmethod
    def _item_results(batch: Batch, r: LoopResult) -> list[ItemResult]:
        """Per item: the image, the objective's values (sign restored for --direction min, so they are the
        unit's own activation) and the probed layer's activation vector at the unit's position (its spatial
        mean for a unit without one on a conv layer: the channel objective)."""
        out = []
        images = r.images.numpy()
        sign = batch.objective.sign
        for i, w in enumerate(batch.items):
            vec = position_vector(r.final_acts, w.unit.layer, i, w.unit.y, w.unit.x)
            description = batch.objective.describe(w.unit.layer, w.unit.channel, w.unit.y, w.unit.x)
            out.append(ItemResult(w, images[i], sign * float(r.act_start[i]), sign * float(r.act_final[i]),
                                  sign * float(r.act_best[i]), vec.float().cpu().numpy(), description))
        return out


def split_batch(batch: Batch) -> tuple[Batch, Batch] | None:
    """Two batches holding `batch`'s items in order, cut at the unit boundary nearest the middle when its
    seeds are optimized as groups (diversity); None when it cannot be cut (one item, or one group)."""
    n = len(batch.items)
    if batch.diversity is None:
        cut = n // 2
    else:
        bounds = [i for i in range(1, n) if batch.items[i].unit != batch.items[i - 1].unit]
        cut = min(bounds, key=lambda i: abs(i - n / 2), default=0)
    if not 0 < cut < n:
        return None

    def part(sl: slice) -> Batch:
        return replace(batch, items=batch.items[sl], init=batch.init[sl] if batch.init is not None else None)
    return part(slice(0, cut)), part(slice(cut, n))


def _joined(parts: list[BatchResult]) -> BatchResult:
    """The results of a batch that ran as parts, in order."""
    return BatchResult([r for p in parts for r in p.results], sum(p.seconds for p in parts), parts[0].device,
                       sum(p.load_seconds for p in parts), next((p.error for p in parts if p.error), None))
