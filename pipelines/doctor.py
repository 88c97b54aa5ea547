"""`neuron-atlas doctor`: whether a GPU run can start where `--address` points, checked before work is booked.

It joins the cluster the way every command does (`cluster.resolve_address`, `cluster.init_ray`; `local` starts a
local Ray instance, since the point is to check Ray's placement), then:

- runs one small task pinned to every alive node (`NodeAffinitySchedulingStrategy`, `num_cpus=0` so a head that
  takes no work answers too). A node with GPUs is probed holding all of them (Ray hides a node's GPUs from a task
  that asked for none). Each probe reports the hostname, `nvidia-smi`'s GPU names and driver, torch's version
  and CUDA build, and whether torch can use CUDA there (`tasks.device.cuda_problem`) with the device names;
- starts one actor exactly as a run would (`cluster.start_pool`, same `--device`, `--gpus-per-actor`,
  `--wait-gpus`), a `DeviceActor` that loads no model, and reports its device or the one line its start raised;
- probes the nodes that joined while the actor waited for GPUs.

Every wait is bounded (`PROBE_S` for the probes, `cluster.START_S` for the actor). It prints one table row per
node, the actor's line and a verdict (`--json`: one JSON object instead). Exit status 0: every GPU node can use
CUDA (unless `--device cpu`) and the actor started; else 2, the last line (`neuron-atlas: error: not ready: ...`)
saying what would fail a run and how to fix it.
"""

from __future__ import annotations

import argparse
import gc
import json
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

from models.errors import DeviceError, UserInputError
from tasks.device import DeviceActor, cuda_problem

if TYPE_CHECKING:
    from .cluster import Placement

__all__ = ["add_subcommand", "run", "NodeReport", "ActorReport", "Diagnosis", "diagnose", "probe", "DoctorActor",
           "PROBE_S"]

PROBE_S = 60.0  # the longest all node probes together may take (a fresh worker imports torch)
SMI_S = 10.0  # the longest nvidia-smi may take on a node
_MIN_DRIVER = {"12": 525, "13": 580}  # CUDA major -> the oldest Linux NVIDIA driver branch that runs it
# (NVIDIA's minor-version compatibility table)


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    """Add `doctor` to the CLI's subparsers; returns its parser."""
    p = subparsers.add_parser("doctor", help="check every node of the cluster (driver, torch, CUDA) and start one "
                              "actor as a run would; exit 2 naming what would make a GPU run fail")
    p.add_argument("--address", default=None,
                   help="the Ray cluster: 'auto', host:port or ray://host:port; 'local' starts a local Ray "
                        "instance; default: the cluster RAY_ADDRESS names, else local")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",  # cluster.Placement
                   help="the device the run will ask for: with cpu, GPU nodes whose CUDA is unusable are reported "
                        "but do not fail the check")
    p.add_argument("--gpus-per-actor", type=float, default=1.0, help="GPUs the run's actors will hold each")
    p.add_argument("--wait-gpus", type=float, default=0.0, metavar="SECONDS",
                   help="how long a cluster without GPU nodes may take to bring one (the autoscaler is asked); "
                        "default 0: check what is there now")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    """Diagnose, print the table (or JSON); returns 0 when ready, else raises UserInputError (exit 2) whose one
    line says what would fail a run and the fix."""
    from . import cluster  # Ray is imported by the commands that use it, not by the CLI's parser

    placement = cluster.Placement(address=args.address, actors=1, gpus_per_actor=args.gpus_per_actor,
                                  device=args.device, wait_gpus=args.wait_gpus)  # bad flags: one line, first

    def log(m: str) -> None:
        print(m, file=sys.stderr)

    d = diagnose(placement, log)
    print(json.dumps(d.to_dict(), indent=1) if args.json else d.table())
    if not d.ready:
        raise UserInputError(d.verdict)
    return 0


