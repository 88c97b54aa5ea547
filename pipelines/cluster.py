"""Where a run's actors live: the Ray address, the device, and a pool of actors that grows as GPUs join.

Every command that starts actors (atlas, snapshots, video, inverse, topk, nearest, plan, doctor) goes
through `start_pool`, so these rules hold everywhere:

- **Address.** `--address` unset: the cluster named by `RAY_ADDRESS` (set by `ray job submit`, and by the
  shipped cluster.yaml on its head) when it answers, else `local`. `local` is this machine only, and the
  start-up line says so.
- **Device.** `--device cpu` runs CPU actors anywhere. `auto` (the default) on this machine uses its GPUs
  when torch sees them, else its CPUs, as before. On a cluster that was joined, `auto` and `cuda` mean GPU
  actors: when no node has a GPU yet, the driver asks the autoscaler for them
  (`ray.autoscaler.sdk.request_resources`) and waits at most `--wait-gpus` seconds, saying so; when none
  joins, the run stops with one line (exit 2) instead of running on CPUs nobody asked for.
- **Layout.** GPU actors take `--gpus-per-actor` GPUs each, and are started only where a node can host
  them: `--actors` beyond the GPUs present starts what fits now and adds the rest as GPUs join
  (`Pool.grow`, called by `dispatch`), and a `--gpus-per-actor` larger than every node's GPUs is one line,
  never a hang.
- **Loud failures.** A GPU actor whose torch cannot use CUDA loads nothing and raises `DeviceError` from its
  first `ping` (tasks/device.DeviceActor); the pool waits for every first actor's `ping` (bounded) before any
  work, so such a run stops with that one line, exit 2, having written nothing.
"""

from __future__ import annotations

import atexit
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import ray
import torch

from models.errors import UserInputError

from .dispatch import ACTOR_OPTIONS, START_S, Inline

__all__ = ["Placement", "Pool", "start_pool", "init_ray", "resolve_address", "runs_inline", "DEVICES",
           "placement_of", "is_local", "expected_device"]

REPO_ROOT = Path(__file__).resolve().parents[1]
# outputs and environments: never shipped to a cluster
_SHIP_EXCLUDES = [".git", ".venv", "atlas-out", "**/__pycache__", "*.egg-info", ".pytest_cache", "docs",
                  ".bench-deps", "snapshots-demo", "video-demo-out", "dgn-demo-out", "every-neuron-out", "build"]
DEVICES = ("auto", "cpu", "cuda")
_POLL_S = 2.0  # how often a wait for GPUs looks at the cluster


@dataclass(frozen=True)
class Placement:
    """Where a command's actors run: `--address` (None: `resolve_address`), `--actors` (None: one per GPU,
    else 1), `--gpus-per-actor`, `--device` (auto, cpu, cuda) and `--wait-gpus` (seconds a joined cluster
    may take to bring its first GPUs)."""

    address: str | None = None
    actors: int | None = None
    gpus_per_actor: float = 1.0
    device: str = "auto"
    wait_gpus: float = 600.0

    def __post_init__(self):
        if self.device not in DEVICES:
            raise UserInputError(f"--device {self.device!r}: use one of {', '.join(DEVICES)}")
        if self.actors is not None and self.actors < 1:
            raise UserInputError(f"--actors {self.actors} must be at least 1")
        if self.device != "cpu" and not self.gpus_per_actor > 0:
            raise UserInputError(f"--gpus-per-actor {self.gpus_per_actor:g} must be more than 0 (a fraction "
                                 "shares a GPU); run on CPUs with --device cpu")
        if self.wait_gpus < 0:
            raise UserInputError(f"--wait-gpus {self.wait_gpus:g} must be 0 or more seconds")


def placement_of(args) -> Placement:
    """The Placement that parsed execution flags ask for (pipelines/argtypes.add_execution_flags)."""
    return Placement(address=args.address, actors=args.actors, gpus_per_actor=args.gpus_per_actor,
                     device=args.device, wait_gpus=args.wait_gpus)


