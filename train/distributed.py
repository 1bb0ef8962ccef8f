"""One way into distributed training for every launcher: torchrun, SLURM ``srun``, or none.

:func:`init_distributed` reads the launcher's environment, picks the backend (NCCL on CUDA, gloo
on CPU, or what ``--dist-backend`` says), sets this process's GPU and joins the process group.
Without any launcher variables the run is single-process and nothing is initialised.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Under ``srun`` (one task
per GPU) SLURM sets SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID and SLURM_JOB_NODELIST; the master
is the first host of the node list and the port comes from MASTER_PORT or the job id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType

import torch
import torch.distributed as dist

from stopsign.train.devices import DistContext

BACKENDS = ("nccl", "gloo")
FIRST_ERROR_KEY = "stopsign/first_error"
STOPPED_KEY = "stopsign/stopped_on_error"
# How long rank 0, which hosts the store, keeps it up after its own error so that the other
# ranks can read whose error came first before they stop too.
STORE_LINGER_S = 3.0
RENDEZVOUS_TIMEOUT = timedelta(minutes=10)
AGREED_EXIT_TIMEOUT = timedelta(hours=2)


class DistributedError(RuntimeError):
    """The launcher's environment is inconsistent, or ranks disagree; the message names what."""


class Terminated(Exception):
    """SIGTERM arrived (scancel, preemption, torchrun stopping its workers); ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass(frozen=True)
class LaunchInfo:
    """What the launcher told this process. ``launcher`` is "torchrun" or "slurm"."""

    launcher: str
    rank: int
    local_rank: int
    world_size: int
    master_addr: str
    master_port: int


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compact host list (``node[01-03,07],gpu5``) -> host names, in order."""
    hosts: list[str] = []
    for match in re.finditer(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist):
        prefix, ranges = match.group(1), match.group(2)
        if ranges is None:
            hosts.append(prefix)
            continue
        for part in ranges.split(","):
            low, _, high = part.partition("-")
            if not high:
                hosts.append(prefix + low)
                continue
            width = len(low)
            hosts += [f"{prefix}{i:0{width}d}" for i in range(int(low), int(high) + 1)]
    return hosts


def first_host(nodelist: str) -> str:
    """The first host of a node list, asking ``scontrol show hostnames`` where it exists."""
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(
                ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=10
            )
            if out.returncode == 0 and out.stdout.split():
                return out.stdout.split()[0]
        except (OSError, subprocess.SubprocessError):
            pass  # fall back to our own parser below
    hosts = expand_nodelist(nodelist)
    if not hosts:
        raise DistributedError(f"SLURM_JOB_NODELIST={nodelist!r} names no host")
    return hosts[0]


def _int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise DistributedError(f"{key}={env[key]!r} is not an integer") from None


def detect_launch(env: Mapping[str, str]) -> LaunchInfo | None:
    """The launch described by ``env`` (torchrun first, then SLURM), or None for a single process."""
    if "RANK" in env and "WORLD_SIZE" in env:
        for key in ("MASTER_ADDR", "MASTER_PORT"):
            if key not in env:
                raise DistributedError(f"RANK and WORLD_SIZE are set but {key} is not (launch with torchrun)")
        info = LaunchInfo("torchrun", _int(env, "RANK"), _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
                          _int(env, "WORLD_SIZE"), env["MASTER_ADDR"], _int(env, "MASTER_PORT"))  # fmt: skip
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        ntasks = _int(env, "SLURM_NTASKS")
        if ntasks <= 1:
            return None  # a one-task job step is a plain single-process run
        if "SLURM_JOB_NODELIST" not in env and "MASTER_ADDR" not in env:
            raise DistributedError("SLURM_JOB_NODELIST is not set: cannot find the master host")
        addr = env.get("MASTER_ADDR") or first_host(env["SLURM_JOB_NODELIST"])
        if "MASTER_PORT" in env:
            port = _int(env, "MASTER_PORT")
        elif "SLURM_JOB_ID" in env:
            port = 20000 + _int(env, "SLURM_JOB_ID") % 20000  # per job: jobs sharing a node do not collide
        else:
            port = 29500
        info = LaunchInfo("slurm", _int(env, "SLURM_PROCID"), _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0,
                          ntasks, addr, port)  # fmt: skip
    else:
        return None
    if info.world_size < 1 or not 0 <= info.rank < info.world_size:
        raise DistributedError(f"{info.launcher}: rank {info.rank} is outside world size {info.world_size}")
    return info


def choose_backend(requested: str, cuda: bool) -> str:
    """NCCL for CUDA, gloo for CPU, unless asked otherwise (NCCL cannot run without CUDA)."""
    if not requested:
        return "nccl" if cuda else "gloo"
    if requested not in BACKENDS:
        raise DistributedError(f"--dist-backend {requested!r}: expected one of {BACKENDS}")
    if requested == "nccl" and not cuda:
        raise DistributedError("--dist-backend nccl needs CUDA; use gloo on CPU")
    return requested


def init_distributed(
    backend: str = "", use_cuda: bool | None = None, env: Mapping[str, str] | None = None
) -> DistContext:
    """Join the process group described by the environment; single process when there is none."""
    env = os.environ if env is None else env
    info = detect_launch(env)
    if info is None or info.world_size == 1:
        return DistContext()
    cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
    chosen = choose_backend(backend, cuda)
    if cuda:
        torch.cuda.set_device(info.local_rank % max(torch.cuda.device_count(), 1))
    store = None
    if not dist.is_initialized():
        # Our own store (what init_method="tcp://" would build) so that it stays reachable for
        # the first-error handshake after the process group itself has failed.
        store = dist.TCPStore(
            info.master_addr,
            info.master_port,
            info.world_size,
            is_master=info.rank == 0,
            timeout=RENDEZVOUS_TIMEOUT,
        )
        dist.init_process_group(chosen, store=store, rank=info.rank, world_size=info.world_size)
    return DistContext(rank=info.rank, local_rank=info.local_rank, world_size=info.world_size, store=store)


