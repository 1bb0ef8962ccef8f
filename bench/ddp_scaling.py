"""Single-process versus DDP training throughput: time per epoch, images/s, speed-up, efficiency.

    python bench/ddp_scaling.py --data DATA --img 320 --batch 16 --worlds 1 2 [--device cpu|cuda]
    python bench/ddp_scaling.py --synthetic 256 --img 320 --device cuda      # 1..all GPUs, made-up data

Each world size trains one epoch of the same data with the same global batch; the time covers the
whole epoch (first step, DDP's bucket set-up and the data loader included; not validation).
CPU runs use gloo with --threads torch threads per rank; CUDA runs put one rank on each GPU
(GPU ids 0..world-1) with NCCL. ``--synthetic N`` trains on N generated 640x480 images (a red box
on noise) instead of --data, for machines without the data. Prints a Markdown table and writes
JSON with --out.
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

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from stopsign.train.config import config_from_dict
from stopsign.train.dataset import load_data_spec
from stopsign.train.devices import DistContext
from stopsign.train.distributed import init_distributed, shutdown
from stopsign.train.trainer import Trainer


def synthetic_dataset(root: Path, n: int) -> Path:
    """``n`` 640x480 noise images with one red box each, as a YOLO dataset; returns its data.yaml."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    names = []
    for i in range(n):
        image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        w, h = rng.integers(40, 200, 2)
        x, y = rng.integers(0, 640 - w), rng.integers(0, 480 - h)
        cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), (30, 30, 220), -1)
        cv2.imwrite(str(root / "images" / f"{i:05d}.jpg"), image)
        (root / "labels" / f"{i:05d}.txt").write_text(
            f"0 {(x + w / 2) / 640:.6f} {(y + h / 2) / 480:.6f} {w / 640:.6f} {h / 480:.6f}\n"
        )
        names.append(f"images/{i:05d}.jpg")
    (root / "train.txt").write_text("\n".join(names) + "\n")
    doc = {"path": ".", "train": "train.txt", "val": "train.txt", "nc": 1, "names": ["stop_sign"]}
    (root / "data.yaml").write_text(yaml.safe_dump(doc))
    return root / "data.yaml"


def _device(args: argparse.Namespace, world: int) -> str:
    """cpu, or GPU ids 0..world-1 (one rank per GPU)."""
    if args.device == "cpu":
        return "cpu"
    return ",".join(str(i) for i in range(world))


def _config(args: argparse.Namespace, project: str, world: int):
    return config_from_dict({
        "data": {"data": args.data, "img": args.img, "workers": args.workers, "cache": "ram", "check": False},
        "model": {"cfg": args.cfg},
        "schedule": {"epochs": 1, "batch": args.batch},
        "runtime": {"device": _device(args, world), "seed": 0, "dist_backend": args.dist_backend},
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
        seconds = _epoch_seconds(Trainer(_config(args, out, world), None, ctx), ctx)
        if ctx.is_main:
            Path(out, "seconds.json").write_text(json.dumps(seconds))
    finally:
        shutdown()


def measure(world: int, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory() as out:
        if world == 1:
            torch.set_num_threads(args.threads)
            return _epoch_seconds(Trainer(_config(args, out, 1), None, DistContext()), DistContext())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_worker, args=(world, port, args, out), nprocs=world, join=True)
        return float(json.loads(Path(out, "seconds.json").read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="data.yaml or dataset folder (or --synthetic)")
    parser.add_argument("--synthetic", type=int, default=0, help="train on N generated images instead")
    parser.add_argument("--cfg", default="yolov5n")
    parser.add_argument("--img", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16, help="global batch")
    parser.add_argument("--worlds", type=int, nargs="+", help="default: 1 2 on CPU, 1..GPU count on CUDA")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dist-backend", default="", help="'' = nccl on CUDA, gloo on CPU")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    if not args.worlds:
        args.worlds = list(range(1, torch.cuda.device_count() + 1)) if args.device == "cuda" else [1, 2]
    if args.device == "cuda" and max(args.worlds) > torch.cuda.device_count():
        parser.error(
            f"--worlds {args.worlds}: only {torch.cuda.device_count()} GPU(s) here (one rank per GPU)"
        )
    with tempfile.TemporaryDirectory() as scratch:
        if args.synthetic:
            args.data = str(synthetic_dataset(Path(scratch) / "synthetic", args.synthetic))
        elif not args.data:
            parser.error("give --data or --synthetic N")
        run(args)


def run(args: argparse.Namespace) -> None:
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
    gpu = f" ({torch.cuda.get_device_name(0)})" if args.device == "cuda" else ""
    print(f"{args.cfg} {args.img}px, global batch {args.batch}, {images} images, device {args.device}{gpu}, "
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
