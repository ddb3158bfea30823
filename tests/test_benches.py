"""The bench/ scripts run end to end at a tiny size (their numbers are for a quiet machine, not checked here)."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from steervit.data import PngMask, Record, write_manifest
from support import TINY_ROBERTA

BENCH = Path(__file__).resolve().parents[1] / "bench"
TINY_MODEL = ["model.trunk=test_vit", "model.image_size=64", f"model.text_encoder={TINY_ROBERTA}",
              "model.pretrained_trunk=false", "model.backbone_weights=null", "train.batch_size=2"]


def load_bench(name: str):
    """A bench script as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_scene_manifest(root: Path, count: int) -> Path:
    """Offline-like train/validation records: random PNG scenes, each with a PNG box mask."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(count):
        image, mask = root / f"images/{i}.png", root / f"masks/{i}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        mask.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(image)
        pixels = np.zeros((96, 96), dtype=np.uint8)
        pixels[20:70, 10 + i:60 + i] = 255
        Image.fromarray(pixels).save(mask)
        split = "validation" if i == count - 1 else "train"
        records.append(Record(str(image), f"the thing number {i}", PngMask(str(mask)), "scenes", split=split))
    manifest = root / "manifest.jsonl"
    write_manifest(records, manifest)
    return manifest


def test_data_loader_bench_runs(tmp_path, capsys):
    bench = load_bench("data_loader")
    manifest = write_scene_manifest(tmp_path, 9)
    result = bench.main(["--data", str(manifest), "--workers", "0", "1", "--rounds", "1", "--batches", "2",
                         "--steps", "1", "--json", *TINY_MODEL])
    assert result["records"] == 8 and result["batch_size"] == 2 and result["trunk"] == "test_vit"
    assert result["step_images_per_s"] > 0
    assert set(result["loader"]) == {"0", "1"}
    for row in result["loader"].values():
        assert row["images_per_s"] > 0 and row["first_batch_s"] > 0
        assert np.isclose(row["ratio_to_step"], row["images_per_s"] / result["step_images_per_s"])
    assert '"step_images_per_s"' in capsys.readouterr().out  # --json printed the result


def test_server_bench_runs(capsys):
    result = load_bench("server").main(["--tiny", "--clients", "1", "2", "--requests", "2", "--rounds", "1",
                                        "--json"])
    assert set(result["clients"]) == {"1", "2"} and result["endpoint"] == "steer"
    for row in result["clients"].values():
        for mode in ("unbatched", "batched"):
            v = row[mode]
            assert v["requests_per_s"] > 0 and 0 < v["latency_ms"] <= v["p90_ms"] and v["server_ms"] > 0
        assert np.isclose(row["throughput_ratio"], row["batched"]["requests_per_s"] / row["unbatched"]["requests_per_s"])
        assert 1 <= row["mean_batch"] <= 2  # never more requests in a batch than clients
    assert result["clients"]["1"]["mean_batch"] == 1
    assert '"throughput_ratio"' in capsys.readouterr().out


def test_gpu_bench_runs_small_on_cpu(tmp_path):
    """bench/gpu.sh from the source tree, as the device machine runs it, at the small size: every field
    of the JSON the lead reads is there and consistent, and the two cross-attention paths agree."""
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("OUT", None)
    run = subprocess.run(["bash", str(BENCH / "gpu.sh"), "--small", "--json", str(out)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "steered / plain" in run.stdout and "SDPA with the boolean mask" in run.stdout
    result = json.loads(out.read_text())
    assert result["size"] == "small" and result["device"] == "cpu"
    assert result["config"]["cross_attn_layers"] == [1, 3, 5]  # every other block of test_vit's 6

    def rate(value):
        return isinstance(value, float) and math.isfinite(value) and value > 0

    for row in result["inference"]:
        assert all(rate(row[f"{k}_img_s"]) for k in ("plain", "steered", "steered_sdpa"))
        assert math.isclose(row["steered_over_plain"], row["steered_img_s"] / row["plain_img_s"])
        assert row["steered_peak_mib"] is None  # peak memory is read from CUDA only
    cross = result["cross"]
    assert rate(cross["one_call_pairs_s"]) and rate(cross["separate_calls_pairs_s"])
    assert math.isclose(cross["one_over_separate"], cross["one_call_pairs_s"] / cross["separate_calls_pairs_s"])
    training = result["training"]
    assert training["loop"] == "Trainer.train_step"  # omegaconf is installed here
    assert all(rate(training[f"{k}_img_s"]) for k in ("bf16", "bf16_sdpa", "fp32_sdpa"))
    # The head starts at zero, so every first-step logit is 0 and the loss is ln(patches) up to fp32 rounding.
    assert math.isclose(training["first_loss"], training["ln_patches"], rel_tol=1e-5)
    assert training["losses_finite"]
    sdpa = result["sdpa"]
    assert set(sdpa["backends"]) == {"flash_attention", "efficient_attention", "cudnn_attention", "math"}
    assert sdpa["backends"]["math"] == {"forward": True, "backward": True}  # the fallback takes any mask
    assert all(entry.get("why") for entry in sdpa["backends"].values() if not entry["forward"])
    assert sdpa["kernels"]["sdpa_forward"]["sdpa_ops"] and sdpa["default_backend"]["sdpa_forward"] != "no SDPA"
    assert sdpa["default_backend"]["factorised_forward"] == "no SDPA"  # matmuls and a softmax only
    # The same function associated two ways (and in chunks), in fp32: only rounding differs.
    assert result["checks"]["factorised_vs_sdpa_rel_err"] < 1e-5
    assert result["checks"]["cross_vs_separate_rel_err"] < 1e-5


TINY_INFERENCE = ["--trunk", "test_vit", "--size", "64", "--batch", "2", "--prompts", "3", "--rounds", "1",
                  "--text-encoder", str(TINY_ROBERTA)]


def test_inference_bench_runs_and_renders_the_speed_table(tmp_path, capsys):
    """Every row and ratio is measured and consistent; bf16 features stay near fp32's; the README
    table renders from the JSON. (--compile adds rows the same way; model.compile is tests/test_compile.py's.)"""
    out = tmp_path / "speed.json"
    result = load_bench("inference").main([*TINY_INFERENCE, "--bf16", "--json", str(out)])
    assert json.loads(out.read_text()) == result
    rows = {row["key"]: row for row in result["rows"]}
    assert set(rows) == {"plain", "steered", "textbook", "cross", "cross_fixed", "calls", "bf16_plain",
                         "bf16_steered", "bf16_cross", "bf16_calls"}
    assert all(row["per_s"] > 0 and math.isclose(row["ms_per"], 1000 / row["per_s"]) for row in rows.values())
    assert rows["cross"]["unit"] == "pair" and rows["plain"]["unit"] == "img"
    ratios = {r["key"]: r["value"] for r in result["ratios"]}
    assert math.isclose(ratios["cross_over_calls"], rows["cross"]["per_s"] / rows["calls"]["per_s"])
    assert math.isclose(ratios["bf16_steered_over_fp32"], rows["bf16_steered"]["per_s"] / rows["steered"]["per_s"])
    checks = result["checks"]
    assert checks["cross_vs_calls"]["max_abs"] < 1e-4  # other batch shapes: fp32 rounding only
    # bf16 keeps 8 bits of mantissa: the features move by about 1 %, their direction hardly
    assert 0 < checks["bf16_steered_vs_fp32"]["max_abs"] < 0.05 * checks["bf16_steered_vs_fp32"]["reference_max_abs"]
    assert checks["bf16_steered_vs_fp32"]["min_cosine"] > 0.999
    table = load_bench("speed_table").main([str(out)])
    assert table.count("\n| ") == 2 + len(rows)  # header, rule and one line per row
    assert "one cross call / P calls = **" in table and rows["cross"]["label"] in table
    assert "--json" not in table  # the command that made the numbers, less where they were written


def test_train_bench_runs_and_compares_bf16_losses(tmp_path):
    result = load_bench("train").main(["--trunk", "test_vit", "--size", "64", "--batch", "2", "--reps", "1", "--bf16",
                                       "--text-encoder", str(TINY_ROBERTA), "--json", str(tmp_path / "train.json")])
    rows = {(r["text"], r["precision"], r["form"]): r for r in result["rows"]}
    assert set(rows) == {(t, p, "eager") for t in ("live", "cache") for p in ("fp32", "bf16")}
    assert all(r["images_per_s"] > 0 and len(r["losses"]) == 3 for r in rows.values())  # 2 warm-up steps, 1 timed
    fp32, bf16 = rows[("cache", "fp32", "eager")], rows[("cache", "bf16", "eager")]
    assert fp32["losses"][0] != fp32["losses"][1]  # the steps move the weights: the comparison means something
    # the same steps in bf16 autocast: the losses differ by bf16 rounding, far less than the loss itself
    assert 0 < bf16["max_abs_loss_difference_vs_fp32"] < 0.02 * fp32["losses"][0]
    assert "bf16 / fp32 (cache text)" in result["ratios"]