def shutdown(agreed: bool = True) -> bool:
    """Leave the process group (safe to call when none exists); True when there was one to leave.

    ``agreed``: every rank is leaving here together (the run finished): wait for all at a barrier,
    then destroy the group, so that no rank tears its connections down while a peer still uses
    them. Otherwise (an error or a signal on this rank) there is nothing to agree on: the peers
    may be dead or blocked in a collective, so no collective is attempted and the group is left
    as it is, for the process exit to drop (see :func:`exit_now`).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return False
    if agreed:
        # Rank 0 may still be running the final validation the others skip: wait as long as that
        # can take. gloo's monitored barrier takes its own timeout; NCCL's uses the group's.
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=AGREED_EXIT_TIMEOUT)
        else:
            dist.barrier()
        dist.destroy_process_group()
    return True


def claim_first_error(ctx: DistContext, message: str) -> str | None:
    """Record ``message`` as the run's first error unless another rank's came first.

    Returns None when this rank's error is the first (this rank should print it), else the
    first error's text (this rank's own error is a consequence, e.g. a peer's broken connection).
    Also None when the store cannot be reached (rank 0 gone): then every rank prints its own.
    """
    if ctx.world_size == 1 or ctx.store is None:
        return None
    mine = f"rank {ctx.rank}: {message}"
    try:
        first = ctx.store.compare_set(FIRST_ERROR_KEY, "", mine).decode()
    except (RuntimeError, OSError, dist.DistError):
        return None
    return None if first == mine else first


def linger_for_peers(ctx: DistContext, timeout_s: float = STORE_LINGER_S) -> None:
    """After this rank's error: count it as stopped; rank 0, which hosts the store, keeps it up
    until every rank has stopped or ``timeout_s`` passed, so their :func:`claim_first_error`
    still reaches it. A peer blocked in a collective stops only once rank 0 is gone: the wait
    is capped for that case."""
    if ctx.world_size == 1 or ctx.store is None:
        return
    try:
        stopped = ctx.store.add(STOPPED_KEY, 1)
        deadline = time.monotonic() + timeout_s
        while ctx.is_main and stopped < ctx.world_size and time.monotonic() < deadline:
            time.sleep(0.05)
            stopped = ctx.store.add(STOPPED_KEY, 0)
    except (RuntimeError, OSError, dist.DistError):
        return  # the store is gone: nothing to wait for


def exit_now(code: int) -> None:
    """End a distributed rank at once: flush what was printed, then ``os._exit``.

    A normal interpreter exit runs torch's C++ destructors, and a gloo process group whose
    connections are being torn down by a peer at that moment can abort the process ("terminate
    called without an active exception", exit 134), which loses the exit code and anything
    still buffered. Every file the run writes is closed before this is called.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stream loses nothing more
            stream.flush()
    logging.shutdown()
    os._exit(code)


@contextmanager
def process_group_session(report: Callable[[str], None] = print) -> Iterator[None]:
    """A block that always leaves the process group: on normal exit, on error, on Ctrl-C or SIGTERM.

    Inside it the first SIGINT raises KeyboardInterrupt and the first SIGTERM :class:`Terminated`.
    Python's default for SIGTERM (scancel, preemption, torchrun stopping its workers) is to die at
    once, skipping ``finally`` blocks: the group would never be destroyed and a checkpoint write
    could be cut. Later signals are ignored until the group is left, so a second one cannot cut
    the shutdown short (torchrun and srun follow up with SIGKILL after their grace period). A rank
    blocked inside a collective on a dead peer sees the signal only when the collective returns
    or fails. ``report`` gets one line when an exception made this rank leave the group.

    A normal exit leaves the group together with the other ranks (barrier, then destroy); an
    exception or a signal leaves without any collective (:func:`shutdown` with agreed=False).
    """
    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in watched}

    def ignore() -> None:
        for signum in watched:
            signal.signal(signum, signal.SIG_IGN)

    def handler(signum: int, _frame: FrameType | None) -> None:
        ignore()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    for signum in watched:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        stopping = sys.exc_info()[0]
        ignore()
        try:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else None
            if shutdown(agreed=stopping is None) and stopping is not None:
                report(f"rank {rank}: left the process group ({stopping.__name__})")
        finally:
            for signum, handler_before in previous.items():
                signal.signal(signum, handler_before)


def check_same_everywhere(ctx: DistContext, what: str, fingerprint: str) -> None:
    """Every rank must hold the same ``fingerprint`` (config + data); a clear error otherwise."""
    if ctx.world_size == 1:
        return
    gathered: list[str | None] = [None] * ctx.world_size
    dist.all_gather_object(gathered, fingerprint)
    differing = [rank for rank, value in enumerate(gathered) if value != gathered[0]]
    if differing:
        raise DistributedError(
            f"ranks {differing} disagree with rank 0 on {what}: every rank must use the same"
        )


def gather_to_main(ctx: DistContext, items: list) -> list:
    """Concatenate every rank's list on all ranks (rank order)."""
    if ctx.world_size == 1:
        return items
    gathered: list[list | None] = [None] * ctx.world_size
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in (part or [])]


def broadcast_from_main(ctx: DistContext, value: object) -> object:
    """Rank 0's ``value`` on every rank (e.g. the run folder it chose)."""
    if ctx.world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.world_size > 1:
        dist.barrier()
