"""`steervit data build-offline OUT_DIR`: the offline dataset and evaluation sets from real photos.

(The command makes data; the `steervit.data` package reads training data. This module is the
command's, in `steervit.cli.offline_data`, so the two are never confused.)"""
from __future__ import annotations

import argparse

from .options import non_negative_int, positive_float


def register(commands) -> None:
    data = commands.add_parser("data", help="make datasets (offline build from real photos)")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "build-offline",
        help="referential-segmentation data (train/validation/test manifest) and CORE, MVTec-style and "
             "PODS-style evaluation sets from Fashion-MNIST and sample photos; the photos are real, the scenes are made",
    )
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same files (default: 0)")
    p.add_argument("--scale", type=positive_float, default=1.0,
                   help="multiply every count (default 1: ~2300 scene images, ~6900 records, ~680 eval images)")
    p.add_argument("--train-images", type=non_negative_int, metavar="N", help="scene images in train (default 2000)")
    p.add_argument("--val-images", type=non_negative_int, metavar="N", help="scene images in validation (default 100)")
    p.add_argument("--test-images", type=non_negative_int, metavar="N", help="scene images in test (default 200)")
    p.add_argument("--expressions", type=non_negative_int, metavar="N", help="records per scene image (default 3)")
    p.add_argument("--recipe", choices=("v1", "v2", "v3"), default="v1",
                   help="v1: the first generation; v2: 1-12 items, real photo backgrounds, touching and "
                        "partly hidden items, appearance changes; v3: v2 with more crowded scenes and six "
                        "more photo objects (default: v1)")
    p.add_argument("--no-eval-sets", action="store_true", help="skip core/, anomaly/ and pods/")
    p.add_argument("--overwrite", action="store_true", help="replace a previous build in OUT_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_build_offline)

    p = sub.add_parser(
        "build-ood",
        help="the out-of-distribution suite: unseen backgrounds, dense layouts with occlusion, held-out "
             "phrasings and instances, and a CORE-style set on unseen backgrounds (see steervit.offline.ood)")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same files (default: 0)")
    p.add_argument("--scenes", type=non_negative_int, default=120, metavar="N", help="scene images per part (default 120)")
    p.add_argument("--expressions", type=non_negative_int, default=3, metavar="N", help="records per scene (default 3)")
    p.add_argument("--core-bases", type=non_negative_int, default=8, metavar="N",
                   help="base images per CORE-style scene (default 8)")
    p.add_argument("--probe-train", type=non_negative_int, default=40, metavar="N",
                   help="FG-CLS-style probe: train images per class (default 40; 0 with --probe-test 0 skips it)")
    p.add_argument("--probe-test", type=non_negative_int, default=20, metavar="N",
                   help="FG-CLS-style probe: test images per class (default 20)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous build in OUT_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_build_ood)


def cmd_build_offline(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..offline.build import BuildSizes, build_offline

    sizes = BuildSizes().scaled(args.scale) if args.scale != 1.0 else BuildSizes()
    explicit = {"train": args.train_images, "validation": args.val_images, "test": args.test_images,
                "expressions": args.expressions, "recipe": args.recipe}
    sizes = replace(sizes, **{k: v for k, v in explicit.items() if v is not None})
    summary = build_offline(args.out_dir, seed=args.seed, sizes=sizes, scale=args.scale,
                            eval_sets_too=not args.no_eval_sets, overwrite=args.overwrite,
                            progress=not args.no_progress)
    counts = summary["counts"]
    print(f"{args.out_dir}: {sum(counts['images'].values())} scene images, records {counts['records']}"
          + (f", CORE {counts['core_images']} images, anomaly {counts['anomaly_images']} images, "
             f"PODS {counts['pods_objects']} objects" if "core_images" in counts else "")
          + f" in {summary['seconds']} s (quokka cut-out IoU {summary['quokka_cutout_iou']})")
    print(summary["statement"])
    return 0


def cmd_build_ood(args: argparse.Namespace) -> int:
    from ..offline.ood import OodSizes, build_ood

    sizes = OodSizes(scenes=args.scenes, expressions=args.expressions, core_bases=args.core_bases,
                     probe_train=args.probe_train, probe_test=args.probe_test)
    summary = build_ood(args.out_dir, seed=args.seed, sizes=sizes, overwrite=args.overwrite,
                        progress=not args.no_progress)
    parts = ", ".join(f"{part} {c['images']} images / {c['records']} records" for part, c in summary["parts"].items())
    probe = summary["probe"]
    probe = f", probe {probe['images']} images ({probe['classes']} classes)" if probe else ""
    print(f"{args.out_dir}: {parts}; CORE-style set{probe} on unseen backgrounds in {summary['seconds']} s")
    print(summary["statement"])
    return 0
