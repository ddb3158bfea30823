"""Ablation variants through the trainer, pointing supervision, resume refusal, and `steervit ablate`."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from evaluation.conftest import make_core_folder, make_image_folder, make_pods
from steervit.ablate import VARIANTS, load_trained, parse_evals, parse_variants, variant_config
from steervit.cli import main
from steervit.losses import patch_targets, pointing_targets
from steervit.train import Trainer, build_model
from steervit.train.config import check_config, load_config, to_model_config
from support import TINY_ROBERTA, make_tiny_model
from train.conftest import make_manifest

FEW_STEPS = ["train.batch_size=4", "train.train_iters=2", "train.log_every=1", "train.val_every=2",
             "train.save_every=2", "train.progress=false", "train.tensorboard=false", "eval.max_samples=4",
             "train.optim.warmup_iters=1", "train.optim.decay_iters=4"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models are far faster on one thread, and do not fight other work on the machine for cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_manifest(tmp_path_factory.mktemp("data"), n_train=8, n_val=4)


def overrides(manifest) -> list[str]:
    """The smoke preset on the tiny data with the tiny RoBERTa: what every config-built run here uses."""
    return [f"data.manifest={manifest}", f"model.text_encoder={TINY_ROBERTA}", "model.pretrained_trunk=false",
            "model.trunk=test_vit", *FEW_STEPS]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_builds_from_the_training_config_and_trains(name, manifest, tmp_path):
    cfg = variant_config("smoke", name, overrides(manifest), tmp_path)
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.model.adapter_state_dict().items()}
    summary = trainer.fit()
    assert summary["step"] == 2
    moved = [k for k, v in trainer.model.adapter_state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("connector") for k in moved) and any(k.startswith("cross_attn_layers") for k in moved)

    saved = json.loads((tmp_path / name / "final_model" / "config.json").read_text())["config"]
    model = trainer.model.config
    assert {k: saved[k] for k in ("fusion", "gate", "connector", "use_ffn", "cross_attn_layers")} == {
        "fusion": model.fusion, "gate": model.gate, "connector": model.connector, "use_ffn": model.use_ffn,
        "cross_attn_layers": model.cross_attn_layers}
    expected = {"late": ("fusion", "late"), "no-gate": ("gate", "none"), "linear": ("connector", "linear"),
                "ffn": ("use_ffn", True), "early-only": ("cross_attn_layers", [0, 1, 2]),
                "late-only": ("cross_attn_layers", [3, 4, 5])}
    if name in expected:
        key, value = expected[name]
        assert saved[key] == value
    assert trainer.cfg.train.supervision == ("pointing" if name == "pointing" else "segmentation")

    # What the study evaluates: the run's model rebuilt from its config (the same random trunk) + final_model.
    loaded = load_trained(cfg)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded.segmentation_logits(x, ["the cat", "a red car"]),
                                   trainer.model.eval().segmentation_logits(x, ["the cat", "a red car"]))


def test_pointing_targets_peak_at_the_box_centre_and_change_the_loss(manifest, tmp_path):
    masks = torch.zeros(2, 64, 64)
    masks[0, 8:40, 16:32] = 1  # box centre (24, 24) px: the centre of patch (1, 1) of the 4x4 grid
    masks[1, 48:64, 0:64] = 1  # a wide box along the bottom row
    targets = pointing_targets(masks, 16, sigma=1.1)
    assert targets.sum(1) == pytest.approx(torch.ones(2))
    assert int(targets[0].argmax()) == 1 * 4 + 1
    assert targets[0].view(4, 4)[1, 1] > targets[0].view(4, 4)[1, 2] > targets[0].view(4, 4)[3, 3]
    assert set(targets[1].view(4, 4).argmax(0).tolist()) == {3}
    assert not torch.allclose(targets, patch_targets(masks, 16))

    batch = {"images": torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)), "masks": masks,
             "expressions": ["the cat", "the floor"], "sources": ["a", "a"]}
    losses = {}
    for supervision in ("segmentation", "pointing"):
        cfg = variant_config("smoke", "steervit", [*overrides(manifest), f"train.supervision={supervision}"],
                             tmp_path)
        trainer = Trainer(cfg, model=make_tiny_model())
        assert torch.allclose(trainer.targets(masks),
                              targets if supervision == "pointing" else patch_targets(masks, 16))
        losses[supervision] = trainer.train_step(dict(batch))["loss"]
    assert losses["pointing"] != pytest.approx(losses["segmentation"])


def test_resuming_or_loading_another_variant_is_refused(manifest, tmp_path):
    cfg = variant_config("smoke", "steervit", overrides(manifest), tmp_path)
    Trainer(cfg, model=make_tiny_model()).fit()
    run = tmp_path / "steervit"
    for other, model in (("no-gate", make_tiny_model(gate="none")), ("pointing", make_tiny_model())):
        other_cfg = variant_config("smoke", other, overrides(manifest), tmp_path)
        other_cfg.train.out_dir = str(run)
        with pytest.raises(ValueError, match="another variant.*(gate|supervision)"):
            Trainer(other_cfg, model=model).fit(resume=True)
    with pytest.raises(ValueError, match="another model variant"):
        build_model(variant_config("smoke", "linear", overrides(manifest), tmp_path)).load_adapter(
            run / "final_model")


def test_config_accepts_layer_lists_and_presets_and_rejects_bad_variants(manifest, tmp_path):
    assert to_model_config(load_config("smoke", ["model.cross_attn_layers=[0,2]"])).cross_attn_layers == [0, 2]
    assert to_model_config(load_config("smoke", ["model.cross_attn_layers=middle"])).cross_attn_layers == "middle"
    for bad, message in (("model.cross_attn_layers=first", "preset must be one of"),
                         ("model.cross_attn_layers=3", "list of block indices or a preset"),
                         ("model.gate=relu", "gate must be one of"), ("model.fusion=mid", "fusion must be one of"),
                         ("train.supervision=boxes", "segmentation or pointing"),
                         ("train.pointing_sigma=0", "pointing_sigma must be > 0")):
        with pytest.raises(ValueError, match=message):
            check_config(load_config("smoke", [*overrides(manifest), bad]))


def test_variant_names_and_eval_specs(tmp_path):
    assert parse_variants("early, late,no-gate,steervit") == ["steervit", "late", "no-gate"]
    with pytest.raises(ValueError, match="unknown variant 'lat'"):
        parse_variants("lat")
    assert parse_evals([f"core={tmp_path}"]) == {"core": str(tmp_path.resolve())}
    with pytest.raises(ValueError, match="not one of"):
        parse_evals([f"mosaic={tmp_path}"])
    with pytest.raises(FileNotFoundError):
        parse_evals([f"core={tmp_path / 'missing'}"])


def test_ablate_command_writes_the_table_and_reuses_finished_runs(manifest, tmp_path, capsys):
    core = make_core_folder(tmp_path / "core")
    pods = make_pods(tmp_path / "pods")
    fgcls = make_image_folder(tmp_path / "fgcls" / "imagewoof")
    out = tmp_path / "study"
    argv = ["ablate", "--config", "smoke", "--variants", "steervit,no-gate,pointing", "--out", str(out),
            "--eval", f"core={core}", "--eval", f"pods={pods}", "--eval", f"fgcls={fgcls.parent}",
            "--gates", "0,1", "--device", "cpu", *overrides(manifest)]
    assert main(argv) == 0
    table = json.loads((out / "ablation.json").read_text())
    assert [r["variant"] for r in table["rows"]] == ["steervit", "no-gate", "pointing"]
    for row in table["rows"]:
        assert row["steps"] == 2 and all(0 <= row[b] <= 100 for b in ("fgcls", "core", "pods"))
        assert (out / row["variant"] / "gate_sweep.png").is_file()
        assert [r["gate_factor"] for r in row["details"]["sweep"]] == [0.0, 1.0]
    assert table["rows"][0]["paper"] == {"fgcls": 87.7, "core": 96.0, "pods": 58.1}
    assert table["rows"][1]["overrides"] == ["model.gate=none"]
    markdown = (out / "ablation.md").read_text()
    assert "| variant | change | FG-CLS | CORE | PODS | paper FG-CLS | paper CORE | paper PODS |" in markdown
    assert "| pointing | train.supervision=pointing |" in markdown and "| 80.4 | 95.2 | 45.7 |" in markdown

    # Second call: finished runs and their evaluations are reused; a run without its export is continued.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/last.pt")}
    shutil.rmtree(out / "no-gate" / "final_model")
    capsys.readouterr()
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert said.count("reused run and evaluation") == 2 and "no-gate: continued" in said
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/last.pt")} == stamps
    assert json.loads((out / "ablation.json").read_text())["rows"] == table["rows"]
    # Another budget in the same folder is refused, not mixed in.
    assert main([*argv, "train.train_iters=3"]) == 2
    assert "other settings (train.train_iters)" in capsys.readouterr().err
    # --pods-prompts limits PODS to some prompt kinds: training is reused, the evaluation redone.
    assert main([*argv, "--variants", "steervit", "--pods-prompts", "name"]) == 0
    said = capsys.readouterr().out
    assert "steervit: reused (" in said and "reused run and evaluation" not in said
    pods = json.loads((out / "ablation.json").read_text())["rows"][0]["details"]["pods"]
    assert pods["granularity"] == "name" and set(pods["granularities"]) == {"name"}
    assert main([*argv, "--pods-prompts", "colour"]) == 2
    assert "not available" in capsys.readouterr().err
