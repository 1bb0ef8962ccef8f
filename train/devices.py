"""Device choice, seeding, and the process-group context that DDP (issue 5) fills in."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


class DeviceError(ValueError):
    """A ``--device`` value that cannot be used here."""


@dataclass(frozen=True)
class DevicePlan:
    """``device`` for this process; ``ids`` all CUDA ids named (several = distributed training)."""

    device: torch.device
    ids: tuple[int, ...] = field(default=())

    @property
    def distributed(self) -> bool:
        return len(self.ids) > 1


def resolve_device(text: str) -> DevicePlan:
    """'' (CUDA 0 when present, else CPU), 'cpu', 'cuda', 'cuda:N', 'N' or 'N,M,...'."""
    text = (text or "").strip().lower()
    if text == "":
        return (
            DevicePlan(torch.device("cuda:0"), (0,))
            if torch.cuda.is_available()
            else DevicePlan(torch.device("cpu"))
        )
    if text == "cpu":
        return DevicePlan(torch.device("cpu"))
    if text == "cuda":
        text = "0"
    text = text.removeprefix("cuda:")
    try:
        ids = tuple(int(part) for part in text.split(",") if part.strip() != "")
    except ValueError:
        raise DeviceError(f"--device {text!r}: expected cpu, cuda, cuda:N or GPU ids like 0 or 0,1") from None
    if not ids:
        raise DeviceError(f"--device {text!r}: no GPU id given")
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {text}: CUDA is not available on this machine (use --device cpu)")
    count = torch.cuda.device_count()
    bad = [i for i in ids if not 0 <= i < count]
    if bad:
        raise DeviceError(f"--device {text}: GPU id(s) {bad} not present ({count} visible)")
    return DevicePlan(torch.device(f"cuda:{ids[0]}"), ids)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly distributed) run. Single process: rank 0 of 1.

    DDP hook (issue 5): the distributed launcher's init creates this with the real rank and world
    size; the trainer already shards data by it and lets only ``is_main`` write anything.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    # The rendezvous key-value store the process group was built on (a torch TCPStore); it
    # outlives a failing collective, so ranks can agree on whose error came first.
    store: Any = field(default=None, compare=False, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, numpy and torch; with ``deterministic`` also force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace for deterministic matmuls; set before the first CUDA call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        # Training shapes are fixed (square input, fixed batch): let cuDNN time its kernels once.
        torch.backends.cudnn.benchmark = True
