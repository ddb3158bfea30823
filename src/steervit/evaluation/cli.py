"""`steervit eval NAME ...`: the benchmark commands (docs/evaluation.md).

Only argument definitions live here; each benchmark module has `command(args) -> int` and is
imported when its command runs, so `steervit --help` stays cheap.
"""
from __future__ import annotations

import argparse
import importlib

from ..cli import add_model_options, non_negative_float, positive_int

GATES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def _run(module: str, function: str = "command"):
    def func(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"steervit.evaluation.{module}"), function)(args)

    return func


def _common(p: argparse.ArgumentParser, name: str, data_help: str, *, cache: bool = True,
            data_required: bool = True) -> None:
    p.add_argument("--data", required=data_required, metavar="PATH", help=data_help)
    p.add_argument("--out", default=f"outputs/eval/{name}", metavar="DIR",
                   help=f"results folder (default: outputs/eval/{name})")
    p.add_argument("--no-text", action="store_true", help="plain trunk, no prompt: the baseline")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N")
    p.add_argument("--workers", type=int, default=4, metavar="N", help="image-loading processes (default: 4)")
    if cache:
        p.add_argument("--cache", metavar="DIR",
                       help="keep global features here (safetensors keyed by model, prompt, gate factor)")
    add_model_options(p)


def _core_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument(f"--{prefix}split", default="test", help="CORE split (default: test)")
    p.add_argument(f"--{prefix}ks", type=positive_int, nargs="+", default=[1, 5, 10], metavar="K",
                   help="precision cut-offs (default: 1 5 10)")


def _fgcls_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--imagewoof", metavar="DIR", help="ImageWoof root (default: DATA/imagewoof)")
    p.add_argument("--stanford-cars", metavar="DIR", help="StanfordCars root (default: DATA/stanford_cars)")
    p.add_argument("--waterbirds", metavar="DIR", help="Waterbirds root (default: DATA/waterbirds)")
    p.add_argument("--epochs", type=positive_int, default=300, help="probe epochs (default: 300)")
    p.add_argument("--lr", type=float, default=1e-3, help="probe learning rate, Adam (default: 1e-3)")
    p.add_argument("--probe-batch-size", type=positive_int, default=128, help="probe batch (default: 128)")


def _hummingbird_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bank-images", type=positive_int, default=10, metavar="N",
                   help="train images containing the class in its memory bank (default: 10)")
    p.add_argument("--val-images", type=positive_int, default=20, metavar="N",
                   help="val images with the class scored per class, plus as many without it (default: 20)")
    p.add_argument("--k", type=positive_int, default=10, help="neighbours per patch (default: 10)")
    p.add_argument("--vote", choices=("soft", "majority"), default="soft",
                   help="soft: softmax(similarity/T)-weighted mean of patch labels; majority: share of "
                        "neighbours labelled positive (default: soft)")
    p.add_argument("--temperature", type=float, default=0.02, help="soft-vote temperature (default: 0.02)")
    p.add_argument("--classes", nargs="+", metavar="C",
                   help="only these ADE20K classes (names or indices 1..150; default: all 150)")


