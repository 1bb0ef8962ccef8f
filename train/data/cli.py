"""``edge-data``: import, check, split, synth, far-signs, far-drives, stats, preview, merge, drive-from-stills,
mine and mine-merge."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stopsign.train.data.layout import DatasetError
from stopsign.train.data.mine.cli import add_mine_parser


def _parse_map(items: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in items:
        name, sep, target = item.rpartition("=")
        if not sep or not name:
            raise DatasetError(f"--map expects NAME=stop_sign, got {item!r}")
        mapping[name] = target
    return mapping


def _cmd_import(args: argparse.Namespace) -> int:
    from stopsign.train.data.importer import ImportOptions, import_dataset
    from stopsign.train.data.mine.roundtrip import REVIEW_FORMATS, import_reviewed

    if args.format in REVIEW_FORMATS:  # reviewed labels of an `edge-data mine` task
        if args.task is None:
            raise DatasetError(f"--format {args.format} needs --task, the folder `edge-data mine` wrote")
        counts = import_reviewed(args.format, args.src, args.task, args.out, args.name or "mined")
        print(f"imported {args.src} -> {args.out}: {counts}")
        return 0

    options = ImportOptions(
        fmt=args.format,
        mapping=_parse_map(args.map),
        drop=set(args.drop),
        confusers=set(args.confuser) if args.confuser else None,
        keep_back_faces=args.keep_back_faces,
        source_name=args.name or "",
        licence=args.licence or "",
        val=args.val,
        seed=args.seed,
    )
    summary = import_dataset(args.src, args.out, options)
    print("\n".join(summary.lines()))
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from stopsign.train.data.importer import merge_datasets

    print(f"merged {merge_datasets(args.inputs, args.out)} images into {args.out}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from stopsign.train.data.check import check_dataset, errors, write_fixed_copy

    problems = check_dataset(args.dir)
    for problem in problems:
        print(problem)
    bad = errors(problems)
    print(f"{len(bad)} error(s), {len(problems) - len(bad)} warning(s) in {args.dir}", file=sys.stderr)
    if args.fix:
        kept, dropped = write_fixed_copy(args.dir, args.fix)
        print(f"wrote cleaned copy {args.fix}: kept {kept} images, dropped {dropped}", file=sys.stderr)
    return 1 if bad else 0


def _cmd_split(args: argparse.Namespace) -> int:
    from stopsign.train.data.split import split_dataset

    print("\n".join(split_dataset(args.dir, val=args.val, seed=args.seed).lines()))
    return 0


def _cmd_far_signs(args: argparse.Namespace) -> int:
    from stopsign.train.data.synth.far_signs import generate_far_signs

    counts = generate_far_signs(args.real, args.out, args.part, args.per_frame, args.seed)
    print(f"far-signs ({args.part}): {counts['images']} images, {counts['signs']} signs from "
          f"{counts['frames']} frames -> {args.out}")  # fmt: skip
    return 0


def _cmd_far_drives(args: argparse.Namespace) -> int:
    from stopsign.train.data.far_drives import ApproachOptions, far_drives_from_dataset

    if not (0 < args.end_m < args.start_m) or args.speed_kmh <= 0 or args.fps <= 0:
        raise DatasetError("need 0 < --end-m < --start-m, --speed-kmh > 0 and --fps > 0")
    options = ApproachOptions(args.start_m, args.end_m, args.speed_kmh, args.fps)
    for folder in far_drives_from_dataset(args.real, args.out, args.n, args.seed, options, args.part):
        print(f"wrote {folder}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from stopsign.train.data.synth.generate import SynthOptions, generate_synthetic
    from stopsign.train.data.synth.scene import ALL_CONFUSERS, SIGN_CONFUSERS, SceneConfig

    named = {"all": ALL_CONFUSERS, "signs": SIGN_CONFUSERS}
    kinds = named.get(args.confusers) or tuple(k.strip() for k in args.confusers.split(",") if k.strip())
    options = SynthOptions(
        n=args.n,
        seed=args.seed,
        size=args.size,
        backgrounds=args.backgrounds,
        workers=args.workers,
        val=args.val,
        scene=SceneConfig(confuser_kinds=kinds),
    )
    counts = generate_synthetic(args.out, options)
    print(f"wrote {sum(counts.values())} images to {args.out}: {counts}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from stopsign.train.data.stats import dataset_stats, write_box_histogram

    stats = dataset_stats(args.dir)
    print("\n".join(stats.lines()))
    if args.histogram:
        print(f"box-size histogram: {write_box_histogram(stats, args.histogram)}")
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    from stopsign.train.data.preview import write_preview

    print(write_preview(args.dir, args.out, n=args.n, cols=args.cols, tile=args.tile, seed=args.seed))
    return 0


def _cmd_drives(args: argparse.Namespace) -> int:
    from stopsign.train.data.drives import DriveOptions, drives_from_dataset

    opts = DriveOptions(frames=args.frames, fps=args.fps, width=args.width, height=args.height)
    written = drives_from_dataset(
        args.dataset, args.out, args.approach, args.confuser, args.night, seed=args.seed, opts=opts
    )
    for folder in written:
        print(folder)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import", help="convert a YOLO/VOC/GTSDB/COCO set to the canonical layout")
    p.add_argument(
        "--format", required=True, choices=["yolo", "voc", "gtsdb", "coco", "cvat-coco", "label-studio"]
    )
    p.add_argument("src", type=Path, help="dataset folder, or a reviewed export (cvat-coco, label-studio)")
    p.add_argument("--task", type=Path, help="cvat-coco / label-studio: the task folder of `edge-data mine`")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument(
        "--map", action="append", default=[], metavar="NAME=stop_sign", help="source class -> stop_sign"
    )
    p.add_argument(
        "--drop", action="append", default=[], metavar="NAME", help="source class to remove entirely"
    )
    p.add_argument(
        "--confuser", action="append", default=[], metavar="NAME", help="class that marks a confuser"
    )
    p.add_argument("--keep-back-faces", action="store_true", help="keep grey stop-sign backs as stop boxes")
    p.add_argument("--name", help="source name (default: the folder name)")
    p.add_argument("--licence", help="licence text (default: read from the export)")
    p.add_argument("--val", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("merge", help="merge canonical datasets (keeps their splits)")
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_cmd_merge)

    p = sub.add_parser("check", help="report every problem as file:line; non-zero exit on errors")
    p.add_argument("dir", type=Path)
    p.add_argument("--fix", type=Path, metavar="OUT", help="write a cleaned copy to OUT (never in place)")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("split", help="stratified train/val split without near-duplicate leaks")
    p.add_argument("dir", type=Path)
    p.add_argument("--val", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_split)

    p = sub.add_parser("synth", help="procedural stop signs and confusers")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=416)
    p.add_argument(
        "--backgrounds", type=Path, help="canonical dataset whose non-stop photos serve as backgrounds"
    )
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--val", type=float, default=0.2)
    p.add_argument(
        "--confusers",
        default="all",
        help="confusers to place: 'all' (default: look-alike signs and red street objects), 'signs' "
        "(look-alike signs only, the generator before hydrants, traffic lights, foliage and red boxes) "
        "or a comma-separated list of kinds",
    )
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser(
        "far-signs", help="far stop signs composited into real stop-free car frames (never val.txt's)"
    )
    p.add_argument("real", type=Path, help="canonical data folder with the real frames (e.g. data/real)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument(
        "--part",
        choices=["train", "val"],
        default="train",
        help="train: composites to train on; val: a separate far-sign validation set from other frames",
    )
    p.add_argument("--per-frame", type=int, default=3, help="composites per background frame (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_far_signs)

    p = sub.add_parser(
        "far-drives", help="drives approaching a far sign composited into real car frames (far-val frames)"
    )
    p.add_argument("real", type=Path, help="canonical data folder with the real frames (e.g. data/real)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n", type=int, default=8, help="number of drives (default 8)")
    p.add_argument("--start-m", type=float, default=70.0, help="distance at the first frame (default 70)")
    p.add_argument("--end-m", type=float, default=10.0, help="distance at the last frame (default 10)")
    p.add_argument("--speed-kmh", type=float, default=50.0)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--part",
        choices=["val", "train"],
        default="val",
        help="background frames: val (default; the far-sign validation share) or train (drives to mine "
        "and train on: never the frames of far-signs --part val)",
    )
    p.set_defaults(func=_cmd_far_drives)

    p = sub.add_parser("stats", help="counts per source/role/split, box sizes")
    p.add_argument("dir", type=Path)
    p.add_argument("--histogram", type=Path, metavar="PNG", help="write a box-size histogram")
    p.set_defaults(func=_cmd_stats)

    p = sub.add_parser("preview", help="grid of images with their boxes")
    p.add_argument("dir", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--cols", type=int, default=6)
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_preview)

    p = sub.add_parser("drive-from-stills", help="recorded drives simulated from validation stills")
    p.add_argument("dataset", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--split", choices=["val"], default="val", help="only validation images are ever used")
    p.add_argument("--approach", type=int, default=3)
    p.add_argument("--confuser", type=int, default=2)
    p.add_argument("--night", type=int, default=1)
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_drives)
    add_mine_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DatasetError as exc:
        print(f"edge-data {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