def resolve_address(address: str | None, log: Callable[[str], None] = print) -> str:
    """`address` as given, or for None: `RAY_ADDRESS` when a cluster answers there, else `local`."""
    if address:
        return address
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if not env:
        return "local"
    if _answers(env):
        return env
    log(f"RAY_ADDRESS={env} does not answer; running on this machine only (--address local)")
    return "local"


def _answers(address: str, timeout: float = 2.0) -> bool:
    """Whether something listens at a Ray address (host:port, ray://host:port, or auto: the last `ray start`
    on this machine)."""
    if address == "auto":
        from ray._private.services import find_bootstrap_address

        found = find_bootstrap_address(None)
        return bool(found) and _answers(found, timeout)
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def expected_device(placement: Placement, log: Callable[[str], None] = print) -> str:
    """The device type ("cuda", "cpu") the actors of `placement` would get, without starting one (what `plan
    --no-calibrate` sizes batches for): --device as given; auto: cuda on a joined cluster or where torch sees
    a GPU, as `start_pool` decides."""
    if placement.device != "auto":
        return placement.device
    joined = not is_local(resolve_address(placement.address, log))
    return "cuda" if joined or torch.cuda.is_available() else "cpu"


def is_local(address: str) -> bool:
    return address in ("", "local", "local-ray", "inline")


def runs_inline(address: str | None, actors: int | None, device: str = "auto") -> bool:
    """Whether a run's one actor lives in the driver's process, without Ray: `--address inline`, or `local` when
    the run would start one actor anyway (`--actors` unset or 1, at most one GPU, or `--device cpu`). A local
    Ray instance costs several seconds to start and stop and adds nothing for one actor on one machine (a dead
    worker there is a dead machine); `local-ray` starts one regardless."""
    if address == "inline":
        return True
    one_gpu = device == "cpu" or torch.cuda.device_count() <= 1
    return address in ("", "local", None) and (actors or 1) == 1 and one_gpu