@dataclass(frozen=True)
class NodeReport:
    """One alive node: Ray's view (`cpu`, `gpu`) and, when its probe answered (`error` None), what it found."""

    node_id: str
    ip: str
    cpu: float
    gpu: float
    error: str | None = None  # the probe did not answer: why
    hostname: str | None = None
    nvidia_smi: list[dict] | None = None  # [{"name", "driver"}] per GPU; None: see smi_error
    smi_error: str | None = None  # "no nvidia-smi", or how it failed
    torch: str | None = None
    torch_cuda: str | None = None  # torch.version.cuda: the CUDA build (None: a CPU-only build)
    cuda_problem: str | None = None  # None: torch can use CUDA with this node's GPUs
    cuda_devices: list[str] = field(default_factory=list)

    @property
    def cuda_ok(self) -> bool:
        return self.error is None and self.cuda_problem is None

    def cuda_text(self) -> str:
        """The CUDA column: usable (with the device names), or the problem (a driver too old said so)."""
        if self.error is not None:
            return self.error
        if self.cuda_problem is None:
            return f"CUDA usable ({', '.join(self.cuda_devices)})"
        if not self.gpu:
            smi = f", though nvidia-smi lists {len(self.nvidia_smi)}" if self.nvidia_smi else ""
            return f"no GPU for Ray{smi}"
        old = _old_driver(self)
        return f"CUDA not usable: {self.cuda_problem}" + (f" (driver {old} < {_min_driver(self.torch_cuda)})"
                                                           if old else "")


@dataclass(frozen=True)
class ActorReport:
    """The one actor started as a run would: its device and node, or the one line its start raised."""

    device: str | None = None
    node_id: str | None = None
    error: str | None = None
    cuda_unusable: bool = False  # the error is the actor's DeviceError: the GPU it was given cannot be used

    def line(self) -> str:
        if self.error is not None:
            return f"actor: could not start: {self.error}"
        return f"actor: started on {self.device} (node {_short(self.node_id or '?')})"


@dataclass(frozen=True)
class Diagnosis:
    """Every node's report, the actor's, and the verdict (`ready`: a run would start; `verdict`: one line)."""

    address: str
    device: str
    nodes: list[NodeReport]
    actor: ActorReport
    ready: bool
    verdict: str

    def to_dict(self) -> dict:
        out = asdict(self)
        for row, node in zip(out["nodes"], self.nodes):
            row["cuda_ok"] = node.cuda_ok
        return out

    def table(self) -> str:
        """One row per node, then the actor's line and the verdict (when ready; else the caller raises it)."""
        head = ("NODE", "CPU", "GPU", "NVIDIA-SMI", "TORCH", "CUDA")
        rows = [head] + [(f"{n.ip} {_short(n.node_id)}", f"{n.cpu:g}", f"{n.gpu:g}", _smi_text(n), _torch_text(n),
                          n.cuda_text()) for n in self.nodes]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
        lines.append(self.actor.line())
        if self.ready:
            lines.append(self.verdict)
        return "\n".join(lines)


class DoctorActor(DeviceActor):
    """An actor that opens its device the way every actor does and loads nothing (`ping` raises its
    DeviceError)."""

    def __init__(self, *, device: str | None = None, threads: int | None = None):
        self.open_device(device, threads)

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


def diagnose(placement: Placement, log: Callable[[str], None] = print) -> Diagnosis:
    """Probe every node, start one actor as `placement` says, probe the nodes that joined meanwhile; see the
    module docstring. Raises UserInputError only when the cluster cannot be joined."""
    from . import cluster

    address = cluster.resolve_address(placement.address, log)
    if address in ("local", "inline"):
        address = "local-ray"  # a run of one actor would skip Ray here; the doctor checks Ray's placement
    cluster.init_ray(address)
    nodes = _probe_nodes(set())
    actor = _start_actor(placement, address, log)
    gc.collect()  # a failed start's actor handles live in its traceback: freed, Ray ends the actor and its GPUs
    nodes += _probe_nodes({n.node_id for n in nodes})
    ready, verdict = _verdict(nodes, actor, placement.device)
    return Diagnosis(address, placement.device, nodes, actor, ready, verdict)


