"""`neuron-atlas train-generator`: DeePSiM-style training of a generator prior that inverts a chosen layer
of an encoder (any registry net truncated there), from images at any fsspec URI, an IDX set such as
`fashion-mnist:train`, or the offline photos.

Every image is read once and kept in memory (an IDX set straight from its arrays; other sets through the
bounded storage readers, unreadable images skipped and counted); batches are drawn from memory. Augmentation
(`augment`): `photo` takes random resized crops of each whole picture with flips and colour jitter (a few
hundred photos of any size); `flip` and `none` keep each image as the encoder sees it (its preprocessing's
size, channels and crop), stored once as one uint8 tensor, with or without random horizontal flips (a
dataset of thousands at the net's own framing, such as Fashion-MNIST). Batch indices, augmentation and
synthetic codes are drawn from (seed, step), so a run resumed from its checkpoint continues the same loss
curve it would have drawn without the interruption.

Everything trains on `device` (`--device`: `auto`, the default, is CUDA where torch sees it, else the CPU;
`cpu`, `cuda`, `cuda:N`; pipelines/stats.resolve_device): G, D, the encoder/comparator net, each batch (drawn on
the CPU, then moved), the codes and the code bounds. The per-step losses come back to the host once per step
(tasks/deepsim.DeePSiMTrainer.step returns floats); the progress line is printed every few steps.

Checkpoints (G, D, both optimizers, step, loss history) go to `<out>/checkpoint.pt` every
`--checkpoint-every` steps and at the end, written atomically, every tensor on the CPU (a checkpoint written
on a GPU resumes on a CPU and the other way round); rerunning the same command resumes from it.
At the end `<out>/generator.pt` holds G's state dict (what `atlas --generator-weights` loads),
`<out>/losses.json` the loss history and `<out>/loss_curve.png` a picture of it.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.transforms import v2

from models.capture import Capture, unknown_layer
from models.errors import UserInputError
from models.loading import load_net
from models.registry import resolve_model
from tasks.deepsim import DeePSiMTrainer, LossWeights, box_codes, mixed_codes
from tasks.dgn import fit_to

from .idx import idx_split
from .imagesets import list_image_set, read_images
from .photos import to_model_input
from .spec import read_bounds
from .stats import resolve_device
from .storage import Store

__all__ = ["TrainSpec", "train_generator"]


@dataclass(frozen=True)
class TrainSpec:
    generator: str
    encoder_model: str
    encoder_layer: str
    comparator_layer: str
    images: str
    out: str
    steps: int = 1000
    batch_size: int = 16
    lr: float = 2e-4
    weights: LossWeights = LossWeights()
    encoder_weights: str | None = None
    checkpoint_every: int = 100
    seed: int = 0
    synthetic_codes: int = 0  # extra codes per step drawn inside the bounds, for the code loss
    synthetic_kind: str = "mix"  # "mix": blends of photo codes (mixed_codes); "box": uniform (box_codes)
    bounds: str | None = None  # code upper bounds (stats' bounds.npy); needed by synthetic codes
    augment: str = "photo"  # "photo", "flip" or "none" (module docstring)
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    device: str = "auto"  # auto, cpu, cuda or cuda:N (module docstring)


AUGMENTS = ("photo", "flip", "none")


class _Images:
    """The training images in memory and a batch sampler: `batch(step)` -> [B, C, S, S] in [0, 1]."""

    def __init__(self, spec: TrainSpec, gen_entry, pre, log):
        self.spec, self.size, self.channels = spec, gen_entry.out_size, gen_entry.channels
        split = idx_split(spec.images)
        t0 = time.perf_counter()
        if split is not None and spec.augment != "photo":
            images = torch.from_numpy(split.arrays()[0].copy()).unsqueeze(1)  # [N, 1, H, W] uint8
            images = images.expand(-1, self.channels, -1, -1) if self.channels != 1 else images
            if tuple(images.shape[-2:]) != (self.size, self.size):
                images = (fit_to(images.float(), (self.size, self.size)).round().clamp(0, 255)).to(torch.uint8)
            self.stack, self.pictures = images.contiguous(), None
        else:
            image_set = list_image_set(spec.images, spec.storage_options)
            pictures, failed = read_images([s.uri for s in image_set.sources], spec.storage_options)
            pictures = [p for p in pictures if p is not None]
            if failed:
                log(f"skipped {len(failed)} unreadable images (first: {failed[0][0]}: {failed[0][1]})")
            if not pictures:
                raise UserInputError(f"no readable images under --images {spec.images!r}")
            if spec.augment == "photo":
                self.pictures = [torch.from_numpy(np.array(p)).permute(2, 0, 1) for p in pictures]
                self.stack = None
            else:
                size = (self.size, self.size)
                self.stack = torch.from_numpy(np.stack([
                    (to_model_input(p, size, self.channels, pre.crop) * 255).round().astype(np.uint8)
                    for p in pictures]))
                self.pictures = None
        self.count = len(self.stack) if self.stack is not None else len(self.pictures)
        log(f"read {self.count:,} training images into memory in {time.perf_counter() - t0:.1f} s")
        s = self.size
        self.augment = v2.Compose([v2.RandomResizedCrop(s, scale=(0.2, 1.0), antialias=True),
                                   v2.RandomHorizontalFlip(), v2.ColorJitter(0.3, 0.3, 0.3, 0.05)])

    def batch(self, step: int) -> torch.Tensor:
        spec = self.spec
        rng = np.random.default_rng([spec.seed, step])
        idx = torch.from_numpy(rng.integers(0, self.count, spec.batch_size))
        torch.manual_seed(spec.seed * 1_000_003 + step)  # the augmentation stream of this step
        if self.pictures is not None:
            x = torch.stack([self.augment(self.pictures[i]) for i in idx.tolist()]).float() / 255.0
            luma = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # Rec. 601, as to_model_input
            return (x * luma).sum(1, keepdim=True) if self.channels == 1 else x
        x = self.stack[idx].float() / 255.0
        if spec.augment == "flip":
            flip = torch.from_numpy(rng.random(spec.batch_size) < 0.5).view(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(3), x)
        return x


def _probe(net, pre, code_layer: str, comparator_layer: str):
    """[0, 1] RGB at any size -> (code, comparator features), from one forward pass at the net's input
    size; images are resized the way DGN-AM feeds G's output to the net (fit_to)."""
    size = pre.size
    layers = list(dict.fromkeys([code_layer, comparator_layer]))

    def probe(x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with Capture(net.net, layers, layouts=net.layouts) as cap:
            acts = cap(net.to_input(fit_to(x01, size)))
        return acts[code_layer], acts[comparator_layer]
    return probe


def _loss_curve(history: list[dict], panel: tuple[int, int] = (300, 170), columns: int = 3) -> bytes:
    """One panel per loss: the raw values in a light line, their moving average in a dark one, on a log
    scale labelled with its ends (one plot of six overlaid noisy curves says nothing)."""
    keys = [k for k in ("loss_g", "pixel", "feature", "adversarial", "code", "loss_d") if k in history[0]]
    pw, ph = panel
    pad_l, pad_r, pad_t, pad_b = 44, 8, 18, 18
    rows = -(-len(keys) // columns)
    img = Image.new("RGB", (columns * pw, rows * ph), "white")
    draw = ImageDraw.Draw(img)
    steps = len(history)
    window = max(1, steps // 50)
    for i, key in enumerate(keys):
        x0, y0 = (i % columns) * pw, (i // columns) * ph
        ys = np.log10(np.maximum([r[key] for r in history], 1e-8))
        smooth = np.convolve(ys, np.ones(window) / window, mode="valid")
        lo, hi = float(ys.min()), max(float(ys.max()), float(ys.min()) + 1e-6)

        def pt(j: float, y: float) -> tuple[float, float]:
            return (x0 + pad_l + (pw - pad_l - pad_r) * j / max(steps - 1, 1),
                    y0 + ph - pad_b - (ph - pad_t - pad_b) * (y - lo) / (hi - lo))
        draw.rectangle([x0 + pad_l, y0 + pad_t, x0 + pw - pad_r, y0 + ph - pad_b], outline=(200, 200, 200))
        if steps > 1:
            draw.line([pt(j, y) for j, y in enumerate(ys)], fill=(190, 200, 235), width=1)
            offset = (window - 1) / 2
            draw.line([pt(j + offset, y) for j, y in enumerate(smooth)], fill=(20, 40, 140), width=2)
        draw.text((x0 + pad_l, y0 + 3), f"{key} (log scale, mean of {window})", fill="black")
        draw.text((x0 + 2, y0 + pad_t), f"{10 ** hi:.3g}", fill="gray")
        draw.text((x0 + 2, y0 + ph - pad_b - 10), f"{10 ** lo:.3g}", fill="gray")
        draw.text((x0 + pad_l, y0 + ph - pad_b + 3), "1", fill="gray")
        draw.text((x0 + pw - pad_r - 40, y0 + ph - pad_b + 3), f"{history[-1]['step']}", fill="gray")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def train_generator(spec: TrainSpec, log=print) -> list[dict]:
    """Train (or resume) and write the outputs described in the module docstring; returns the history."""
    if spec.steps < 1 or spec.batch_size < 1 or spec.synthetic_codes < 0:
        raise UserInputError("--steps and --batch-size must be at least 1, --synthetic-codes at least 0")
    if spec.augment not in AUGMENTS:
        raise UserInputError(f"--augment {spec.augment!r}: use one of {', '.join(AUGMENTS)}")
    device = resolve_device(spec.device)
    torch.manual_seed(spec.seed)
    gen_entry = resolve_model(spec.generator)
    if getattr(gen_entry, "kind", None) != "generator":
        raise UserInputError(f"--generator {spec.generator!r} is not a generator")
    enc_entry = resolve_model(spec.encoder_model)
    encoder = load_net(enc_entry, spec.encoder_weights, storage_options=spec.storage_options, device=device)
    for layer in (spec.encoder_layer, spec.comparator_layer):
        if layer not in encoder.layers:
            raise unknown_layer(layer, spec.encoder_model)
    code_dim = int(np.prod(gen_entry.code_shape))
    enc_units = int(np.prod(encoder.layers[spec.encoder_layer].shape))
    if enc_units != code_dim:
        raise UserInputError(f"encoder layer {spec.encoder_layer!r} has {enc_units} units but generator "
                             f"{spec.generator!r} takes {code_dim}-d codes")
    pre = enc_entry.preprocessing
    if gen_entry.channels != pre.channels:
        raise UserInputError(f"generator {spec.generator!r} draws {gen_entry.channels}-channel images but encoder "
                             f"{spec.encoder_model!r} takes {pre.channels}")
    store = Store(spec.out, spec.storage_options)
    store.check_writable()
    images = _Images(spec, gen_entry, pre, log)

    g = gen_entry.build()
    trainer = DeePSiMTrainer(g, gen_entry.to_image01, _probe(encoder, pre, spec.encoder_layer, spec.comparator_layer),
                             code_dim, spec.weights, spec.lr, device=device, channels=gen_entry.channels)
    if spec.synthetic_codes:
        if not spec.bounds:
            raise UserInputError("--synthetic-codes draws codes inside the code bounds; pass --bounds "
                                 "(the bounds.npy that 'neuron-atlas stats' writes)")
        upper, _ = read_bounds(spec.bounds, spec.storage_options)
        if upper.size != code_dim:
            raise UserInputError(f"--bounds {spec.bounds!r} has {upper.size} values; the code has {code_dim}")
        upper_t = torch.from_numpy(upper).to(device)
        # seeded by the step, so a resumed run draws the same codes
        if spec.synthetic_kind not in ("mix", "box"):
            raise UserInputError(f"--synthetic-kind {spec.synthetic_kind!r}: use 'mix' or 'box'")

        def synthetic(n: int, photo_codes: torch.Tensor) -> torch.Tensor:
            rng = torch.Generator().manual_seed(spec.seed * 1_000_003 + trainer.step_count + 7)  # resumable
            if spec.synthetic_kind == "box":
                return box_codes(upper_t, n, rng)
            return mixed_codes(photo_codes, upper_t, n, rng)
        trainer.synthetic = synthetic
        trainer.synthetic_per_step = spec.synthetic_codes
    history: list[dict] = []
    try:
        ckpt = torch.load(io.BytesIO(store.read_bytes("checkpoint.pt")), map_location="cpu", weights_only=True)
        trainer.load_state_dict(ckpt)
        history = json.loads(store.read_bytes("losses.json"))[: trainer.step_count]
        log(f"resuming from step {trainer.step_count} of {spec.steps}")
    except FileNotFoundError:
        pass
    t0, first = time.perf_counter(), trainer.step_count
    every = max(1, min(50, spec.steps // 20))
    while trainer.step_count < spec.steps:
        history.append(trainer.step(images.batch(trainer.step_count).to(device)))
        step = trainer.step_count
        if step % every == 0 or step == spec.steps:
            r = history[-1]
            rate = (step - first) / max(time.perf_counter() - t0, 1e-9)
            log(f"step {step}/{spec.steps} (epoch {step * spec.batch_size / images.count:.2f}): G {r['loss_g']:.4f} "
                f"(pixel {r['pixel']:.4f}, feature {r['feature']:.4f}, adversarial {r['adversarial']:.3f}, code "
                f"{r['code']:.4f}), D {r['loss_d']:.3f}; {rate:.2f} steps/s ({rate * spec.batch_size:.0f} "
                f"images/s), ETA {(spec.steps - step) / rate:.0f} s")
        if step % spec.checkpoint_every == 0 or step == spec.steps:
            _checkpoint(store, trainer, history)
    buf = io.BytesIO()
    torch.save(_on_cpu(trainer.g.state_dict()), buf)
    store.write_bytes("generator.pt", buf.getvalue())
    store.write_bytes("loss_curve.png", _loss_curve(history))
    store.write_bytes("train.json", json.dumps({**{k: v for k, v in asdict(spec).items()
                                                   if k != "storage_options"}, "images_count": images.count},
                                               indent=2, default=str).encode())
    return history


def _on_cpu(state: Any) -> Any:
    """`state` (nested dicts and lists, as state_dict() gives them: their types and a module's `_metadata`
    kept) with every tensor copied to the CPU."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        out = type(state)((k, _on_cpu(v)) for k, v in state.items())
        if hasattr(state, "_metadata"):
            out._metadata = state._metadata
        return out
    if isinstance(state, (list, tuple)):
        return type(state)(_on_cpu(v) for v in state)
    return state


def _checkpoint(store: Store, trainer: DeePSiMTrainer, history: list[dict]) -> None:
    buf = io.BytesIO()
    torch.save(_on_cpu(trainer.state_dict()), buf)
    store.write_bytes("losses.json", json.dumps(history).encode())
    store.write_bytes("checkpoint.pt", buf.getvalue())
