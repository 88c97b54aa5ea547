"""Fan jobs out over a pool of Ray actors and survive lost workers; the one dispatch loop that atlas and
inverse-set runs share.

Each actor keeps `QUEUE_DEPTH` jobs queued so it never waits on the driver; `on_result` runs on the driver
as each job finishes (it writes the outputs), while the actors compute the next ones.

Lost workers: Ray restarts a dead actor (`max_restarts=-1`) wherever resources allow, but does not retry
the calls it had (`max_task_retries=0`). The loop puts those jobs back at the front of the queue, where
the live actors take them at once instead of waiting for the restart, and sends the restarting actor a
`ping`; when that returns, the actor gets work again. `on_result` runs exactly once per job, so retries can
never duplicate an output. An exception raised inside a job (a bug, not a lost worker) stops the loop.
An actor whose constructor raised is never restarted; when every actor is gone that way, the run stops with
the constructor's error, as the one-line UserInputError it was when it was one (a worker that built other
weights than the driver planned with, a model file only the driver can read).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import ray
from ray.exceptions import RayError, RayTaskError

from models.errors import DeviceError, StorageError, UserInputError

__all__ = ["dispatch", "ACTOR_OPTIONS", "QUEUE_DEPTH", "Inline", "creation_error", "user_error", "call", "START_S"]

ACTOR_OPTIONS = {"max_restarts": -1, "max_task_retries": 0}
QUEUE_DEPTH = 2  # jobs queued per actor
START_S = 900.0  # the longest an actor may take from placement to its first ping (runtime env, model load)
_POLL_S = 5.0  # how often the loop looks for new actors and overdue ones while it waits


class Inline:
    """An actor that lives in this process, with a Ray actor handle's calling convention: `handle.m.remote(*a)`
    runs `m` at once and returns its value wrapped as a finished call. `dispatch` over Inline actors runs the
    jobs one after another, without Ray; an exception in a job is raised where it happened."""

    def __init__(self, obj: Any):
        self.obj = obj

    def __getattr__(self, name: str) -> "_InlineMethod":
        return _InlineMethod(getattr(self.obj, name))


@dataclass(frozen=True)
class _Finished:
    value: Any


@dataclass(frozen=True)
class _InlineMethod:
    method: Callable

    def remote(self, *args, **kwargs) -> _Finished:
        return _Finished(self.method(*args, **kwargs))


def call(actor: Any, method: str, *args) -> Any:
    """`actor.method(*args)`'s value, for a Ray actor handle or an Inline actor alike (one call, waited for)."""
    ref = getattr(actor, method).remote(*args)
    return ref.value if isinstance(ref, _Finished) else ray.get(ref)


def dispatch(actors: Sequence[Any], jobs: Sequence[Any], submit: Callable[[Any, Any], Any],
             on_result: Callable[[Any, Any], None], log: Callable[[str], None] = print, *,
             grow: Callable[[], list] | None = None, start_s: float = START_S) -> None:
    """Run every job on some actor: `submit(actor, job)` returns an ObjectRef; `on_result(job, value)`.
    Over Inline actors, each job runs in this process as it is submitted.

    `grow` (pipelines/cluster.Pool.grow): called every few seconds, returns actors started since (GPUs that
    joined); each gets work once its `ping` answers. Every wait is bounded: an actor that is restarting or
    starting and has not answered within `start_s` seconds is given up, and when no actor is left the run
    stops with one line instead of waiting for resources that never come."""
    if actors and all(isinstance(a, Inline) for a in actors):
        for job in jobs:
            on_result(job, submit(actors[0], job).value)
        return
    actors = list(actors)
    queue = deque(jobs)
    inflight: dict = {}  # ObjectRef -> (actor index, job)
    probes: dict = {}  # ObjectRef -> actor index, for actors being restarted or started
    since: dict = {}  # ObjectRef of a probe -> when it was sent
    load = [0] * len(actors)
    healthy = set(range(len(actors)))
    last_error: Exception | None = None

    def probe(ai: int) -> None:
        ref = actors[ai].ping.remote()
        probes[ref], since[ref] = ai, time.monotonic()

    def fill(ai: int) -> None:
        while ai in healthy and load[ai] < QUEUE_DEPTH and queue:
            job = queue.popleft()
            inflight[submit(actors[ai], job)] = (ai, job)
            load[ai] += 1

    for ai in range(len(actors)):
        fill(ai)
    while inflight or (queue and probes):
        ready, _ = ray.wait(list(inflight) + list(probes), num_returns=1, timeout=_POLL_S)
        if grow is not None and queue:
            for actor in grow():
                actors.append(actor)
                load.append(0)
                probe(len(actors) - 1)
                log(f"actor {len(actors) - 1} starting on a GPU that joined")
        if not ready:
            for ref in [r for r, t in since.items() if time.monotonic() - t > start_s]:
                ai = probes.pop(ref)
                del since[ref]
                log(f"actor {ai} did not answer within {start_s:g} s; continuing with {len(healthy)} actors")
            continue
        ref = ready[0]
        if ref in probes:
            ai = probes.pop(ref)
            since.pop(ref, None)
            try:
                ray.get(ref)
            except RayError as e:
                last_error = e
                log(f"actor {ai} could not be restarted; continuing with {len(healthy)} actors")
                continue
            healthy.add(ai)
            log(f"actor {ai} is back")
            fill(ai)
            continue
        ai, job = inflight.pop(ref)
        load[ai] -= 1
        try:
            value = ray.get(ref)
        except RayTaskError:
            raise  # a bug in the job: stop with its traceback
        except RayError as e:  # the actor or its node died
            last_error = e
            queue.appendleft(job)
            why = creation_error(e)
            if ai in healthy:
                healthy.discard(ai)
                log(f"actor {ai} could not start ({why}); its jobs go to the other actors" if why else
                    f"actor {ai} lost ({type(e).__name__}); its jobs go to the other actors")
            if load[ai] == 0 and ai not in probes.values() and not why:  # a failed constructor never restarts
                probe(ai)
            for other in sorted(healthy):
                fill(other)
            continue
        on_result(job, value)
        fill(ai)
    if queue:
        why = creation_error(last_error)
        if why is not None and user_error(why) is not None:
            raise user_error(why)
        raise RuntimeError(f"{len(queue)} jobs left but every actor is gone; last error: {last_error}")


def user_error(why: str) -> UserInputError | None:
    """The typed one-line error for a constructor failure 'Type: message' that was one (a DeviceError, a
    StorageError, a UserInputError), else None (a bug, which keeps its traceback)."""
    kind, _, message = why.partition(": ")
    for error in (DeviceError, StorageError, UserInputError):
        if kind == error.__name__:
            return error(message)
    return None


def creation_error(e: Exception | None) -> str | None:
    """'Type: message' of the exception an actor's constructor raised (the last line of the traceback Ray
    reports), or None when `e` is not such a failure."""
    if not getattr(e, "actor_init_failed", False):
        return None
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if not lines:
        return "unknown error"
    kind, sep, message = lines[-1].partition(": ")
    return f"{kind.rsplit('.', 1)[-1]}{sep}{message}"  # models.errors.UserInputError -> UserInputError
