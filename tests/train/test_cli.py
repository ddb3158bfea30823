"""`steervit train` / `steervit cache-text` from the command line, and the curve helpers."""
from __future__ import annotations

import json

import pytest

from steervit.cli import main
from steervit.train import plot_curves, read_metrics
from support import TINY_ROBERTA


def args(manifest, out, *extra):
    return ["--config", "smoke", f"data.manifest={manifest}", f"model.text_encoder={TINY_ROBERTA}",
            "model.cross_attn_heads=4", "model.cross_attn_head_dim=16", f"train.out_dir={out}", "train.train_iters=3",
            "train.val_every=3", "train.log_every=1", "train.progress=false", *extra]


def test_cache_text_then_train_then_resume(tmp_path, manifest, capsys):
    cache = tmp_path / "cache"
    assert main(["cache-text", *args(manifest, tmp_path / "run"), "--out", str(cache)]) == 0
    assert "cached" in capsys.readouterr().out and (cache / "index.json").is_file()

    run = tmp_path / "run"
    assert main(["train", *args(manifest, run, f"data.text_cache={cache}")]) == 0
    assert "best validation pmass" in capsys.readouterr().out
    assert main(["train", *args(manifest, run, f"data.text_cache={cache}", "train.train_iters=5"), "--resume"]) == 0
    steps = [r["step"] for r in read_metrics(run) if r["split"] == "train"]
    assert steps == [1, 2, 3, 4, 5]
    assert json.loads((run / "final_model" / "config.json").read_text())["format"] == "steervit"

    # TensorBoard logs when the package is there; the PNG helper draws the curves.
    pytest.importorskip("tensorboard")
    assert any((run / "tensorboard").iterdir())
    pytest.importorskip("matplotlib")
    png = plot_curves(run)
    assert png == run / "curves.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_user_errors_are_one_line(tmp_path, manifest, capsys):
    assert main(["train", *args(manifest, tmp_path / "run"), "train.bacth_size=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("steervit: error: override 'train.bacth_size=3'") and err.count("\n") == 1
    assert main(["train", "--config", "smoke", f"train.out_dir={tmp_path}"]) == 2  # data.manifest is ???
    assert "data.train.0.path is not set (it is ${data.manifest}: set that)" in capsys.readouterr().err
    assert main(["cache-text", *args(manifest, tmp_path / "run")]) == 2
    assert "--out" in capsys.readouterr().err


def test_python_m_steervit_train_has_the_same_options(capsys):
    from steervit.cli.train import main as train_main

    with pytest.raises(SystemExit):
        train_main(["--help"])
    out = capsys.readouterr().out
    assert "--resume" in out and "--config" in out and "KEY=VALUE" in out
