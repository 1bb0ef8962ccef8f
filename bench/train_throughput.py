"""Training throughput: images/s of forward + loss + backward + optimizer step + EMA update.

    python bench/train_throughput.py                       # yolov5n and custom_yolov5s, 416 px, batch 16
    python bench/train_throughput.py --models yolov5n --iters 5 --devices cpu

Random images with a few boxes each; CUDA runs use AMP as training does. Prints one line per
(model, device) and a JSON summary at the end.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from stopsign.train.config import Hyp
from stopsign.train.ema import ModelEMA
from stopsign.train.loss import YoloLoss
from stopsign.train.model import build_model
from stopsign.train.optim import build_optimizer


def random_targets(batch: int, per_image: int, generator: torch.Generator) -> torch.Tensor:
    n = batch * per_image
    targets = torch.zeros(n, 6)
    targets[:, 0] = torch.arange(batch).repeat_interleave(per_image).float()
    targets[:, 2:4] = torch.rand(n, 2, generator=generator) * 0.8 + 0.1
    targets[:, 4:6] = torch.rand(n, 2, generator=generator) * 0.15 + 0.02
    return targets


def measure(cfg: str, device: torch.device, img: int, batch: int, warmup: int, iters: int) -> dict:
    torch.manual_seed(0)
    model = build_model(cfg, 1).to(device).train()
    hyp = Hyp()
    loss_fn = YoloLoss.for_model(model, hyp, img)
    optimizer = build_optimizer(model, "SGD", hyp, hyp.weight_decay)
    ema = ModelEMA(model)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, img, img, generator=generator).to(device)
    targets = random_targets(batch, 3, generator).to(device)

    def step() -> None:
        with torch.autocast(device.type, enabled=amp):
            loss, _ = loss_fn(model(images), targets)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        ema.update(model)  # every step, as edge-train does by default

    for _ in range(warmup):
        step()
    if amp:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if amp:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "model": cfg,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "img": img,
        "batch": batch,
        "amp": amp,
        "iters": iters,
        "s_per_iter": seconds / iters,
        "images_per_s": batch * iters / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["yolov5n", "custom_yolov5s"])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when present")
    parser.add_argument("--img", type=int, default=416)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args(argv)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    results = []
    for name in devices:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            print(f"skip {name}: CUDA not available")
            continue
        for cfg in args.models:
            r = measure(cfg, device, args.img, args.batch, args.warmup, args.iters)
            results.append(r)
            print(
                f"{cfg:>16} {r['device']:>6} ({r['device_name']}, amp={r['amp']}): "
                f"{r['images_per_s']:8.1f} images/s, {r['s_per_iter'] * 1000:8.1f} ms/iter "
                f"(img {args.img}, batch {args.batch})",
                flush=True,
            )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