def _loopback_only() -> None:
    """Make every process of a local Ray instance resolve 'this node' to 127.0.0.1, so nothing listens on
    or talks to the machine's network address (Ray's agents are started with this environment)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def init_ray(address: str | None) -> None:
    """`local` or `local-ray`: a Ray instance on this machine. Otherwise join `address` (auto, host:port,
    ray://...) and ship this repository as the job's working_dir, so workers run the driver's code."""
    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, logging_level="ERROR", log_to_driver=True)
    if is_local(address or "local"):
        _loopback_only()
        # address="local": a new instance always. Without it Ray joins whatever RAY_ADDRESS or
        # /tmp/ray/ray_current_cluster names, and a cluster that died without cleaning up makes it hang.
        ray.init(address="local", _node_ip_address="127.0.0.1", **kwargs)
        return
    try:
        ray.init(address=address, runtime_env={"working_dir": str(REPO_ROOT), "excludes": _SHIP_EXCLUDES},
                 **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserInputError(f"cannot join the Ray cluster at --address {address!r} ({first}); start one "
                             "with 'ray start --head' or 'ray up cluster.yaml', or use --address local") from e


@dataclass
class Pool:
    """Started actors (Ray handles, or one `Inline`) and, for GPU actors, how to start more as GPUs join.

    `device`: what the actors compute on ("cpu", "cuda"); `where`: the start-up line's text."""

    actors: list
    device: str
    where: str
    _start: Callable[[], Any] | None = None  # starts one more actor (GPU pools)
    _want: int | None = None  # GPU pools: --actors (None: as many as the GPUs allow)
    _gpus_per_actor: float = 1.0
    _next_look: float = field(default=0.0)

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def stop(self) -> None:
        """End the actors now (not when their handles are collected), so that a command run next in the same
        process (the demo runs several) gets the CPUs and GPUs at once; an Inline actor ends with this pool."""
        for actor in self.actors:
            if not isinstance(actor, Inline):
                ray.kill(actor)

    def grow(self) -> list:
        """New actors for GPUs that joined since the last look (at most every few seconds), up to --actors;
        the caller waits for their `ping` before giving them work."""
        if self._start is None or time.monotonic() < self._next_look:
            return []
        self._next_look = time.monotonic() + 10.0
        fit = _gpu_slots(self._gpus_per_actor)[0]
        target = fit if self._want is None else min(self._want, fit)
        new = [self._start() for _ in range(max(0, target - len(self.actors)))]
        self.actors += new
        if self._want is not None and len(self.actors) >= self._want:
            _ask_autoscaler([])  # every actor placed: the standing request is not needed any more
        return new


def start_pool(cls: type, args: tuple, kwargs: dict, placement: Placement, log: Callable[[str], None] = print
               ) -> Pool:
    """Start `cls(*args, **kwargs, device=..., threads=...)` actors where `placement` says (module docstring);
    returns when every first actor answered its `ping`. Raises UserInputError (exit 2) for a layout no node can
    host, no GPU within --wait-gpus, or an actor that failed to start (its constructor's one line)."""
    address = resolve_address(placement.address, log)
    if runs_inline(address, placement.actors, placement.device):
        actor = cls(*args, **kwargs, device=None if placement.device == "auto" else placement.device)
        pool = Pool([Inline(actor)], actor.ping(), f"this machine only, in this process (--address {address})")
        log(f"actors: 1 on {pool.device}, {pool.where}")
        return pool
    init_ray(address)
    local = is_local(address)
    where = "this machine only (--address local)" if local else f"the Ray cluster at {address}"
    gpus = ray.cluster_resources().get("GPU", 0)
    if placement.device == "cpu" or (placement.device == "auto" and local and not gpus):
        pool = _cpu_pool(cls, args, kwargs, placement, where)
    else:
        pool = _gpu_pool(cls, args, kwargs, placement, where, local, log)
    _await_first_pings(pool.actors, START_S)
    log(f"actors: {len(pool.actors)} on {pool.device}, {pool.where}")
    return pool


def _cpu_pool(cls, args, kwargs, placement: Placement, where: str) -> Pool:
    """`--actors` (default 1) CPU actors sharing the cluster's CPUs, each on as many threads as one node holds at
    most (an actor asking for more CPUs than any node has would never start)."""
    cpus = int(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
    largest = int(max((n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0))
    if largest < 1:
        raise UserInputError(f"no node of {where} has a CPU for an actor (a head started with --num-cpus 0 takes "
                             "none): add worker nodes")
    n = placement.actors or 1
    threads = max(1, min(cpus // n, largest))
    remote = ray.remote(cls).options(num_cpus=threads, **ACTOR_OPTIONS)
    return Pool([remote.remote(*args, **kwargs, device="cpu", threads=threads) for _ in range(n)], "cpu", where)


def _gpu_pool(cls, args, kwargs, placement: Placement, where: str, local: bool, log) -> Pool:
    gpa = placement.gpus_per_actor
    fit, largest = _gpu_slots(gpa)
    if largest and not fit:
        raise UserInputError(f"--gpus-per-actor {gpa:g} fits no node of {where}: the largest has {largest:g} "
                             f"GPU{'s' if largest != 1 else ''}; use --gpus-per-actor {largest:g} or less")
    if not fit:
        if local:
            raise UserInputError("--device cuda but this machine has no GPU that Ray or torch can see; run on "
                                 "CPUs with --device cpu")
        fit = _wait_for_gpus(placement, where, log)
    remote = ray.remote(cls).options(num_gpus=gpa, num_cpus=1, **ACTOR_OPTIONS)

    def start() -> Any:
        return remote.remote(*args, **kwargs, device="cuda", threads=None)

    want = placement.actors
    n = fit if want is None else min(want, fit)
    if want is not None and want > fit:
        _ask_autoscaler([{"GPU": gpa}] * want)
        log(f"--actors {want}: {n} fit the GPUs present; the rest start as GPUs join")
    return Pool([start() for _ in range(n)], "cuda", where, start, want, gpa)


def _gpu_slots(gpus_per_actor: float) -> tuple[int, float]:
    """(actors of `gpus_per_actor` GPUs that the alive nodes can host, the most GPUs on one node)."""
    fit, largest = 0, 0.0
    for node in ray.nodes():
        if node.get("Alive"):
            g = float(node.get("Resources", {}).get("GPU", 0))
            largest = max(largest, g)
            fit += int(g / gpus_per_actor + 1e-9)
    return fit, largest


def _wait_for_gpus(placement: Placement, where: str, log) -> int:
    """Ask the autoscaler for the run's GPUs and wait for the first to join (at most --wait-gpus s); returns
    how many actors fit then."""
    gpa, bound = placement.gpus_per_actor, placement.wait_gpus
    _ask_autoscaler([{"GPU": gpa}] * (placement.actors or 1))
    log(f"no GPU in {where} yet: asked its autoscaler for {placement.actors or 1} x {gpa:g} GPU and waiting up "
        f"to {bound:g} s (--wait-gpus; --device cpu runs on CPUs)")
    deadline = time.monotonic() + bound
    while True:
        fit, largest = _gpu_slots(gpa)
        if fit:
            return fit
        if time.monotonic() >= deadline:
            break
        time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
    _ask_autoscaler([])
    have = f"its largest node has {largest:g} GPUs" if largest else "it has no GPU"
    raise UserInputError(f"no GPU for an actor joined {where} within {bound:g} s ({have}): add GPU nodes (cluster.yaml's "
                         "gpu worker type), raise --wait-gpus, or run on CPUs with --device cpu")


_asked = [False]


def _ask_autoscaler(bundles: list[dict]) -> None:
    """Set (or, with [], clear) this driver's standing request to the autoscaler; cleared at exit, so a finished
    or failed run never keeps GPU nodes up. A cluster without an autoscaler ignores it."""
    from ray.autoscaler.sdk import request_resources

    if not bundles and not _asked[0]:
        return
    try:
        request_resources(bundles=bundles)
    except Exception as e:  # noqa: BLE001 - a hint to the autoscaler; the bounded wait decides
        print(f"note: could not ask the autoscaler for GPUs ({type(e).__name__}: {e})")
        return
    if bundles and not _asked[0]:
        atexit.register(_ask_autoscaler, [])
    _asked[0] = bool(bundles)


def _await_first_pings(actors: list, bound: float) -> None:
    """Wait (at most `bound` s) until every actor answered `ping`; an actor whose device or constructor failed
    stops the run with its one line (a DeviceError, a UserInputError), before any work is sent."""
    refs = {a.ping.remote(): a for a in actors}
    deadline = time.monotonic() + bound
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            raise UserInputError(f"{len(refs)} of {len(actors)} actors did not start within {bound:g} s (the "
                                 "cluster's GPUs may be held by another job); see 'ray status'")
        refs.pop(ready[0])
        try:
            ray.get(ready[0])
        except ray.exceptions.RayError as e:
            # this error stops the run and is reported once; the other actors' copies of it are not news
            os.environ["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"
            raise _start_failure(e) from None


def _start_failure(e: Exception) -> Exception:
    """An actor's failed first ping as its one-line error where it was one (a DeviceError its ping raised, a
    UserInputError or StorageError its constructor raised), else `e` itself."""
    from .dispatch import creation_error, user_error

    cause = getattr(e, "cause", None)  # a RayTaskError: what the ping raised
    if isinstance(cause, UserInputError):
        return type(cause)(str(cause))
    why = creation_error(e)
    return (user_error(why) or UserInputError(f"an actor could not start: {why}")) if why else e
