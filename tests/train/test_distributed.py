"""Distributed training: launcher detection, and DDP with 2 gloo ranks equal to one process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file, save_file

from stopsign.train.config import config_from_dict
from stopsign.train.devices import DistContext
from stopsign.train.distributed import (
    DistributedError,
    LaunchInfo,
    choose_backend,
    detect_launch,
    expand_nodelist,
    init_distributed,
    shutdown,
)
from stopsign.train.trainer import Trainer


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"},
         LaunchInfo("torchrun", 1, 1, 2, "10.0.0.1", 29500)),
        ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "gpu[07-08]",
          "SLURM_JOB_ID": "123456"}, LaunchInfo("slurm", 3, 1, 4, "gpu07", 20000 + 123456 % 20000)),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "a,b", "MASTER_PORT": "4000"},
         LaunchInfo("slurm", 0, 0, 2, "a", 4000)),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NODELIST": "a"}, None),  # one task: single process
        # torchrun wins over an enclosing SLURM allocation (torchrun inside sbatch).
        ({"RANK": "0", "WORLD_SIZE": "8", "MASTER_ADDR": "h", "MASTER_PORT": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "2",
          "SLURM_JOB_NODELIST": "x"}, LaunchInfo("torchrun", 0, 0, 8, "h", 1)),
    ],
)  # fmt: skip
def test_detect_launch(env: dict[str, str], expected: LaunchInfo | None, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # our node-list parser, not scontrol
    assert detect_launch(env) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RANK": "0", "WORLD_SIZE": "2"}, "MASTER_ADDR"),
        ({"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "outside world size"),
        ({"RANK": "x", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "not an integer"),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, "SLURM_JOB_NODELIST"),
    ],
)
def test_bad_launch_environments(env: dict[str, str], message: str) -> None:
    with pytest.raises(DistributedError, match=message):
        detect_launch(env)


@pytest.mark.parametrize(
    ("nodelist", "hosts"),
    [
        ("node1", ["node1"]),
        ("node[01-03,07]", ["node01", "node02", "node03", "node07"]),
        ("a[1-2],b5,c[9]", ["a1", "a2", "b5", "c9"]),
    ],
)
def test_expand_nodelist(nodelist: str, hosts: list[str]) -> None:
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize(
    ("requested", "cuda", "expected"), [("", True, "nccl"), ("", False, "gloo"), ("gloo", True, "gloo")]
)
def test_choose_backend(requested: str, cuda: bool, expected: str) -> None:
    assert choose_backend(requested, cuda) == expected


def test_nccl_on_cpu_is_refused() -> None:
    with pytest.raises(DistributedError, match="needs CUDA"):
        choose_backend("nccl", cuda=False)


def test_single_process_without_launcher() -> None:
    assert init_distributed(env={}) == DistContext()


# --- DDP equivalence ---------------------------------------------------------------------------

GLOBAL_BATCH = 4


def _dataset(root: Path, n: int = 8) -> Path:
    """Same box in every image (so each image contributes equally to the loss), varied texture."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    names = []
    for i in range(n):
        image = rng.integers(40, 200, (64, 64, 3), dtype=np.uint8)
        cv2.rectangle(image, (20, 18), (44, 46), (30, 30, 220), -1)
        cv2.imwrite(str(root / "images" / f"i{i}.png"), image)
        (root / "labels" / f"i{i}.txt").write_text("0 0.5 0.5 0.375 0.4375\n")
        names.append(f"images/i{i}.png")
    (root / "all.txt").write_text("\n".join(names) + "\n")
    doc = {"path": ".", "train": "all.txt", "val": "all.txt", "nc": 1, "names": ["stop_sign"]}
    (root / "data.yaml").write_text(yaml.safe_dump(doc))
    return root / "data.yaml"


def _config(data: Path, project: Path):
    no_augment = {k: 0.0 for k in ("hsv_h", "hsv_s", "hsv_v", "translate", "scale", "mosaic")}
    return config_from_dict({
        "data": {"data": str(data), "img": 64, "workers": 0, "check": False},
        "model": {"cfg": "yolov5n"},
        "schedule": {"epochs": 1, "batch": GLOBAL_BATCH, "nbs": GLOBAL_BATCH, "ema": False},
        "runtime": {"device": "cpu", "seed": 0, "freeze_bn": True},
        "output": {"project": str(project), "name": "run", "exist_ok": True},
        "hyp": {"warmup_epochs": 0.0, **no_augment},
    })  # fmt: skip


def _worker(rank: int, world: int, port: int, data: str, project: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    ctx = init_distributed("gloo", use_cuda=False)
    try:
        trainer = Trainer(_config(Path(data), Path(project)), None, ctx)
        trainer.run()
        save_file(
            {k: v.contiguous() for k, v in trainer.model.state_dict().items()},
            f"{out}/rank{rank}.safetensors",
        )
    finally:
        shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "data")
    torch.set_num_threads(1)
    single = Trainer(_config(data, tmp_path / "single"), None, DistContext())
    single.run()
    reference = {k: v.clone() for k, v in single.model.state_dict().items()}
    initial = Trainer(_config(data, tmp_path / "init"), None, DistContext())
    initial._setup()
    mp.spawn(
        _worker, args=(2, _free_port(), str(data), str(tmp_path / "ddp"), str(tmp_path)), nprocs=2, join=True
    )
    rank0, rank1 = (
        load_file(str(tmp_path / "rank0.safetensors")),
        load_file(str(tmp_path / "rank1.safetensors")),
    )
    moved = 0
    for key, value in reference.items():
        if not value.is_floating_point():
            continue
        assert torch.equal(rank0[key], rank1[key]), f"ranks differ on {key}"
        assert torch.allclose(rank0[key], value, atol=1e-5, rtol=1e-4), (
            f"DDP differs from one process on {key}"
        )
        moved += int(not torch.equal(value, initial.model.state_dict()[key]))
    assert moved > 50  # the optimizer really stepped (the comparison is not between untouched weights)
    assert (tmp_path / "ddp" / "run" / "weights" / "last" / "spec.json").is_file()


def _disagreeing_worker(rank: int, port: int, out: str) -> None:
    from stopsign.train.distributed import check_same_everywhere

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    ctx = init_distributed("gloo", use_cuda=False)
    try:
        check_same_everywhere(ctx, "the configuration", "seed=0" if rank == 0 else "seed=1")
    except DistributedError as exc:
        Path(out, f"rank{rank}.err").write_text(str(exc))
    finally:
        shutdown()


def test_ranks_that_disagree_stop_with_a_clear_error(tmp_path: Path) -> None:
    mp.spawn(_disagreeing_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        assert (
            "ranks [1] disagree with rank 0 on the configuration"
            in (tmp_path / f"rank{rank}.err").read_text()
        )