def register(commands) -> None:
    p = commands.add_parser("eval", help="run a benchmark (core, mosaic, fgcls, ...); see docs/evaluation.md")
    bench = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")

    b = bench.add_parser("core", help="CORE conditional retrieval: P@k, per scene, wrong-prompt control")
    _common(b, "core", "CORE parquet file/folder (JonaRuthardt/CORE) or image folder with metadata.jsonl")
    _core_options(b)
    b.add_argument("--wrong-prompt", action="store_true", help="also rank with another object's prompt")
    b.set_defaults(func=_run("core"))

    b = bench.add_parser("mosaic", help="MOSAIC: PR-AUC of attention and head heatmaps on VOC 2x2 mosaics")
    _common(b, "mosaic", "PASCAL VOC (VOCdevkit, or VOCdevkit/VOC2012)", cache=False)
    b.add_argument("--split", default="val", help="VOC segmentation split (default: val)")
    b.add_argument("--classes", metavar="FILE|A,B,...",
                   help="names of labels 1, 2, ... (a file with one per line, or comma-separated); default: "
                        "classes.txt beside ImageSets if present, else VOC's 20 classes")
    b.add_argument("--num-mosaics", type=positive_int, default=363, help="mosaics to build (default: 363)")
    b.add_argument("--seed", type=int, default=0, help="mosaic sampling seed (default: 0)")
    b.add_argument("--mosaics", metavar="FILE", help="reuse a saved mosaic list (mosaics.json)")
    b.add_argument("--head-pooling", default="mean", help="attention head pooling (default: mean)")
    b.add_argument("--keep-sinks", action="store_true", help="skip attention-sink suppression")
    b.add_argument("--min-coverage", type=float, default=0.5,
                   help="share of a patch the class must cover to be positive (default: 0.5)")
    b.set_defaults(func=_run("mosaic"))

    b = bench.add_parser("fgcls", help="FG-CLS: linear probes on global features (ImageWoof, Cars, Waterbirds)")
    _common(b, "fgcls", "folder holding imagewoof/, stanford_cars/, waterbirds/ (any subset)",
            data_required=False)
    _fgcls_options(b)
    b.add_argument("--seed", type=int, default=0, help="probe seed (default: 0)")
    b.set_defaults(func=_run("fgcls"))

    b = bench.add_parser("hummingbird", help="ADE20K class-vs-rest nearest-neighbour segmentation: mIoU")
    _common(b, "hummingbird", "ADE20K (ADEChallengeData2016)", cache=False)
    _hummingbird_options(b)
    b.add_argument("--seed", type=int, default=0, help="image sampling seed (default: 0)")
    b.set_defaults(func=_run("hummingbird"))

    b = bench.add_parser("pods", help="PODS: personalised object discrimination, PR-AUC and NDCG")
    _common(b, "pods", "PODS folder: <object>/{reference,positive,negative}/, descriptions.json")
    b.add_argument("--granularity", nargs="+", choices=("supercategory", "name", "description"),
                   help="prompt kinds (default: every kind descriptions.json allows)")
    b.set_defaults(func=_run("pods"))

    b = bench.add_parser("anomaly", help="zero-shot anomaly segmentation on MVTec AD / VisA")
    _common(b, "anomaly", "MVTec AD root or VisA root", cache=False)
    b.add_argument("--layout", choices=("auto", "mvtec", "visa"), default="auto")
    b.add_argument("--categories", nargs="+", metavar="C", help="only these categories")
    b.add_argument("--normalization", choices=("softmax", "sigmoid", "logits"), default="softmax",
                   help="per-prompt map before averaging (default: softmax over patches)")
    b.add_argument("--max-fpr", type=float, default=0.3, help="PRO integration limit (default: 0.3)")
    b.set_defaults(func=_run("anomaly"))

    b = bench.add_parser("genecis", help="GeneCIS focus object: R@1/2/3")
    _common(b, "genecis", "focus_object.json", cache=False)
    b.add_argument("--images", required=True, metavar="DIR", help="COCO val2017 / Visual Genome image folder")
    b.add_argument("--condition", choices=("both", "query"), default="both",
                   help="steer query and gallery (both) or only the query (default: both)")
    b.set_defaults(func=_run("genecis"))

    b = bench.add_parser("gate-sweep", help="CORE and representation quality over gate factors: Pareto plot")
    _common(b, "gate-sweep", "CORE data (as for `eval core`)")
    _core_options(b)
    b.add_argument("--gates", type=non_negative_float, nargs="+", default=list(GATES), metavar="F",
                   help="gate factors (default: 0 0.2 0.4 0.6 0.8 1)")
    b.add_argument("--fgcls-data", metavar="DIR", help="FG-CLS data folder (as `eval fgcls --data`)")
    b.add_argument("--ade20k", metavar="DIR", help="ADE20K folder for the Hummingbird score")
    _fgcls_options(b)
    _hummingbird_options(b)
    b.add_argument("--seed", type=int, default=0, help="probe and sampling seed (default: 0)")
    b.set_defaults(func=_run("sweep"))

    b = bench.add_parser("divergence", help="1 - cosine between steered and plain tokens after every block")
    _common(b, "divergence", "COCO root (annotations/instances_val2017.json + val2017/) or an image folder",
            cache=False)
    b.add_argument("--prompt", help="one prompt for every image (default with COCO: a present object)")
    b.add_argument("--max-images", type=positive_int, default=200, help="images used (default: 200)")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=_run("analysis", "divergence_command"))

    b = bench.add_parser("embedding-map", help="2-D maps of global features under several prompts")
    _common(b, "embedding-map", "image folder; first-level subfolders are the colour labels")
    b.add_argument("--prompt", nargs="+", action="extend", default=[], metavar="P", help="prompts, one panel each")
    b.add_argument("--method", choices=("auto", "umap", "pca"), default="auto",
                   help="auto: UMAP when installed, else PCA")
    b.add_argument("--max-images", type=positive_int, default=2000)
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=_run("analysis", "map_command"))
