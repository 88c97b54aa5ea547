"""Host-device synchronization checks without an accelerator: the `meta` device stands in for the GPU.

`HostSyncGuard` runs a piece of torch code for real on `meta` tensors (shapes and dtypes, no data) and records
every operation that would make a CUDA host wait for its device or copy host data to it:
- a copy of a CPU tensor to the device (`.to(device)`, `copy_`, `torch.tensor(data, device=...)`,
  `x.new_tensor(data)`, `torch.as_tensor`), and any op that mixes device tensors with a CPU tensor that is
  not 0-dim (0-dim CPU tensors are passed to CUDA kernels as scalars, without a copy);
- a scalar read-back (`.item()`, `float(t)`, `int(t)`, `bool(t)`, `.tolist()`: `aten._local_scalar_dense`) and
  a copy from the device to the CPU (`.cpu()`, `.numpy()` after it);
- an op whose output shape depends on the data (`nonzero`, boolean-mask indexing, `bincount`, `unique`,
  `masked_select`, `repeat_interleave` without an output size...), which reads back on CUDA.

Nothing is recorded until the guard is armed: setup and the first optimization step may copy. `progress`
(a drop-in for `tasks.loop.optimize`'s callback) arms the guard once step 0 is done and, when the guard knows
the step count, stops recording device-to-CPU copies after the last step (the loop's final read-back of its
results); CPU-to-device copies and read-backs stay violations until the block ends.

The guard sees what passes torch's dispatcher, not what a CUDA kernel does inside: it is strict where it can
be (every host-to-device copy counts, pinned and non-blocking ones too, since the loop needs none), and
`torch.cuda.set_sync_debug_mode("error")` on a real GPU is its complement.

Meta tensors hold no data, so a copy to the CPU returns zeros of the right shape and dtype and a scalar
read-back returns 0 (armed or not), which lets a loop run to its end on `meta`. A data-dependent op has no
meta result: it is recorded and raises `HostSyncError`, armed or not.

    with HostSyncGuard(steps=4) as guard:
        optimize(param_on_meta, objective, forward, 4, rule, progress=guard.progress)
    assert guard.violations == []
"""

from __future__ import annotations

import traceback
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import torch
import torch.optim.optimizer as _optim  # torch.optim's namespace drops the module's name
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["HostSyncGuard", "HostSyncError", "ACCELERATOR", "foreach_optimizers"]

ACCELERATOR = torch.device("meta")  # the stand-in for a GPU
_REPO = Path(__file__).resolve().parents[1]
_HERE = Path(__file__).resolve()
_aten = torch.ops.aten
_SCALAR_READS = {_aten._local_scalar_dense.default}
_INTO_FIRST = {_aten.copy_.default, _aten.copy.default}  # (destination, source)
_INTO_SECOND = {_aten._copy_from.default, _aten._copy_from_and_resize.default}  # (source, destination)
_COPIES = {_aten._to_copy.default, *_INTO_FIRST, *_INTO_SECOND}
# ops whose output shape or value needs the device's data on the host (their CUDA kernels synchronize)
_DATA_DEPENDENT = {"nonzero", "argwhere", "bincount", "unique", "_unique", "_unique2", "unique_consecutive",
                   "unique_dim", "masked_select", "repeat_interleave", "equal", "is_nonzero"}
_INDEXING = {_aten.index.Tensor, _aten.index_put.default, _aten.index_put_.default,
             _aten._index_put_impl_.default, _aten._unsafe_index.Tensor}
_CONSTRUCTORS = {torch.tensor, torch.as_tensor, torch.asarray, torch.Tensor.new_tensor}


class HostSyncError(RuntimeError):
    """An op that cannot run without reading device data back (it has no result on `meta`)."""


def _where() -> str:
    """The innermost stack frame in this repository outside this file: where the violation comes from."""
    for frame in reversed(traceback.extract_stack()):
        path = Path(frame.filename).resolve()
        if path != _HERE and _REPO in path.parents and ".venv" not in path.parts:
            return f"{path.relative_to(_REPO)}:{frame.lineno} ({frame.line})"
    return "<outside the repository>"


def _tensors(args, kwargs) -> list[torch.Tensor]:
    return [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]


def _on(t: torch.Tensor, device_type: str) -> bool:
    return t.device.type == device_type


class _Constructors(TorchFunctionMode):
    """Sees `torch.tensor(data, device=...)` and its kin, which copy to the device below the dispatcher."""

    def __init__(self, guard: "HostSyncGuard"):
        super().__init__()
        self.guard = guard

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _CONSTRUCTORS and isinstance(out, torch.Tensor) and _on(out, ACCELERATOR.type):
            data = args[1] if func is torch.Tensor.new_tensor else (args[0] if args else kwargs.get("data"))
            if not (isinstance(data, torch.Tensor) and _on(data, ACCELERATOR.type)):
                self.guard._record(f"{func.__name__}(host data) -> {list(out.shape)} on the device")
        return out