def probe() -> dict:
    """What one node can do (runs inside the probe task, with the node's GPUs visible): hostname, nvidia-smi,
    torch and its CUDA build, torch's CUDA problem (None: usable) and device names."""
    import torch

    smi, smi_error = _nvidia_smi()
    problem = cuda_problem()
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if problem is None else []
    return dict(hostname=socket.gethostname(), nvidia_smi=smi, smi_error=smi_error, torch=torch.__version__,
                torch_cuda=torch.version.cuda, cuda_problem=problem, cuda_devices=names)


def _nvidia_smi() -> tuple[list[dict] | None, str | None]:
    """([{"name", "driver"}] per GPU, None), or (None, why not)."""
    cmd = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=SMI_S, check=False)
    except FileNotFoundError:
        return None, "no nvidia-smi"
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"nvidia-smi failed ({type(e).__name__})"
    if r.returncode != 0:
        first = ((r.stdout + r.stderr).strip().splitlines() or [f"exit status {r.returncode}"])[0]
        return None, f"nvidia-smi failed: {first}"
    gpus = [ln.rsplit(",", 1) for ln in r.stdout.strip().splitlines() if "," in ln]
    return [{"name": name.strip(), "driver": driver.strip()} for name, driver in gpus], None


def _probe_nodes(done: set[str]) -> list[NodeReport]:
    """Probe every alive node not in `done`, all at once; a node whose probe has not answered within PROBE_S is
    reported as such (its probe cancelled)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    alive = [n for n in ray.nodes() if n.get("Alive") and n["NodeID"] not in done]
    task = ray.remote(max_calls=1, max_retries=0)(probe)  # max_calls=1: a fresh process, CUDA not yet set up
    refs = {}
    for n in alive:
        gpus = float(n.get("Resources", {}).get("GPU", 0))
        # every GPU of the node, so that torch sees what a run's actors would
        opts = dict(num_cpus=0, num_gpus=(int(gpus) or gpus) if gpus else 0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
        refs[task.options(**opts).remote()] = n
    _, waiting = ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_S) if refs else ([], [])
    for ref in waiting:
        ray.cancel(ref, force=True)
    reports = [_report(n, ref, ref in waiting) for ref, n in refs.items()]
    return sorted(reports, key=lambda r: (r.gpu > 0, r.ip, r.node_id))


def _report(node: dict, ref: Any, late: bool) -> NodeReport:
    import ray

    res = node.get("Resources", {})
    base = dict(node_id=node["NodeID"], ip=node.get("NodeManagerAddress", "?"), cpu=float(res.get("CPU", 0)),
                gpu=float(res.get("GPU", 0)))
    if late:
        held = " (its GPUs may be held by another job; see 'ray status')" if base["gpu"] else ""
        return NodeReport(**base, error=f"no answer within {PROBE_S:g} s{held}")
    try:
        return NodeReport(**base, **ray.get(ref))
    except ray.exceptions.RayError as e:
        return NodeReport(**base, error=f"probe failed: {(str(e).strip().splitlines() or [type(e).__name__])[-1]}")


def _start_actor(placement: Placement, address: str, log: Callable[[str], None]) -> ActorReport:
    """Start one DoctorActor through `cluster.start_pool`, report where it runs, end it."""
    import ray

    from . import cluster

    try:
        pool = cluster.start_pool(DoctorActor, (), {}, replace(placement, address=address, actors=1), log)
    except UserInputError as e:
        return ActorReport(error=str(e), cuda_unusable=isinstance(e, DeviceError))
    actor = pool.actors[0]
    try:
        device, node = ray.get([actor.ping.remote(), actor.node_id.remote()], timeout=PROBE_S)
    except ray.exceptions.RayError as e:  # it answered start_pool's ping: lost since (a node gone, a timeout)
        return ActorReport(error=f"started, then lost: {(str(e).strip().splitlines() or [type(e).__name__])[-1]}")
    finally:
        pool.stop()  # its GPUs are free again for the probes of nodes that joined
    return ActorReport(device=device, node_id=node)


def _verdict(nodes: list[NodeReport], actor: ActorReport, device: str) -> tuple[bool, str]:
    """(ready, the verdict's one line): what would fail a run, and the fix."""
    problems = []
    gpu_mode = device != "cpu"
    late = [n for n in nodes if n.error is not None and (gpu_mode or not n.gpu)]
    if late:
        problems.append(f"{len(late)} node{'s' if len(late) != 1 else ''} did not answer the probe ({_nodes(late)}: "
                        f"{late[0].error})")
    broken = [n for n in nodes if gpu_mode and n.gpu and n.error is None and n.cuda_problem is not None]
    if broken:
        n, gpu = broken[0], sum(1 for n in nodes if n.gpu)
        least = _min_driver(n.torch_cuda)
        need = (f"NVIDIA driver {least} or newer for CUDA {n.torch_cuda}" if least else
                f"an NVIDIA driver for CUDA {n.torch_cuda} or newer" if n.torch_cuda else "a CUDA build of torch")
        actor_too = ", and the actor could not use its GPU" if actor.cuda_unusable else ""
        problems.append(f"{len(broken)} of {gpu} GPU nodes cannot use CUDA{actor_too}: {_nodes(broken)}: "
                        f"{n.cuda_problem}; torch {n.torch} needs {need}: use an image that has one (cluster.yaml's "
                        "ImageId) or run on CPUs with --device cpu")
    if actor.error is not None and not (broken and actor.cuda_unusable):  # else said just above
        problems.append(f"the actor: {actor.error}")
    if problems:
        return False, "not ready: " + "; ".join(problems)
    gpu = sum(1 for n in nodes if n.gpu)
    usable = sum(1 for n in nodes if n.gpu and n.cuda_ok)
    gpus = f"{usable} of {gpu} GPU nodes can use CUDA" if gpu else "no GPU node"
    gpus += " (not needed: --device cpu)" if device == "cpu" and usable < gpu else ""
    return True, (f"ready: {len(nodes)} node{'s' if len(nodes) != 1 else ''} answered, {gpus}, the actor runs on "
                  f"{actor.device}")


def _nodes(nodes: list[NodeReport]) -> str:
    """The first few nodes, by IP and short id."""
    return ", ".join(f"{n.ip} {_short(n.node_id)}" for n in nodes[:3]) + (" ..." if len(nodes) > 3 else "")


def _short(node_id: str) -> str:
    return node_id[:8]


def _min_driver(torch_cuda: str | None) -> int | None:
    """The oldest driver branch that runs this CUDA build (None: a build this table does not know)."""
    return _MIN_DRIVER.get((torch_cuda or "").split(".")[0])


def _old_driver(n: NodeReport) -> str | None:
    """The node's driver version when it is older than its torch's CUDA build needs, else None."""
    want = _min_driver(n.torch_cuda)
    drivers = [g["driver"] for g in n.nvidia_smi or []]
    try:
        return next((d for d in drivers if want and int(d.split(".")[0]) < want), None)
    except ValueError:
        return None


def _smi_text(n: NodeReport) -> str:
    if n.error is not None:
        return "-"
    if n.nvidia_smi is None:
        return n.smi_error or "no nvidia-smi"
    if not n.nvidia_smi:
        return "no GPU listed"
    first = n.nvidia_smi[0]
    return f"{len(n.nvidia_smi)}x {first['name']}, driver {first['driver']}"


def _torch_text(n: NodeReport) -> str:
    if n.torch is None:
        return "-"
    return f"{n.torch} (CUDA {n.torch_cuda})" if n.torch_cuda else f"{n.torch} (CPU-only)"
