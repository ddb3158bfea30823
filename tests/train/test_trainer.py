"""The trainer: what trains and what stays frozen, checkpoints and resume, exports, failures, skips."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from steervit import SteerViT
from steervit.data import BoxMask, PngMask, Record, Skipped, collate, read_manifest, write_manifest
from steervit.losses import patch_targets, soft_cross_entropy
from steervit.train import NonFiniteLossError, NoUsableSampleError, Trainer, read_metrics
from steervit.train.state import load_state
from support import TINY_ROBERTA, make_tiny_model

from .conftest import tiny_config


def adapter(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.adapter_state_dict().items()}


def assert_same_tensors(actual, expected, where: str = "") -> None:
    """Nested dicts/lists of tensors (e.g. an optimiser state) equal bitwise, keys and all."""
    if isinstance(expected, dict):
        assert set(actual) == set(expected), where
        for key in expected:
            assert_same_tensors(actual[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, torch.Tensor):
        assert torch.equal(actual, expected), where
    else:
        assert actual == expected, where


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # bf16: autocast, on the CPU too
def test_only_the_adapter_trains(tmp_path, manifest, precision):
    model = make_tiny_model()
    frozen = {f"trunk.{k}": v.clone() for k, v in model.trunk.state_dict().items()}
    frozen |= {f"text.{k}": v.clone() for k, v in model.text_encoder.state_dict().items()}
    assert "trunk.cls_token" in frozen and "trunk.norm.weight" in frozen and "trunk.blocks.0.norm1.weight" in frozen
    before = adapter(model)
    Trainer(tiny_config(manifest, tmp_path / "run", "train.train_iters=3", f"train.precision={precision}"),
            model=model).fit()

    now = {f"trunk.{k}": v for k, v in model.trunk.state_dict().items()}
    now |= {f"text.{k}": v for k, v in model.text_encoder.state_dict().items()}
    changed_frozen = [k for k in frozen if not torch.equal(frozen[k], now[k])]
    assert changed_frozen == []
    for module in (model.trunk, model.text_encoder):
        for name, p in module.named_parameters():
            assert p.grad is None and not p.requires_grad, name
    after = model.adapter_state_dict()
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    # every CA tensor (norms, gates included), the connector and the head moved; the head's bias
    # is frozen (see test_head_bias_is_saved_but_never_trained)
    assert unchanged == ["seg_head.bias"]
    assert set(before) == set(model.trainable_parameters())
    assert not model.trunk.training and not model.text_encoder.training


def test_run_folder_metrics_and_exports(tmp_path, manifest):
    model = make_tiny_model()
    run = tmp_path / "run"
    summary = Trainer(tiny_config(manifest, run), model=model).fit()
    assert {"config.yaml", "metrics.jsonl", "last.pt", "best.pt", "best_model", "final_model"} <= {
        p.name for p in run.iterdir()}
    rows = read_metrics(run)
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    assert [r["step"] for r in train] == [1, 2, 3, 4] and [r["step"] for r in val] == [2, 4]
    assert {"loss", "lr", "images_per_s", "grad_norm", "skipped"} <= set(train[0])
    assert {"loss", "pmass", "pmass_all", "pmass/alpha", "pmass/beta", "best_pmass"} <= set(val[0])
    assert val[-1]["pmass"] == pytest.approx((val[-1]["pmass/alpha"] + val[-1]["pmass/beta"]) / 2)
    assert 0 < val[-1]["pmass"] < 1 and summary["best_pmass"] == max(r["pmass"] for r in val)
    # warm-up over 2 steps, then cosine: the logged rate is the one each step used
    assert [r["lr"] for r in train[:3]] == pytest.approx([5e-4, 1e-3, 1e-3])

    state = load_state(run / "last.pt")
    assert state["step"] == 4 and {"optimizer", "scheduler", "rng", "adapter", "epoch_samples"} <= set(state)
    best_step = max(val, key=lambda r: r["pmass"])["step"]
    assert load_state(run / "best.pt")["step"] == best_step

    trunk_file = tmp_path / "trunk.safetensors"
    save_file({k: v.contiguous() for k, v in model.trunk.state_dict().items()}, str(trunk_file))
    loaded = SteerViT.from_pretrained(run / "final_model", backbone_weights=trunk_file, text_encoder=TINY_ROBERTA)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    prompts = ["the cat", "a red car on the left"]
    with torch.no_grad():
        expected = model.eval().segmentation_logits(x, prompts)
        torch.testing.assert_close(loaded.segmentation_logits(x, prompts), expected)


def test_head_bias_is_saved_but_never_trained(tmp_path, manifest):
    """Under the softmax over patches a shift of every logit changes nothing: the bias's gradient is
    float noise, which AdamW would turn into lr-sized random steps. It stays bitwise at its value."""
    model = make_tiny_model()
    with torch.no_grad():
        model.seg_head.bias.fill_(0.25)  # a loaded adapter's value, not only the zero init
    before = model.seg_head.bias.detach().clone()
    run = tmp_path / "run"
    trainer = Trainer(tiny_config(manifest, run, "train.train_iters=3", "data.val=[]"), model=model)
    trainer.fit()

    assert torch.equal(model.seg_head.bias.detach(), before)
    assert all(p is not model.seg_head.bias for g in trainer.optimizer.param_groups for p in g["params"])
    assert not torch.equal(model.seg_head.weight.detach(), torch.zeros_like(model.seg_head.weight))  # the head trained
    assert torch.equal(load_state(run / "last.pt")["adapter"]["seg_head.bias"], before)  # still saved
    resumed = make_tiny_model()
    Trainer(tiny_config(manifest, run, "train.train_iters=3", "data.val=[]"), model=resumed).fit(resume=True)
    assert torch.equal(resumed.seg_head.bias.detach(), before)  # ... and loaded


def test_resume_continues_exactly(tmp_path, manifest):
    """Bitwise, with the text encoder live and its prompt cache on: the straight run's cache is warm
    at step 5, the resumed one's cold, and each prompt is encoded alone, so the states are the same."""
    # 3 batches per epoch: the split at step 4 falls mid-epoch, and validation runs on the way.
    common = ("data.samples_per_epoch=12", "train.val_every=3", "train.save_every=4")
    straight = make_tiny_model()
    Trainer(tiny_config(manifest, tmp_path / "a", "train.train_iters=8", *common), model=straight).fit()

    Trainer(tiny_config(manifest, tmp_path / "b", "train.train_iters=4", *common), model=make_tiny_model()).fit()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(tiny_config(manifest, tmp_path / "b", "train.train_iters=8", *common), model=make_tiny_model()).fit()
    resumed = make_tiny_model()
    with torch.no_grad():  # other adapter weights: the checkpoint must replace them
        for p in resumed.trainable_parameters().values():
            p.add_(1.0)
    Trainer(tiny_config(manifest, tmp_path / "b", "train.train_iters=8", *common), model=resumed).fit(resume=True)

    for model in (straight, resumed):  # the live encoder's prompt cache was on and in use
        assert model.text_encoder.cache_size > 0 and len(model.text_encoder._cache) > 0
    a, b = straight.adapter_state_dict(), resumed.adapter_state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    sa, sb = load_state(tmp_path / "a" / "last.pt"), load_state(tmp_path / "b" / "last.pt")
    assert (sb["step"], sb["epoch"], sb["epoch_samples"]) == (sa["step"], sa["epoch"], sa["epoch_samples"]) == (8, 2, 8)
    assert sb["scheduler"]["last_epoch"] == 8
    assert_same_tensors(sb["optimizer"]["state"], sa["optimizer"]["state"])
    rows_a, rows_b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [r["step"] for r in rows_b if r["split"] == "train"] == list(range(1, 9))  # no duplicated lines
    assert [r["loss"] for r in rows_b if r["split"] == "train"] == [r["loss"] for r in rows_a if r["split"] == "train"]
    # the first run ended at step 4 and validated there, the straight one at 3, 6 and 8
    assert [r["step"] for r in rows_b if r["split"] == "val"] == [3, 4, 6, 8]

    with pytest.raises(ValueError, match="global batch"):
        Trainer(tiny_config(manifest, tmp_path / "b", "train.batch_size=2", *common),
                model=make_tiny_model()).fit(resume=tmp_path / "b" / "last.pt")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, manifest):
    model = make_tiny_model()
    trainer = Trainer(tiny_config(manifest, tmp_path / "run", "train.train_iters=6"), model=model)

    def poison(module, inputs, output):  # from the 4th step on, the head outputs NaN
        return output * float("nan") if trainer.step >= 3 else output

    model.seg_head.register_forward_hook(poison)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 4.*last\.pt \(step 2\) is kept"):
        trainer.fit()
    state = load_state(tmp_path / "run" / "last.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["adapter"].values())
    assert all(torch.isfinite(v).all() for v in model.adapter_state_dict().values())  # bad update never applied


def test_skipped_samples_are_counted_not_fatal(tmp_path, manifest):
    records = read_manifest(manifest)
    broken = [
        Record(str(tmp_path / "missing.jpg"), "a ghost", BoxMask((0, 0, 10, 10)), "alpha", split="train"),
        Record(records[0].image, "   ", BoxMask((0, 0, 30, 30)), "alpha", split="train"),
    ]
    path = tmp_path / "broken.jsonl"
    write_manifest([*records, *broken * 6], path)
    run = tmp_path / "run"
    Trainer(tiny_config(path, run, "train.train_iters=6"), model=make_tiny_model()).fit()
    last = [r for r in read_metrics(run) if r["split"] == "train"][-1]
    assert last["skipped/image_missing"] > 0 and last["skipped/blank_expression"] > 0
    assert last["skipped"] == last["skipped/image_missing"] + last["skipped/blank_expression"]
    assert load_state(run / "last.pt")["skips"]["image_missing"] == last["skipped/image_missing"]


def test_bf16_autocast_keeps_fp32_master_weights(tmp_path, manifest):
    model = make_tiny_model()
    summary = Trainer(tiny_config(manifest, tmp_path / "run", "train.precision=bf16", "train.train_iters=2"),
                      model=model).fit()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.isfinite(torch.tensor(summary["train"]["loss"]))


def test_activation_checkpointing_gives_the_same_step(tmp_path, manifest):
    results = []
    for flag in ("false", "true"):
        model = make_tiny_model()
        trainer = Trainer(tiny_config(manifest, tmp_path / flag, f"model.grad_checkpointing={flag}",
                                      "train.train_iters=2"), model=model)
        trainer.fit()
        assert model.grad_checkpointing is (flag == "true")
        results.append(model.adapter_state_dict())
    for key in results[0]:
        torch.testing.assert_close(results[1][key], results[0][key], msg=key)


def test_config_yaml_is_written_resolved(tmp_path, manifest):
    run = tmp_path / "run"
    Trainer(tiny_config(manifest, run, "train.train_iters=1"), model=make_tiny_model()).fit()
    text = (run / "config.yaml").read_text()
    assert str(manifest) in text and "${" not in text
    json.dumps(load_state(run / "last.pt")["config"])  # plain containers only


def test_all_skipped_batches_make_no_step(tmp_path, manifest):
    model = make_tiny_model()
    trainer = Trainer(tiny_config(manifest, tmp_path / "run"), model=model)
    before = adapter(model)
    assert trainer.train_step(collate([Skipped("image_missing", i, 64) for i in range(4)])) is None
    assert trainer.step == 0 and trainer.skips["image_missing"] == 4
    assert all(torch.equal(before[k], v) for k, v in model.adapter_state_dict().items())

    # what a rank with nothing usable feeds DDP so it stays in step: zero loss, zero gradient
    images, masks, states, mask = trainer._placeholder()
    loss = soft_cross_entropy(trainer.net(images, states, mask), patch_targets(masks, model.patch_size))
    loss.backward()
    assert float(loss.detach()) == 0.0 and all(float(p.grad.abs().max()) == 0.0 for p in trainer.params)

    ghosts = [Record(str(tmp_path / f"gone{i}.jpg"), "a ghost", BoxMask((0, 0, 9, 9)), "x", split="train")
              for i in range(8)]
    write_manifest(ghosts, tmp_path / "ghosts.jsonl")
    with pytest.raises(RuntimeError, match="no usable sample"):
        Trainer(tiny_config(tmp_path / "ghosts.jsonl", tmp_path / "ghost-run", "data.val=[]"),
                model=make_tiny_model()).fit()


def test_learns_a_text_conditioned_task(tmp_path):
    """One image, four expressions naming four strips: only the text tells where; the loss must reach
    its floor ln 4 (4 of 16 patches) and pmass ~1; a text-blind model gets at most 0.5 (mass on the corners)."""
    image = tmp_path / "same.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
    boxes = {"top": (0, 0, 64, 16), "bottom": (0, 48, 64, 16), "left": (0, 0, 16, 64), "right": (48, 0, 16, 64)}
    sides = list(boxes)
    records = [Record(str(image), f"the {sides[i % 4]} strip", BoxMask(boxes[sides[i % 4]]), sides[i % 4],
                      split="train" if i < 16 else "val") for i in range(20)]
    write_manifest(records, tmp_path / "strips.jsonl")
    no_augment = "data.augment={flip_p: 0.0, affine_p: 0.0, jitter_p: 0.0, crop_scale: [1.0, 1.0], crop_ratio: [1.0, 1.0]}"
    cfg = tiny_config(tmp_path / "strips.jsonl", tmp_path / "run", no_augment, "train.train_iters=60",
                      "train.val_every=60", "train.log_every=60", "train.optim.lr=3e-3", "train.optim.min_lr=3e-4",
                      "train.optim.decay_iters=60")
    Trainer(cfg, model=make_tiny_model()).fit()
    val = [r for r in read_metrics(tmp_path / "run") if r["split"] == "val"][-1]
    assert val["pmass"] > 0.9 and val["loss"] < 1.6, val
    assert min(val[f"pmass/{side}"] for side in sides) > 0.8, val


def test_init_adapter_starts_from_a_saved_model(tmp_path, manifest):
    """`model.init_adapter` (a second stage, or fine-tuning) loads a saved adapter before step 1."""
    from steervit.train import build_model

    first = tmp_path / "first"
    trainer = Trainer(tiny_config(manifest, first, "train.train_iters=2"))
    trainer.fit()
    saved = adapter(trainer.model)
    fresh = build_model(tiny_config(manifest, tmp_path / "x"))
    assert any(not torch.equal(saved[k], v) for k, v in fresh.adapter_state_dict().items())
    started = build_model(tiny_config(manifest, tmp_path / "y", f"model.init_adapter={first / 'final_model'}"))
    for k, v in started.adapter_state_dict().items():
        torch.testing.assert_close(v, saved[k], rtol=0, atol=0)

    with pytest.raises(FileNotFoundError, match="neither a saved model folder"):
        build_model(tiny_config(manifest, tmp_path / "z", f"model.init_adapter={tmp_path / 'nothing'}"))
    with pytest.raises(ValueError, match="another model variant"):
        build_model(tiny_config(manifest, tmp_path / "w", "model.connector=linear",
                                f"model.init_adapter={first / 'final_model'}"))


def empty_mask_records(root, split: str, n: int) -> list[Record]:
    """Records whose masks are empty: a box wholly outside the image, an all-black PNG."""
    image, black = root / f"plain-{split}.jpg", root / f"black-{split}.png"
    Image.fromarray(np.full((56, 72, 3), 128, dtype=np.uint8)).save(image)
    Image.fromarray(np.zeros((56, 72), dtype=np.uint8)).save(black)
    masks = [BoxMask((500, 500, 20, 20)), PngMask(str(black))]
    return [Record(str(image), f"nothing here {i}", masks[i % 2], "alpha", split=split) for i in range(n)]


def test_empty_masks_are_skipped_and_counted(tmp_path, manifest):
    """An empty mask's all-zero target adds no loss but would count in the batch mean: it is dropped."""
    model = make_tiny_model()
    trainer = Trainer(tiny_config(manifest, tmp_path / "one"), model=model)
    size = model.image_size
    masks = torch.zeros(4, size, size)
    masks[0, :20, :20] = masks[2, 30:, 10:40] = 1
    samples = [{"image": torch.randn(3, size, size), "mask": masks[i], "expression": f"thing {i}",
                "source": "alpha", "index": i} for i in range(4)]
    out = trainer.train_step(collate(samples))
    assert out["images"] == 2 and trainer.skips["empty_mask"] == 2

    # A whole run on a mix: counted in the metrics and the checkpoint, in validation too.
    path = tmp_path / "mixed.jsonl"
    write_manifest([*read_manifest(manifest), *empty_mask_records(tmp_path, "train", 12),
                    *empty_mask_records(tmp_path, "val", 4)], path)
    run = tmp_path / "run"
    Trainer(tiny_config(path, run, "train.train_iters=3", "train.val_every=3"), model=make_tiny_model()).fit()
    rows = read_metrics(run)
    train = [r for r in rows if r["split"] == "train"][-1]
    val = [r for r in rows if r["split"] == "val"][-1]
    assert train["skipped/empty_mask"] > 0 and train["skipped"] == train["skipped/empty_mask"]
    assert load_state(run / "last.pt")["skips"]["empty_mask"] == train["skipped/empty_mask"]
    assert val["skipped"] == 4 and val["samples"] == 8


def test_a_run_of_only_empty_masks_stops_with_a_clear_error(tmp_path):
    write_manifest(empty_mask_records(tmp_path, "train", 8), tmp_path / "empty.jsonl")
    run = tmp_path / "run"
    with pytest.raises(NoUsableSampleError, match=r"no usable sample \(skipped so far: empty_mask=8\)"):
        Trainer(tiny_config(tmp_path / "empty.jsonl", run, "data.val=[]"), model=make_tiny_model()).fit()
    assert not (run / "last.pt").exists() and not (run / "final_model").exists()
