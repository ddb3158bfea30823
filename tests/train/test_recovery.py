"""Runs that stop at awkward moments: on an epoch boundary, mid-write of a metrics line or of a
checkpoint, on a full disk. Each must resume (or fail) cleanly."""
from __future__ import annotations

import errno
import json
import logging
import re
import signal

import pytest
import torch

from steervit.train import Trainer, read_metrics
from steervit.train.metrics import METRICS_FILE, MetricsLog
from steervit.train.state import CheckpointWriteError, load_state
from support import make_tiny_model

from .conftest import tiny_config
from .test_trainer import assert_same_tensors

NO_VAL = "data.val=[]"


def test_resume_from_a_save_on_the_last_step_of_an_epoch(tmp_path, manifest):
    """3 batches an epoch and a save every 3 steps: last.pt is written on an epoch's last step."""
    common = ("data.samples_per_epoch=12", "train.save_every=3", NO_VAL)
    straight = make_tiny_model()
    Trainer(tiny_config(manifest, tmp_path / "a", "train.train_iters=6", *common), model=straight).fit()

    Trainer(tiny_config(manifest, tmp_path / "b", "train.train_iters=3", *common), model=make_tiny_model()).fit()
    state = load_state(tmp_path / "b" / "last.pt")
    assert (state["step"], state["epoch"], state["epoch_samples"]) == (3, 1, 0)  # the next epoch's start
    resumed = make_tiny_model()
    Trainer(tiny_config(manifest, tmp_path / "b", "train.train_iters=6", *common), model=resumed).fit(resume=True)

    a, b = straight.adapter_state_dict(), resumed.adapter_state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    sa, sb = load_state(tmp_path / "a" / "last.pt"), load_state(tmp_path / "b" / "last.pt")
    assert (sb["step"], sb["epoch"], sb["epoch_samples"]) == (sa["step"], sa["epoch"], sa["epoch_samples"]) == (6, 2, 0)
    assert_same_tensors(sb["optimizer"]["state"], sa["optimizer"]["state"])
    losses = [[r["loss"] for r in read_metrics(tmp_path / run) if r["split"] == "train"] for run in "ab"]
    assert losses[0] == losses[1] and len(losses[0]) == 6


def test_torn_last_metrics_line_is_dropped_on_resume(tmp_path, manifest, caplog):
    run = tmp_path / "run"
    Trainer(tiny_config(manifest, run, "train.train_iters=2", NO_VAL), model=make_tiny_model()).fit()
    with open(run / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write('{"step": 3, "split": "tra')  # killed mid-line
    with caplog.at_level(logging.WARNING, logger="steervit.train.metrics"):
        Trainer(tiny_config(manifest, run, "train.train_iters=3", NO_VAL), model=make_tiny_model()).fit(resume=True)
    assert str(run / METRICS_FILE) in caplog.text and "its last, cut short" in caplog.text
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]
    assert all(line.endswith("}") for line in (run / METRICS_FILE).read_text().splitlines())


def test_bad_metrics_line_in_the_middle_names_file_and_line(tmp_path):
    path = tmp_path / METRICS_FILE
    good = json.dumps({"step": 1, "split": "train", "loss": 1.0})
    text = f"{good}\n{{not json\n{good}\n"
    path.write_text(text)
    message = re.escape(f"{path}, line 2: not a metrics row")
    with pytest.raises(ValueError, match=message):
        read_metrics(tmp_path)
    with pytest.raises(ValueError, match=message):  # resuming: the history is left as it was
        MetricsLog(tmp_path, tensorboard=False, resume_step=1)
    assert path.read_text() == text


def test_resume_rewrites_metrics_atomically(tmp_path):
    """The lines after the resumed step go; the rewrite leaves no temp file and keeps appending."""
    path = tmp_path / METRICS_FILE
    path.write_text("".join(json.dumps({"step": s, "split": "train", "loss": 1.0}) + "\n" for s in (1, 2, 3)))
    metrics = MetricsLog(tmp_path, tensorboard=False, resume_step=2)
    metrics.log(3, "train", {"loss": 0.5})
    metrics.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 1.0), (2, 1.0), (3, 0.5)]
    assert list(tmp_path.glob(".*.tmp")) == []


def _first_checkpoint(tmp_path, manifest) -> tuple[Trainer, bytes]:
    trainer = Trainer(tiny_config(manifest, tmp_path / "run", "train.train_iters=2", NO_VAL),
                      model=make_tiny_model())
    trainer.fit()
    return trainer, (trainer.run_dir / "last.pt").read_bytes()


def test_disk_full_while_saving_names_the_path_and_keeps_last_pt(tmp_path, manifest, monkeypatch):
    trainer, previous = _first_checkpoint(tmp_path, manifest)
    last = trainer.run_dir / "last.pt"

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    trainer.step += 1
    message = re.escape(f"{last}: No space left on device (the previous last.pt is kept")
    with pytest.raises(CheckpointWriteError, match=message):
        trainer.save_checkpoint()
    assert last.read_bytes() == previous and list(trainer.run_dir.glob(".*.tmp")) == []
    assert issubclass(CheckpointWriteError, OSError)  # the CLI prints it as one line
    assert trainer.last_saved_step == 2  # what a later NaN message would name


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file-size limits")
def test_a_write_failing_inside_torch_save_is_the_same_clear_error(tmp_path, manifest):
    """A real failed write (here the file-size limit): given a path, torch.save would raise an opaque
    RuntimeError from its zip writer; the error must still be the one that names the file."""
    import resource

    trainer, previous = _first_checkpoint(tmp_path, manifest)
    last = trainer.run_dir / "last.pt"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write instead of a killed process
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(previous) // 2, hard))
        with pytest.raises(CheckpointWriteError, match=re.escape(f"the training checkpoint {last}")):
            trainer.save_checkpoint()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert last.read_bytes() == previous and list(trainer.run_dir.glob(".*.tmp")) == []


def test_stale_temp_files_are_removed_at_the_next_start(tmp_path, manifest):
    run = tmp_path / "run"
    (run / "best_model").mkdir(parents=True)
    stale = [run / ".last.pt.k2j3h4.tmp", run / ".metrics.jsonl.abc.tmp", run / "best_model" / ".model.safetensors.x.tmp"]
    kept = [run / "notes.tmp", run / ".hidden"]  # not atomic_path's
    for path in (*stale, *kept):
        path.write_bytes(b"partial")
    Trainer(tiny_config(manifest, run, "train.train_iters=1", NO_VAL), model=make_tiny_model()).fit()
    assert [p for p in stale if p.exists()] == [] and all(p.exists() for p in kept)
    assert (run / "last.pt").is_file()
