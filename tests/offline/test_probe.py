"""The OOD suite's FG-CLS-style probe set and the trade-off measured on it (probe steered vs plain, gate sweep)."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from steervit.evaluation import fgcls, tradeoff
from steervit.evaluation.datasets import read_core
from steervit.evaluation.sweep import GATE_FACTORS
from steervit.offline import backgrounds
from steervit.offline import fashion_mnist as fm
from steervit.offline.eval_sets import file_stem
from steervit.offline.ood import PROBE_DATASET, OodSizes, build_ood
from support import make_tiny_model

TRAIN, TEST = 3, 2  # per class
RESERVED = ("mate-backgrounds", "opencv-doc", "/usr/share/backgrounds", "/usr/share/opencv")


@pytest.fixture(scope="module")
def probe_build(fashion_mnist_installed, tmp_path_factory):
    """Only the probe and a two-base CORE-style set (a gallery needs another base): a few seconds."""
    out = tmp_path_factory.mktemp("ood_probe")
    sizes = OodSizes(scenes=0, core_scenes=1, core_bases=2, probe_train=TRAIN, probe_test=TEST)
    summary = build_ood(out, seed=2, sizes=sizes, overwrite=True, progress=False, parts=())
    return out, summary


def sources(out) -> dict:
    return json.loads((out / "probe" / "sources.json").read_text())


def test_probe_is_in_the_fgcls_layout_with_the_true_class_of_each_product(probe_build):
    out, summary = probe_build
    data = tradeoff.read_probe(out / "probe")  # what `steervit eval fgcls --data OUT/probe` reads
    assert list(data) == [PROBE_DATASET] and fgcls.PROMPTS[PROBE_DATASET] == "the product"
    train, test = data[PROBE_DATASET]
    assert train.classes == test.classes == sorted(file_stem(c.name) for c in fm.CLASSES)
    assert (len(train.refs), len(test.refs)) == (10 * TRAIN, 10 * TEST)
    assert summary["probe"]["images"] == 10 * (TRAIN + TEST)
    labels = fm.load_fashion_mnist("test").labels
    info = sources(out)
    items = {}
    for part, split in (("train", train), ("test", test)):
        for ref, label in zip(split.refs, split.labels):
            entry = info[ref.key]
            assert file_stem(fm.CLASSES[entry["label"]].name) == split.classes[label]  # folder = true class
            # every product is a Fashion-MNIST *test* photo (training uses only the train split), of that class
            assert entry["item"].startswith("fmnist-test-")
            assert int(labels[int(entry["item"].removeprefix("fmnist-test-"))]) == entry["label"]
            items.setdefault(part, set()).add(entry["item"])
            assert Image.open(ref.path).size == (224, 224)
    assert len(items["train"]) == 10 * TRAIN and not items["train"] & items["test"]  # no product in both splits


def test_probe_backgrounds_come_only_from_the_ood_pool(probe_build):
    out, _ = probe_build
    ood = {str(p) for p in backgrounds.background_files("ood")}
    train = {str(p) for p in backgrounds.background_files("train")}
    used = {entry["background"].removeprefix("ood:") for entry in sources(out).values()}
    assert used <= ood and not used & train
    assert not any(bad in name for name in used for bad in RESERVED)
    assert len(used) > 1  # drawn from the pool, not one picture


def test_probe_needs_both_splits_or_neither(tmp_path):
    with pytest.raises(ValueError, match="both its splits"):
        build_ood(tmp_path / "x", sizes=OodSizes(probe_train=4, probe_test=0), progress=False)


def test_tradeoff_probe_and_gate_sweep_on_a_tiny_model(probe_build, tmp_path):
    out, _ = probe_build
    model = make_tiny_model()
    results = tradeoff.evaluate(model, tradeoff.read_probe(out / "probe"), read_core(out / "core"),
                                probe_options={"epochs": 20}, batch_size=16).to_json()
    assert 0 <= results["plain"] <= 100 and 0 <= results["steered"] <= 100
    assert results["drop"] == results["plain"] - results["steered"]
    assert results["datasets"][PROBE_DATASET]["prompt"] == "the product"
    rows = results["sweep"]
    assert [r["gate_factor"] for r in rows] == list(GATE_FACTORS)
    assert all(0 <= r["probe_accuracy"] <= 100 and 0 <= r["core_P@1"] <= 100 for r in rows)
    # gate factor 0 gives the plain trunk's features exactly and the probe trains with the same seed,
    # so the sweep's first row is the plain probe to the last bit; likewise f = 1 (the model's own) is steered
    assert rows[0]["probe_accuracy"] == results["plain"]
    assert rows[-1]["probe_accuracy"] == results["steered"]

    path = tradeoff.plot(results, tmp_path / "sweep.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 300
    assert "| 0.6 |" in tradeoff.table(results)


def test_build_ood_cli_rejects_a_probe_with_one_empty_split(tmp_path, capsys):
    from steervit.cli import main

    assert main(["data", "build-ood", str(tmp_path / "x"), "--probe-train", "3", "--probe-test", "0"]) == 2
    assert "both its splits" in capsys.readouterr().err
