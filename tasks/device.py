"""The device an actor computes on, and the loud failure when it cannot use the GPU it was given.

Every actor (tasks/actor.SynthesisActor, pipelines/topk/worker.ImageWorker) starts as a `DeviceActor`: it
opens its device first. `pick_device("cuda")` where torch cannot use CUDA (a CPU-only build, no NVIDIA driver,
a driver too old for this build) raises `DeviceError` naming the build, the driver's complaint and the fix,
instead of computing on the CPU; a usable GPU gets the settings every actor runs with (`configure_cuda`).
"""

from __future__ import annotations

import os

import torch

from models.errors import DeviceError
from models.host_memory import keep_freed_memory

__all__ = ["pick_device", "cuda_problem", "configure_cuda", "DeviceActor"]


def pick_device(requested: str | None = None) -> torch.device:
    """The device an actor computes on: `requested`, else CUDA when torch can use it, else the CPU. A CUDA
    device that torch cannot use raises DeviceError (cuda_problem): an actor that was given a GPU never
    computes on its CPU instead. A usable CUDA device gets the GPU settings (configure_cuda)."""
    if not requested:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        problem = cuda_problem()
        if problem is not None:
            raise DeviceError(f"this worker{_given_gpus()} cannot use CUDA: {problem}; torch "
                              f"{torch.__version__} needs an NVIDIA driver for CUDA {torch.version.cuda} or newer "
                              "(cluster.yaml names such an image; 'neuron-atlas doctor' checks every node), or run "
                              "on CPUs with --device cpu")
        configure_cuda()
    return device


def cuda_problem() -> str | None:
    """Why torch cannot use CUDA here, in one line (None: it can): a CPU-only build, no driver or one too old
    for this build (torch's own message), or no visible device."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    try:
        torch.cuda.init()
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError or AssertionError, with the reason
        return (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
    if torch.cuda.device_count() == 0:
        return f"no CUDA device is visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
    return None


def _given_gpus() -> str:
    """' (given GPU 0 by Ray)' inside a Ray worker that holds GPUs, else ''."""
    try:
        import ray

        ids = ray.get_gpu_ids() if ray.is_initialized() else []
    except Exception:  # noqa: BLE001 - only decoration of the message
        ids = []
    return f" (given GPU {', '.join(map(str, ids))} by Ray)" if ids else ""


def configure_cuda(tf32: bool = True) -> None:
    """GPU settings every actor uses: TF32 matmuls and convolutions unless `tf32` is False (--precision fp32;
    activation maximization does not need fp32's last bits) and cuDNN's autotuner (a run repeats the same
    shapes for hundreds of steps)."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


class DeviceActor:
    """What every actor starts with: its threads and its device (pick_device). A device it cannot use is kept
    and raised by `ping`, the first call the driver makes (pipelines/cluster.start_pool), so the run stops with
    that one line, not with a constructor traceback forwarded from every worker's log; `usable` tells the
    subclass's constructor to load nothing."""

    device: torch.device
    _unusable: Exception | None = None

    def open_device(self, device: str | None, threads: int | None) -> bool:
        """Set threads and `self.device`; False when the device cannot be used (see the class docstring)."""
        if threads:
            torch.set_num_threads(threads)
        try:
            self.device = pick_device(device)
        except DeviceError as e:
            self._unusable, self.device = e, torch.device("cpu")
            return False
        if self.device.type == "cpu":
            keep_freed_memory()  # every step reallocates the same tensors: no page faults (models/host_memory.py)
        return True

    @property
    def usable(self) -> bool:
        """Whether the device opened (False: the constructor loaded nothing and `ping` raises why)."""
        return self._unusable is None

    def ping(self) -> str:
        """The actor's device; the driver's first call, and how it learns that a restarted actor is back."""
        if self._unusable is not None:
            raise self._unusable
        return str(self.device)
