"""Single-process versus DDP training throughput: time per epoch, images/s, speed-up, efficiency.

    python bench/ddp_scaling.py --data DATA --img 320 --batch 16 --worlds 1 2 [--device cpu|cuda]

Each world size trains one epoch (after one warm-up step) of the same data with the same global
batch. CPU runs use gloo, one thread per rank; CUDA runs put one rank per GPU with NCCL (2 ranks
on one GPU need --dist-backend gloo: NCCL refuses two ranks on one device). Prints a Markdown table
and writes JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from stopsign.train.config import config_from_dict
from stopsign.train.devices import DistContext
from stopsign.train.distributed import init_distributed, shutdown
from stopsign.train.trainer import Trainer


def _config(args: argparse.Namespace, project: str):
    return config_from_dict({
        "data": {"data": args.data, "img": args.img, "workers": args.workers, "cache": "ram", "check": False},
        "model": {"cfg": args.cfg},
        "schedule": {"epochs": 1, "batch": args.batch},
        "runtime": {"device": args.device, "seed": 0, "dist_backend": args.dist_backend},
        "output": {"project": project, "name": "bench", "exist_ok": True},
    })  # fmt: skip


def _epoch_seconds(trainer: Trainer, ctx: DistContext) -> float:
    trainer._setup()
    if ctx.world_size > 1:
        dist.barrier()
    start = time.perf_counter()
    trainer._train_epoch(0, warmup_iters=0)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    if ctx.world_size > 1:
        dist.barrier()
    return time.perf_counter() - start


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(args.threads)
    ctx = init_distributed(args.dist_backend, use_cuda=args.device != "cpu")
    try:
        seconds = _epoch_seconds(Trainer(_config(args, out), None, ctx), ctx)
        if ctx.is_main:
            Path(out, "seconds.json").write_text(json.dumps(seconds))
    finally:
        shutdown()


def measure(world: int, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory() as out:
        if world == 1:
            torch.set_num_threads(args.threads)
            return _epoch_seconds(Trainer(_config(args, out), None, DistContext()), DistContext())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_worker, args=(world, port, args, out), nprocs=world, join=True)
        return float(json.loads(Path(out, "seconds.json").read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True)
    parser.add_argument("--cfg", default="yolov5n")
    parser.add_argument("--img", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16, help="global batch")
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dist-backend", default="", help="'' = nccl on CUDA, gloo on CPU")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from stopsign.train.dataset import load_data_spec

    images = len(load_data_spec(args.data, check=False).train)
    rows = []
    for world in args.worlds:
        seconds = measure(world, args)
        rows.append(
            {"world_size": world, "epoch_s": round(seconds, 2), "images_per_s": round(images / seconds, 2)}
        )
    base = rows[0]["images_per_s"]
    for row in rows:
        row["speedup"] = round(row["images_per_s"] / base, 3)
        row["efficiency"] = round(row["speedup"] / (row["world_size"] / rows[0]["world_size"]), 3)
    print(f"{args.cfg} {args.img}px, global batch {args.batch}, {images} images, device {args.device}, "
          f"{args.threads} thread(s)/rank, {os.cpu_count()} cores ({platform.processor() or platform.machine()})")  # fmt: skip
    print("| world size | epoch (s) | images/s | speed-up | efficiency |\n|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['world_size']} | {row['epoch_s']} | {row['images_per_s']} | {row['speedup']} | {row['efficiency']:.0%} |"
        )
    if args.out:
        args.out.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