class HostSyncGuard(TorchDispatchMode):
    """Records host-device synchronizations on `meta` while armed; see the module docstring.

    `steps`: the loop's step count, so that `progress` knows the last step (None: copies out stay violations).
    `armed`: record from the start (no setup phase). `violations`: one line per event, with where it happened;
    `seen`: how often each op ran while armed (proof that, say, the backward pass ran under the guard).
    """

    def __init__(self, steps: int | None = None, armed: bool = False):
        super().__init__()
        self.steps, self.armed, self.finished = steps, armed, False
        self.violations: list[str] = []
        self.seen: Counter[str] = Counter()
        self._functions = _Constructors(self)

    # -- phases -----------------------------------------------------------------------------------------------
    def progress(self, t: int) -> None:
        """The loop's per-step callback: arm after step 0; after the last step, allow copies to the CPU."""
        self.armed = True
        if self.steps is not None and t >= self.steps - 1:
            self.finished = True

    def arm(self) -> None:
        self.armed = True

    # -- context ----------------------------------------------------------------------------------------------
    def __enter__(self) -> "HostSyncGuard":
        self._functions.__enter__()
        try:
            return super().__enter__()
        except BaseException:
            self._functions.__exit__(None, None, None)
            raise

    def __exit__(self, *exc) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._functions.__exit__(*exc)

    def _record(self, what: str, always: bool = False) -> None:
        if self.armed or always:
            self.violations.append(f"{what} at {_where()}")

    # -- dispatch ---------------------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.name().split("::")[-1]
        if self.armed:
            self.seen[name] += 1
        tensors = _tensors(args, kwargs)
        if func in _SCALAR_READS:
            if _on(args[0], ACCELERATOR.type):
                self._record(f"scalar read-back {name}")
                return _zero(args[0].dtype)
            return func(*args, **kwargs)
        sized = name.startswith("repeat_interleave") and kwargs.get("output_size") is not None
        if name.split(".")[0] in _DATA_DEPENDENT and not sized and any(_on(t, ACCELERATOR.type) for t in tensors):
            self._record(f"data-dependent {name}", always=True)
            raise HostSyncError(f"{name} needs the device's data (a host sync on CUDA) at {_where()}")
        if func in _INDEXING and any(t.dtype in (torch.bool, torch.uint8) for t in _indices(func, args, kwargs)):
            self._record("boolean-mask indexing (nonzero)", always=True)
            raise HostSyncError(f"boolean-mask indexing reads back on CUDA at {_where()}")
        if func in _COPIES:
            return self._copy(func, name, args, kwargs)
        if any(_on(t, ACCELERATOR.type) for t in tensors):
            host = [t for t in tensors if _on(t, "cpu") and t.dim() > 0]
            if host:
                self._record(f"{name} mixes device tensors with a host tensor {list(host[0].shape)}")
                args, kwargs = _to_accelerator(args, kwargs)
        return func(*args, **kwargs)

    def _copy(self, func, name, args, kwargs):
        src = args[1] if func in _INTO_FIRST else args[0]
        if func in _INTO_FIRST or func in _INTO_SECOND:
            dst = args[0] if func in _INTO_FIRST else args[1]
            dst_device = dst.device
        else:
            dst, dst_device = None, torch.device(kwargs.get("device") or src.device)
        if _on(src, "cpu") and dst_device.type == ACCELERATOR.type:
            self._record(f"{name}: host tensor {list(src.shape)} copied to the device")
        elif _on(src, ACCELERATOR.type) and dst_device.type == "cpu":
            if not self.finished:
                self._record(f"{name}: device tensor {list(src.shape)} copied to the host")
            if dst is None:  # `_to_copy`: a new host tensor, zeros since meta has no data
                return torch.zeros(src.shape, dtype=kwargs.get("dtype") or src.dtype, device="cpu")
            return dst.zero_() if func is not _aten.copy.default else torch.zeros_like(dst)
        return func(*args, **kwargs)


def _indices(func, args, kwargs) -> list[torch.Tensor]:
    """The index tensors of an indexing op (a mask among them reads back on CUDA)."""
    indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
    return [t for t in indices if isinstance(t, torch.Tensor)]


@contextmanager
def foreach_optimizers():
    """torch.optim takes its multi-tensor (`foreach`) path for `meta` parameters, the path it takes on CUDA
    by default, instead of the per-tensor one it takes on other devices."""
    supported = _optim._get_foreach_kernels_supported_devices
    with mock.patch.object(_optim, "_get_foreach_kernels_supported_devices",
                           lambda: [*supported(), ACCELERATOR.type]):
        yield


def _to_accelerator(args, kwargs):
    """Host tensors moved to `meta` so that an op recorded as mixing devices can still run."""
    def move(a):
        return a.to(ACCELERATOR) if isinstance(a, torch.Tensor) and _on(a, "cpu") and a.dim() > 0 else a
    return torch.utils._pytree.tree_map(move, (args, kwargs))


def _zero(dtype: torch.dtype):
    if dtype == torch.bool:
        return False
    return 0.0 if dtype.is_floating_point else 0
