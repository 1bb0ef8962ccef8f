"""``edge-data mine`` and ``edge-data mine-merge``: the arguments and the commands.

edge-data mine drive_a/ drive_b/ clip.mp4 photos/ --budget 300 --out task/
edge-data mine SOURCES... --shard 3/16 --out shards/3      # one job of an array
edge-data mine-merge shards/* --budget 300 --out task/     # global budget + dedup
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stopsign.train.data.layout import DatasetError


def add_mine_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mine", help="frames worth labelling from drives, videos, image folders, pre-labelled")
    p.add_argument(
        "sources", nargs="+", help="any edge-detect --source: drive folders, videos, image folders"
    )
    p.add_argument("--out", required=True, type=Path, help="task folder (with --shard: the shard's folder)")
    p.add_argument("--budget", type=int, default=300, help="frames to choose (default 300)")
    p.add_argument("--shard", help="I/N: scan only this shard's sources and write candidates (no task)")
    p.add_argument("--model", type=Path, help="model file (default: the shipped model)")
    p.add_argument(
        "--backend", default="auto", choices=["auto", "onnxruntime", "openvino", "tensorrt", "torch"]
    )
    p.add_argument("--threads", type=int, default=0, help="CPU threads of the backend (0: one per core)")
    p.add_argument("--compare-model", type=Path, help="second model (e.g. the INT8 one) for disagreement")
    p.add_argument("--compare-backend", default="auto")
    p.add_argument("--tiles", default="auto", help="as edge-detect --tiles (default auto)")
    p.add_argument("--threshold", type=float, help="operating threshold (default: the model's)")
    p.add_argument("--band", type=float, default=0.2, help="uncertainty half-width around it (default 0.2)")
    p.add_argument("--conf", type=float, default=0.05, help="lowest score kept from the model (default 0.05)")
    _add_diversity(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_mine)

    p = sub.add_parser(
        "mine-merge", help="merge mine shards: global budget, deduplication, the labelling task"
    )
    p.add_argument("shards", nargs="+", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--budget", type=int, default=300)
    _add_diversity(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_merge)


def _add_diversity(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dedup-bits", type=int, default=6, help="same drive: hash bits that still duplicate (6)")
    p.add_argument("--dedup-window", type=float, default=1.0, help="same drive: within these seconds (1.0)")
    p.add_argument("--dedup-cross-bits", type=int, default=2, help="different drives: hash bits (2)")


def _diversity(args: argparse.Namespace):
    from stopsign.train.data.mine.diversity import DiversityConfig

    if args.dedup_bits < 0 or args.dedup_window < 0 or args.dedup_cross_bits < 0:
        raise DatasetError("--dedup-bits, --dedup-window and --dedup-cross-bits must be >= 0")
    return DiversityConfig(args.dedup_bits, args.dedup_window, args.dedup_cross_bits)


def _load(model: Path | None, backend: str, threads: int):
    from stopsign.edge.backends.base import BackendError
    from stopsign.edge.cli.detect import SHIPPED_MODEL
    from stopsign.edge.replay.runner import load_backend
    from stopsign.train.data.mine.scan import ModelRun

    path = model or SHIPPED_MODEL
    try:
        instance, spec = load_backend(Path(path), backend, threads)
    except (BackendError, OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot load the model: {exc}") from None
    return ModelRun(instance, spec)


def cmd_mine(args: argparse.Namespace) -> int:
    from stopsign.edge.sources.base import SourceError
    from stopsign.edge.sources.uri import SourceURIError, parse_source_uri
    from stopsign.edge.vision.tiles import TileConfig, TileConfigError
    from stopsign.train.data.mine.pipeline import (
        MineConfig,
        merge_shards,
        mine_shard,
        parse_shard,
        shard_sources,
    )
    from stopsign.train.data.mine.signals import SignalConfig

    try:
        for source in args.sources:
            parse_source_uri(source)
        tiles = TileConfig.parse(args.tiles)
    except (SourceURIError, TileConfigError) as exc:
        raise DatasetError(str(exc)) from None
    index, count = parse_shard(args.shard) if args.shard else (0, 1)
    main = _load(args.model, args.backend, args.threads)
    second = _load(args.compare_model, args.compare_backend, args.threads) if args.compare_model else None
    threshold = args.threshold if args.threshold is not None else main.spec.operating_threshold
    signals = SignalConfig(threshold=threshold, band=args.band, proposal_threshold=0.8 * threshold)
    config = MineConfig(tiles=tiles, signals=signals, conf=args.conf)
    sources = shard_sources(args.sources, index, count)
    shard_dir = args.out if args.shard else args.out / "shards" / "0"
    try:
        candidates = mine_shard(sources, shard_dir, main, config, second, not args.no_progress)
    except SourceError as exc:
        raise DatasetError(f"source: {exc}") from None
    print(f"shard {index}/{count}: {len(sources)} sources, {len(candidates)} candidates -> {shard_dir}")
    if args.shard:
        return 0
    chosen = merge_shards(
        [shard_dir],
        args.out,
        args.budget,
        progress=not args.no_progress,
        model_version=Path(args.model or "stopsign.onnx").name,
    )
    print((args.out / "summary.md").read_text())
    print(
        f"{len(chosen)} frames -> {args.out} (cvat_coco_1.0.zip, label_studio/tasks.json, contact_sheet.png)"
    )
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from stopsign.train.data.mine.pipeline import merge_shards

    chosen = merge_shards(args.shards, args.out, args.budget, _diversity(args), progress=not args.no_progress)
    print((args.out / "summary.md").read_text())
    print(f"{len(chosen)} frames -> {args.out}", file=sys.stderr)
    return 0
