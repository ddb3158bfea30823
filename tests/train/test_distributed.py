"""Two gloo processes under torchrun match one process with the same global batch."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch
from safetensors.torch import load_file

from steervit.train import Trainer, read_metrics
from steervit.train.config import load_config
from support import TINY_ROBERTA


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path, manifest):
    common = [f"data.manifest={manifest}", f"model.text_encoder={TINY_ROBERTA}", "model.cross_attn_heads=4",
              "model.cross_attn_head_dim=16", "train.train_iters=4", "train.val_every=2", "train.save_every=2",
              "train.log_every=1", "train.progress=false", "train.tensorboard=false", "train.optim.warmup_iters=0",
              "data.samples_per_epoch=12"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}",
               "-m", "steervit.train", "--config", "smoke", *common, "train.batch_size=2",
               f"train.out_dir={tmp_path / 'two'}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    Trainer(load_config("smoke", [*common, "train.batch_size=4", f"train.out_dir={tmp_path / 'one'}"])).fit()

    two = load_file(str(tmp_path / "two" / "final_model" / "model.safetensors"))
    one = load_file(str(tmp_path / "one" / "final_model" / "model.safetensors"))
    assert set(two) == set(one)
    moved = [k for k in one if not torch.equal(one[k], torch.zeros_like(one[k]))]
    assert "seg_head.weight" in moved and any("attn_gate" in k for k in moved)  # training really happened
    for key in one:
        if key == "seg_head.bias":  # a softmax over patches ignores it: its gradient is rounding noise, which
            continue                # Adam scales up to full steps; it cannot change any output
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=1e-4, msg=key)

    rows_two, rows_one = read_metrics(tmp_path / "two"), read_metrics(tmp_path / "one")
    assert [(r["split"], r["step"]) for r in rows_two] == [(r["split"], r["step"]) for r in rows_one]  # rank 0 only
    for a, b in zip(rows_one, rows_two):
        for key in ("loss", "pmass", "samples", "images_per_s"):
            if key in a and key != "images_per_s":
                assert abs(a[key] - b[key]) <= 1e-4 * max(1.0, abs(a[key])), (a["split"], a["step"], key)
