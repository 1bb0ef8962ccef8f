"""DDP (two gloo ranks on CPU) trains a Darknet-cfg model exactly as one process does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from stopsign.train.config import config_from_dict
from stopsign.train.devices import DistContext
from stopsign.train.distributed import init_distributed, shutdown
from stopsign.train.trainer import Trainer
from tests.train.test_distributed import GLOBAL_BATCH, _dataset, _free_port

CFG = "yolov4-tiny.cfg"


def _config(data: Path, project: Path):
    no_augment = {k: 0.0 for k in ("hsv_h", "hsv_s", "hsv_v", "translate", "scale", "mosaic")}
    return config_from_dict({
        "data": {"data": str(data), "img": 64, "workers": 0, "check": False},
        "model": {"cfg": CFG},
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
    rank0, rank1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    moved = 0
    for key, value in reference.items():
        if value.is_floating_point():
            assert torch.equal(rank0[key], rank1[key]), f"ranks differ on {key}"
            assert torch.allclose(rank0[key], value, atol=1e-5, rtol=1e-4), f"DDP differs on {key}"
            moved += int(not torch.equal(value, initial.model.state_dict()[key]))
    assert moved > 30  # the optimizer really stepped
    assert (tmp_path / "ddp" / "run" / "weights" / "last" / "model.cfg").is_file()
