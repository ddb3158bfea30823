"""Feature extraction under torchrun: 2 gloo processes on the CPU give exactly the 1-process result.

The ranks are forked processes given the environment torchrun gives its processes (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT), which is all `distributed.setup` reads, so this is the code
path of `torchrun --nproc_per_node 2 -m steervit embed ...` without three fresh interpreters.

Exact equality holds because the same operations run on the same batches: both runs cut the images
into the same fixed runs of `--batch-size` and each rank takes whole runs (see cmd_embed and
evaluation.features._encode), and every process runs single-threaded (OMP_NUM_THREADS=1), so no
reduction is split differently between runs.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from steervit.cli import main
from steervit.evaluation.features import ImageRef, index_path, load_embeddings, shard_path
from support import TINY_ROBERTA, make_tiny_model

PROMPT = "the bright square"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_images(folder: Path, count: int) -> list[Path]:
    """`count` small PNGs of different sizes, each with a bright square somewhere else."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        h, w = 48 + 7 * i, 80 - 5 * i
        pixels = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
        pixels[i * 3:i * 3 + 16, 20:36] = 250
        paths.append(folder / f"img{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> list[str]:
    """A tiny random model saved as `--model` folder + trunk weights: the command-line options to load it."""
    folder = tmp_path_factory.mktemp("model")
    model = make_tiny_model()
    model.save_pretrained(folder / "tiny")
    save_file({k: v.contiguous() for k, v in model.trunk.state_dict().items()}, str(folder / "trunk.safetensors"))
    return ["--model", str(folder / "tiny"), "--backbone-weights", str(folder / "trunk.safetensors"),
            "--text-encoder", str(TINY_ROBERTA), "--device", "cpu"]


@contextlib.contextmanager
def single_threaded():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def start_ranks(fn, *args) -> None:
    """`fn(rank, world_size, port, *args)` in 2 processes, forked: they start with this process's
    imports (seconds saved over fresh interpreters) and run single-threaded."""
    import torch.multiprocessing as mp

    mp.start_processes(fn, args=(2, free_port(), *args), nprocs=2, join=True, start_method="fork")


def _embed_rank(rank: int, world_size: int, port: int, argv: list[str], logs: str) -> None:
    """One rank of `torchrun --nproc_per_node 2 -m steervit embed ...`: the environment torchrun gives
    its processes, then the command, with its output and exit code kept in `logs`."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    logs = Path(logs)
    with open(logs / f"rank{rank}.out", "w") as out, open(logs / f"rank{rank}.err", "w") as err, \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    (logs / f"rank{rank}.code").write_text(str(code))


def test_torchrun_embed_shards_read_back_as_the_one_process_file(tmp_path, capsys, saved_model):
    write_images(tmp_path / "in", 7)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")  # named and skipped by both runs
    embed = ["embed", str(tmp_path / "in"), "--prompt", PROMPT, "--dense", "--batch-size", "2", *saved_model]
    one_out, two_out = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    with single_threaded():
        assert main([*embed, "--out", str(one_out)]) == 1  # 1: done, one input skipped
    assert "7 of 8 images done, 1 skipped" in capsys.readouterr().err
    logs = tmp_path / "logs"
    logs.mkdir()
    start_ranks(_embed_rank, [*embed, "--out", str(two_out)], str(logs))
    codes = [int((logs / f"rank{r}.code").read_text()) for r in range(2)]
    err = [(logs / f"rank{r}.err").read_text() for r in range(2)]
    two_stdout = "".join((logs / f"rank{r}.out").read_text() for r in range(2))
    assert codes == [1, 1], err  # every rank exits as one process would
    assert "7 of 8 images done, 1 skipped" in err[0] and "images done" not in err[1]  # rank 0 sums up for all
    assert err[0].count("broken.png") == 1 and "broken.png" not in err[1]  # each skip is named once

    # 7 images in runs of 2: rank 0 takes runs 0-1 (4 images), rank 1 runs 2-3 (3 images)
    assert not two_out.exists()
    index = json.loads(index_path(two_out).read_text())
    assert [(s["file"], s["images"]) for s in index["shards"]] == [
        (shard_path(two_out, 0, 2).name, 4), (shard_path(two_out, 1, 2).name, 3)]
    assert str(index_path(two_out)) in two_stdout and str(shard_path(two_out, 1, 2)) in two_stdout

    one, two = load_embeddings(one_out), load_embeddings(two_out)
    assert two.paths == one.paths == [f"img{i}.png" for i in range(7)]
    assert two.meta == one.meta and one.meta["prompt"] == PROMPT
    assert one.global_features.shape[0] == 7 and one.dense_features.shape[0] == 7
    assert torch.equal(two.global_features, one.global_features)
    assert torch.equal(two.dense_features, one.dense_features)
    assert torch.equal(load_embeddings(index_path(two_out)).global_features, one.global_features)


def _sharded_feature_pass(rank: int, world_size: int, port: int, folder: str) -> None:
    """One rank of the evaluation feature passes, inside `sharded_over_ranks`; saves what it got."""
    import torch.distributed as dist

    from steervit.evaluation.features import dense_features, global_features, paired_global_features, \
        sharded_over_ranks, square_transform

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        result = _feature_passes(make_tiny_model(), folder, global_features, paired_global_features,
                                 dense_features, square_transform, sharded_over_ranks)
        torch.save(result, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _feature_passes(model, folder, global_features, paired_global_features, dense_features, square_transform,
                    context) -> dict[str, torch.Tensor]:
    refs = [ImageRef.file(p) for p in sorted(Path(folder, "in").glob("*.png"))]
    prompts = ["the square", "the dark background"]
    with torch.no_grad(), context():
        return {"global": global_features(model, refs, prompts, batch_size=2),
                "plain": global_features(model, refs, None, batch_size=2),
                "paired": paired_global_features(model, refs, [prompts[i % 2] for i in range(len(refs))],
                                                 batch_size=2),
                "dense": dense_features(model, refs, PROMPT, square_transform(model), batch_size=2)}


def test_evaluation_feature_passes_shard_over_two_gloo_ranks(tmp_path):
    from steervit.evaluation.features import dense_features, global_features, paired_global_features, \
        square_transform

    write_images(tmp_path / "in", 5)  # 3 batches of 2: rank 0 takes one, rank 1 two (one of them short)
    start_ranks(_sharded_feature_pass, str(tmp_path))
    with single_threaded():  # as the ranks: the same operations, split the same way
        expected = _feature_passes(make_tiny_model(), str(tmp_path), global_features, paired_global_features,
                                   dense_features, square_transform, contextlib.nullcontext)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["global"].shape == (5, 2, expected["global"].shape[-1])
        for name in expected:
            assert torch.equal(got[name], expected[name]), (rank, name)
