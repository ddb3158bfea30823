"""`steervit eval NAME ...`: every benchmark of the paper, described as data and run by one runner.

A `Benchmark` says how to read its data from the options (before the slow model load, so a wrong
path fails at once), how to evaluate, which options to record, its table, its one-line summary and
its figures. `run_benchmark` does the rest the same way for all of them: read, load the model,
evaluate, write `results.json` + `results.md` (steervit.evaluation.report), print. The evaluation
code itself lives in `steervit.evaluation` and never imports the command line.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .options import add_loader_options, add_model_options, model_from_args, non_negative_float, positive_int, slug

Namespace = argparse.Namespace


@dataclass(frozen=True)
class Benchmark:
    """One `steervit eval` command."""

    name: str
    help: str
    data_help: str
    options: Callable[[argparse.ArgumentParser], None]  # its own options
    read: Callable[[Namespace], Any]  # the data, read before the model loads
    evaluate: Callable[[Any, Any, Namespace], Any]  # (model, data, args) -> a typed result or a dict
    table: Callable[[dict], str]  # the results.md table
    summary: Callable[[dict], str]  # the line printed at the end
    recorded: Callable[[Namespace, Any], dict] = lambda args, data: {}  # options kept in results["setup"]
    figures: Callable[[dict, Path], list[Path]] = lambda results, out: []  # plots written beside results
    feature_cache: bool = True  # global features can be kept on disk (--cache)
    data_required: bool = True


def run_benchmark(benchmark: Benchmark, args: Namespace) -> int:
    from ..evaluation.features import FeatureCache, sharded_over_ranks
    from ..evaluation.report import as_document, setup, write_results
    from ..train import distributed

    data = benchmark.read(args)
    # Under torchrun the feature passes share their images among the ranks and gather the features,
    # so every rank computes the same results; rank 0 alone writes and prints them.
    info = distributed.setup(getattr(args, "device", "auto"))
    model = model_from_args(args)
    args.feature_cache = FeatureCache(getattr(args, "cache", None))
    with sharded_over_ranks():
        results = as_document(benchmark.evaluate(model, data, args))
    distributed.teardown()
    if not info.is_main:
        return 0
    results["setup"] = setup(args, model, **benchmark.recorded(args, data))
    out = Path(args.out)
    paths = benchmark.figures(results, out)  # figures may add file names to the results
    print(write_results(out, results, benchmark.table(results)))
    for path in paths:
        print(path)
    if benchmark.summary(results):
        print(benchmark.summary(results))
    return 0


def _fmt(value) -> str:
    from ..evaluation.report import fmt

    return fmt(value)


def _loader(args: Namespace) -> dict:
    return {"batch_size": args.batch_size, "workers": args.workers}


# ------------------------------------------------------------------------------------ CORE
def _core_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument(f"--{prefix}split", default="test", help="CORE split (default: test)")
    p.add_argument(f"--{prefix}ks", type=positive_int, nargs="+", default=[1, 5, 10], metavar="K",
                   help="precision cut-offs (default: 1 5 10)")


def _core_command_options(p: argparse.ArgumentParser) -> None:
    _core_options(p)
    p.add_argument("--wrong-prompt", action="store_true", help="also rank with another object's prompt")


def _core_read(args: Namespace):
    from ..evaluation.datasets import read_core

    return read_core(args.data, args.split)


def _core_evaluate(model, records, args: Namespace) -> dict:
    from ..evaluation import core

    return core.evaluate(model, records, text=not args.no_text, ks=args.ks, wrong_prompt=args.wrong_prompt,
                         cache=args.feature_cache, **_loader(args))


def _core_table(results: dict) -> str:
    from ..evaluation import core

    return core.table(results)


CORE = Benchmark(
    "core", "CORE conditional retrieval: P@k, per scene, wrong-prompt control",
    "CORE parquet file/folder (JonaRuthardt/CORE) or image folder with metadata.jsonl",
    _core_command_options, _core_read, _core_evaluate, _core_table,
    summary=lambda r: "CORE " + ", ".join(f"{k} {_fmt(v)}" for k, v in r["overall"].items()),
    recorded=lambda args, data: {"split": args.split, "ks": args.ks},
)


# ------------------------------------------------------------------------------------ MOSAIC
def _mosaic_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default="val", help="VOC segmentation split (default: val)")
    p.add_argument("--classes", metavar="FILE|A,B,...",
                   help="names of labels 1, 2, ... (a file with one per line, or comma-separated); default: "
                        "classes.txt beside ImageSets if present, else VOC's 20 classes")
    p.add_argument("--num-mosaics", type=positive_int, default=363, help="mosaics to build (default: 363)")
    p.add_argument("--seed", type=int, default=0, help="mosaic sampling seed (default: 0)")
    p.add_argument("--mosaics", metavar="FILE", help="reuse a saved mosaic list (mosaics.json)")
    p.add_argument("--head-pooling", default="mean", help="attention head pooling (default: mean)")
    p.add_argument("--keep-sinks", action="store_true", help="skip attention-sink suppression")
    p.add_argument("--min-coverage", type=float, default=0.5,
                   help="share of a patch the class must cover to be positive (default: 0.5)")


def _mosaic_read(args: Namespace):
    from ..evaluation.datasets import read_voc
    from ..evaluation.mosaic import make_mosaics
    from ..evaluation.report import write_json

    voc = read_voc(args.data, args.split, classes=args.classes)
    if args.mosaics:
        listing = json.loads(Path(args.mosaics).read_text())
    else:
        listing = {"split": args.split, "seed": args.seed, "mosaics": [
            {"id": i, "images": ids} for i, ids in enumerate(make_mosaics(voc, args.num_mosaics, args.seed))]}
    write_json(Path(args.out) / "mosaics.json", listing)  # written first, so a failed run can be repeated
    return voc, listing


def _mosaic_evaluate(model, data, args: Namespace) -> dict:
    from ..evaluation import mosaic

    voc, listing = data
    return mosaic.evaluate(model, voc, [m["images"] for m in listing["mosaics"]], text=not args.no_text,
                           head_pooling=args.head_pooling, remove_sinks=not args.keep_sinks,
                           min_coverage=args.min_coverage, batch_size=args.batch_size)


def _mosaic_table(results: dict) -> str:
    from ..evaluation import mosaic

    return mosaic.table(results)


MOSAIC = Benchmark(
    "mosaic", "MOSAIC: PR-AUC of attention and head heatmaps on VOC 2x2 mosaics",
    "PASCAL VOC (VOCdevkit, or VOCdevkit/VOC2012)",
    _mosaic_options, _mosaic_read, _mosaic_evaluate, _mosaic_table,
    summary=lambda r: f"MOSAIC PR-AUC attention {_fmt(r['attention'])}, head {_fmt(r['head'])}",
    recorded=lambda args, data: {"split": args.split, "seed": data[1].get("seed"), "head_pooling": args.head_pooling,
                                 "remove_sinks": not args.keep_sinks, "min_coverage": args.min_coverage,
                                 "mosaic_list": args.mosaics or str(Path(args.out) / "mosaics.json")},
    feature_cache=False,
)


# ------------------------------------------------------------------------------------ FG-CLS
def _fgcls_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--imagewoof", metavar="DIR", help="ImageWoof root (default: DATA/imagewoof)")
    p.add_argument("--stanford-cars", metavar="DIR", help="StanfordCars root (default: DATA/stanford_cars)")
    p.add_argument("--waterbirds", metavar="DIR", help="Waterbirds root (default: DATA/waterbirds)")
    p.add_argument("--epochs", type=positive_int, default=300, help="probe epochs (default: 300)")
    p.add_argument("--lr", type=float, default=1e-3, help="probe learning rate, Adam (default: 1e-3)")
    p.add_argument("--probe-batch-size", type=positive_int, default=128, help="probe batch (default: 128)")


def _fgcls_options(p: argparse.ArgumentParser) -> None:
    _fgcls_data_options(p)
    p.add_argument("--seed", type=int, default=0, help="probe seed (default: 0)")


def _fgcls_load(args: Namespace, root):
    from ..evaluation.fgcls import find_datasets, read_splits

    roots = find_datasets(root, {"imagewoof": args.imagewoof, "stanford_cars": args.stanford_cars,
                                 "waterbirds": args.waterbirds})
    return {name: read_splits(name, path) for name, path in roots.items()}


def _fgcls_probe(args: Namespace) -> dict:
    return {"epochs": args.epochs, "lr": args.lr, "probe_batch_size": args.probe_batch_size, "seed": args.seed}


def _fgcls_evaluate(model, data, args: Namespace) -> dict:
    from ..evaluation import fgcls

    return fgcls.evaluate(model, data, text=not args.no_text, cache=args.feature_cache, **_fgcls_probe(args),
                          **_loader(args))


def _fgcls_table(results: dict) -> str:
    from ..evaluation import fgcls

    return fgcls.table(results)


FGCLS = Benchmark(
    "fgcls", "FG-CLS: linear probes on global features (ImageWoof, Cars, Waterbirds)",
    "folder holding imagewoof/, stanford_cars/, waterbirds/ (any subset)",
    _fgcls_options, lambda args: _fgcls_load(args, args.data), _fgcls_evaluate, _fgcls_table,
    summary=lambda r: f"FG-CLS mean accuracy {_fmt(r['mean'])}",
    recorded=lambda args, data: {"datasets": list(data)},
    data_required=False,
)


# ------------------------------------------------------------------------------------ Hummingbird
def _hummingbird_method_options(p: argparse.ArgumentParser) -> None:
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


def _hummingbird_options(p: argparse.ArgumentParser) -> None:
    _hummingbird_method_options(p)
    p.add_argument("--seed", type=int, default=0, help="image sampling seed (default: 0)")


def _hummingbird_settings(args: Namespace) -> dict:
    from ..evaluation.hummingbird import parse_classes

    return {"classes": parse_classes(args.classes), "bank_images": args.bank_images, "val_images": args.val_images,
            "k": args.k, "vote": args.vote, "temperature": args.temperature, "seed": args.seed, **_loader(args)}


def _read_ade20k(root):
    from ..evaluation.datasets import read_ade20k

    return read_ade20k(root, "train"), read_ade20k(root, "val")


def _hummingbird_evaluate(model, data, args: Namespace) -> dict:
    from ..evaluation import hummingbird

    return hummingbird.evaluate(model, *data, text=not args.no_text, **_hummingbird_settings(args))


def _hummingbird_table(results: dict) -> str:
    from ..evaluation import hummingbird

    return hummingbird.table(results)


HUMMINGBIRD = Benchmark(
    "hummingbird", "ADE20K class-vs-rest nearest-neighbour segmentation: mIoU", "ADE20K (ADEChallengeData2016)",
    _hummingbird_options, lambda args: _read_ade20k(args.data), _hummingbird_evaluate, _hummingbird_table,
    summary=lambda r: f"Hummingbird ADE20K mIoU {_fmt(r['miou'])} over {r['classes']} classes",
    recorded=lambda args, data: {k: v for k, v in _hummingbird_settings(args).items() if k != "classes"},
    feature_cache=False,
)


# ------------------------------------------------------------------------------------ PODS
def _pods_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--granularity", nargs="+", choices=("supercategory", "name", "description"),
                   help="prompt kinds (default: every kind descriptions.json allows)")


def _pods_read(args: Namespace):
    from ..evaluation.datasets import read_pods
    from ..evaluation.pods import available

    data = read_pods(args.data)
    kinds = args.granularity or available(data)
    missing = [k for k in kinds if k not in available(data)]
    if missing:
        raise ValueError(f"descriptions.json does not give every object a {', '.join(missing)}")
    return data, kinds


def _pods_evaluate(model, data, args: Namespace) -> dict:
    from ..evaluation import pods

    return pods.evaluate(model, *data, text=not args.no_text, cache=args.feature_cache, **_loader(args))


def _pods_table(results: dict) -> str:
    from ..evaluation import pods

    return pods.table(results)


PODS = Benchmark(
    "pods", "PODS: personalised object discrimination, PR-AUC and NDCG",
    "PODS folder: <object>/{reference,positive,negative}/, descriptions.json",
    _pods_options, _pods_read, _pods_evaluate, _pods_table,
    summary=lambda r: "\n".join(f"PODS {kind}: PR-AUC {_fmt(g['pr_auc'])}, NDCG {_fmt(g['ndcg'])}"
                                for kind, g in r["granularities"].items()),
    recorded=lambda args, data: {"granularities": data[1]},
)


# ------------------------------------------------------------------------------------ anomaly
def _anomaly_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layout", choices=("auto", "mvtec", "visa"), default="auto")
    p.add_argument("--categories", nargs="+", metavar="C", help="only these categories")
    p.add_argument("--normalization", choices=("softmax", "sigmoid", "logits"), default="softmax",
                   help="per-prompt map before averaging (default: softmax over patches)")
    p.add_argument("--max-fpr", type=float, default=0.3, help="PRO integration limit (default: 0.3)")


def _anomaly_read(args: Namespace):
    from ..evaluation.datasets import read_anomaly

    layout, categories = read_anomaly(args.data, args.layout)
    if args.categories:
        unknown = sorted(set(args.categories) - set(categories))
        if unknown:
            raise ValueError(f"unknown categories {unknown}; the data has {sorted(categories)}")
        categories = {c: categories[c] for c in args.categories}
    return layout, categories


def _anomaly_evaluate(model, data, args: Namespace):
    from ..evaluation import anomaly

    return anomaly.evaluate(model, data[1], text=not args.no_text, normalization=args.normalization,
                            max_fpr=args.max_fpr, **_loader(args))


def _anomaly_table(results: dict) -> str:
    from ..evaluation import anomaly

    return anomaly.table(results)


def _anomaly_summary(results: dict) -> str:
    m = results["mean"]
    return (f"anomaly ({results['setup']['layout']}) pixel AUROC {_fmt(m['pixel_auroc'])}, PRO {_fmt(m['pro'])}, "
            f"F1-max {_fmt(m['f1_max'])}, image AUROC {_fmt(m['image_auroc'])}")


ANOMALY = Benchmark(
    "anomaly", "zero-shot anomaly segmentation on MVTec AD / VisA", "MVTec AD root or VisA root",
    _anomaly_options, _anomaly_read, _anomaly_evaluate, _anomaly_table, _anomaly_summary,
    recorded=lambda args, data: {"layout": data[0], "normalization": args.normalization, "max_fpr": args.max_fpr},
    feature_cache=False,
)


# ------------------------------------------------------------------------------------ GeneCIS
def _genecis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, metavar="DIR", help="COCO val2017 / Visual Genome image folder")
    p.add_argument("--condition", choices=("both", "query"), default="both",
                   help="steer query and gallery (both) or only the query (default: both)")


def _genecis_read(args: Namespace):
    from ..evaluation.datasets import read_genecis

    return read_genecis(args.data, args.images)


def _genecis_evaluate(model, samples, args: Namespace) -> dict:
    from ..evaluation import genecis

    return genecis.evaluate(model, samples, text=not args.no_text, condition=args.condition, **_loader(args))


def _genecis_table(results: dict) -> str:
    from ..evaluation import genecis

    return genecis.table(results)


GENECIS = Benchmark(
    "genecis", "GeneCIS focus object: R@1/2/3", "focus_object.json",
    _genecis_options, _genecis_read, _genecis_evaluate, _genecis_table,
    summary=lambda r: "GeneCIS focus object " + ", ".join(f"R@{k} {_fmt(r[f'R@{k}'])}" for k in (1, 2, 3)),
    recorded=lambda args, data: {"images": str(args.images), "condition": args.condition},
    feature_cache=False,
)


# ------------------------------------------------------------------------------------ gate sweep
def _sweep_options(p: argparse.ArgumentParser) -> None:
    from ..evaluation.sweep import GATE_FACTORS

    _core_options(p)
    p.add_argument("--gates", type=non_negative_float, nargs="+", default=list(GATE_FACTORS), metavar="F",
                   help="gate factors (default: 0 0.2 0.4 0.6 0.8 1)")
    p.add_argument("--fgcls-data", metavar="DIR", help="FG-CLS data folder (as `eval fgcls --data`)")
    p.add_argument("--ade20k", metavar="DIR", help="ADE20K folder for the Hummingbird score")
    _fgcls_data_options(p)
    _hummingbird_method_options(p)
    p.add_argument("--seed", type=int, default=0, help="probe and sampling seed (default: 0)")


def _sweep_read(args: Namespace):
    from ..evaluation.datasets import read_core

    fg_data = None
    if args.fgcls_data or args.imagewoof or args.stanford_cars or args.waterbirds:
        fg_data = _fgcls_load(args, args.fgcls_data)
    ade = _read_ade20k(args.ade20k) if args.ade20k else None
    return read_core(args.data, args.split), fg_data, ade


def _sweep_evaluate(model, data, args: Namespace) -> dict:
    from ..evaluation import sweep

    records, fg_data, ade = data
    return sweep.evaluate(model, args.gates, records, fgcls_data=fg_data, ade=ade, text=not args.no_text, ks=args.ks,
                          core_options=_loader(args), fgcls_options={**_fgcls_probe(args), **_loader(args)},
                          hummingbird_options=_hummingbird_settings(args), cache=args.feature_cache)


def _sweep_figures(results: dict, out: Path) -> list[Path]:
    from ..evaluation.plots import pareto_plot
    from ..evaluation.sweep import PAPER

    rows, first_k = results["rows"], results["setup"]["ks"][0]
    return [pareto_plot(out / "pareto.png", [r["gate_factor"] for r in rows], [r["quality"] for r in rows],
                        [r.get("core_P@1", r[f"core_P@{first_k}"]) for r in rows], PAPER["(gate, quality, CORE)"])]


def _sweep_table(results: dict) -> str:
    from ..evaluation import sweep

    return sweep.table(results)


GATE_SWEEP = Benchmark(
    "gate-sweep", "CORE and representation quality over gate factors: Pareto plot", "CORE data (as for `eval core`)",
    _sweep_options, _sweep_read, _sweep_evaluate, _sweep_table, summary=lambda r: "",
    recorded=lambda args, data: {"gates": args.gates, "ks": args.ks, "fgcls_data": str(args.fgcls_data),
                                 "ade20k": str(args.ade20k)},
    figures=_sweep_figures,
)


# ------------------------------------------------------------------------------------ divergence
def _divergence_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", help="one prompt for every image (default with COCO: a present object)")
    p.add_argument("--max-images", type=positive_int, default=200, help="images used (default: 200)")
    p.add_argument("--seed", type=int, default=0)


def _divergence_read(args: Namespace):
    from ..evaluation.analysis import divergence_inputs

    return divergence_inputs(Path(args.data), prompt=args.prompt, max_images=args.max_images, seed=args.seed,
                             text=not args.no_text)


def _divergence_evaluate(model, data, args: Namespace) -> dict:
    from ..evaluation.analysis import divergence

    return divergence(model, *data, **_loader(args))


def _divergence_table(results: dict) -> str:
    from ..evaluation.report import markdown_table

    rows = [[b, c, p] for b, c, p in zip(results["blocks"], results["cls"], results["patches"])]
    rows.append(["final norm", results["final_norm"]["cls"], results["final_norm"]["patches"]])
    return markdown_table(["block", "CLS", "patch mean"], rows, digits=4)


def _divergence_figures(results: dict, out: Path) -> list[Path]:
    from ..evaluation.plots import divergence_plot

    return [divergence_plot(out / "divergence.png", results["blocks"],
                            {"CLS token": results["cls"], "patch tokens": results["patches"]},
                            results["cross_attn_blocks"])]


DIVERGENCE = Benchmark(
    "divergence", "1 - cosine between steered and plain tokens after every block",
    "COCO root (annotations/instances_val2017.json + val2017/) or an image folder",
    _divergence_options, _divergence_read, _divergence_evaluate, _divergence_table, summary=lambda r: "",
    recorded=lambda args, data: {"prompt": args.prompt, "max_images": args.max_images, "seed": args.seed},
    figures=_divergence_figures, feature_cache=False,
)


# ------------------------------------------------------------------------------------ embedding map
def _map_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", nargs="+", action="extend", default=[], metavar="P", help="prompts, one panel each")
    p.add_argument("--method", choices=("auto", "umap", "pca"), default="auto",
                   help="auto: UMAP when installed, else PCA")
    p.add_argument("--max-images", type=positive_int, default=2000)
    p.add_argument("--seed", type=int, default=0)


def _map_read(args: Namespace):
    from ..evaluation.datasets import read_labelled_images, sample

    data = read_labelled_images(args.data)
    keep = sample(list(range(len(data.refs))), args.max_images, args.seed)
    return data, [data.refs[i] for i in keep], [data.labels[i] for i in keep]


def _map_evaluate(model, data, args: Namespace) -> dict:
    from ..evaluation.analysis import embedding_map

    labelled, refs, labels = data
    panels, coords = embedding_map(model, refs, labels, args.prompt, text=not args.no_text, method=args.method,
                                   seed=args.seed, cache=args.feature_cache, **_loader(args))
    for name, panel in panels.items():
        panel["coords"] = coords[name].tolist()
        panel["file"] = f"map_{'plain' if name == 'plain' else slug(name)}.png"
    return {"benchmark": "embedding-map", "images": len(refs), "classes": labelled.classes, "labels": labels,
            "paths": [r.key for r in refs], "panels": panels, "no_text": args.no_text}


def _map_figures(results: dict, out: Path) -> list[Path]:
    import numpy as np

    from ..evaluation.plots import embedding_panel

    paths = []
    for name, panel in results["panels"].items():
        title = f"{name} (no text: plain)" if results["no_text"] and name != "plain" else name
        embedding_panel(out / panel["file"], np.asarray(panel["coords"]), results["labels"], results["classes"],
                        f"{title} [{panel['method']}]")
        paths.append(out / panel["file"])
    return paths


def _map_table(results: dict) -> str:
    from ..evaluation.report import markdown_table

    return markdown_table(["panel", "method", "1-NN accuracy", "file"],
                          [[n, p["method"], p["nn_accuracy"], p["file"]] for n, p in results["panels"].items()])


EMBEDDING_MAP = Benchmark(
    "embedding-map", "2-D maps of global features under several prompts",
    "image folder; first-level subfolders are the colour labels",
    _map_options, _map_read, _map_evaluate, _map_table, summary=lambda r: "",
    recorded=lambda args, data: {"prompts": args.prompt, "method": args.method},
    figures=_map_figures,
)


# ------------------------------------------------------------------------------------ pointing game
def _pointing_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tolerance", type=non_negative_float, default=0.0,
                   help="grow every box by this many input pixels (default: 0, strict)")


def _pointing_read(args: Namespace):
    from ..evaluation.pointing import read_entries

    return read_entries(args.data)  # no --data: the packaged hand-drawn boxes


def _pointing_evaluate(model, entries, args: Namespace) -> dict:
    from ..evaluation import pointing

    return pointing.evaluate(model, entries, text=not args.no_text, batch_size=args.batch_size,
                             tolerance=args.tolerance)


def _pointing_table(results: dict) -> str:
    from ..evaluation import pointing

    return pointing.table(results)


def _pointing_summary(results: dict) -> str:
    from ..evaluation import pointing

    return pointing.summary(results)


POINTING = Benchmark(
    "pointing", "pointing game on real multi-object photos: is the heatmap's peak inside the named object's box",
    "pointing JSON (default: the packaged steervit/offline/pointing_photos.json)",
    _pointing_options, _pointing_read, _pointing_evaluate, _pointing_table, _pointing_summary,
    recorded=lambda args, data: {"entries": len(data), "tolerance": args.tolerance},
    feature_cache=False, data_required=False,
)


BENCHMARKS: tuple[Benchmark, ...] = (CORE, MOSAIC, FGCLS, HUMMINGBIRD, PODS, ANOMALY, GENECIS, GATE_SWEEP,
                                     DIVERGENCE, EMBEDDING_MAP, POINTING)


# ------------------------------------------------------------------------------------ registration
def register(commands) -> None:
    p = commands.add_parser("eval", help="run a benchmark (core, mosaic, fgcls, ...); see docs/evaluation.md")
    sub = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for benchmark in BENCHMARKS:
        b = sub.add_parser(benchmark.name, help=benchmark.help)
        b.add_argument("--data", required=benchmark.data_required, metavar="PATH", help=benchmark.data_help)
        b.add_argument("--out", default=f"outputs/eval/{benchmark.name}", metavar="DIR",
                       help=f"results folder (default: outputs/eval/{benchmark.name})")
        b.add_argument("--no-text", action="store_true", help="plain trunk, no prompt: the baseline")
        add_loader_options(b)
        if benchmark.feature_cache:
            b.add_argument("--cache", metavar="DIR",
                           help="keep global features here (safetensors keyed by model, prompt, gate factor)")
        benchmark.options(b)
        add_model_options(b)
        b.set_defaults(func=lambda args, benchmark=benchmark: run_benchmark(benchmark, args))
