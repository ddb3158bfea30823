"""The Hugging Face hub, offline: loading repos from a hub cache (by id, `hf-hub:` name, revision),
the model card `save_pretrained` writes, and what `push_to_hub` would upload (the adapter only)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from support import TINY_ROBERTA, make_tiny_model
from steervit import SteerViT
from steervit.checkpoint import CheckpointError
from steervit.hub import MODEL_FILES, hub_repo_id, model_card
from steervit.pretrained import BUNDLED_DIR, DEFAULT_MODEL, REGISTRY

REPO = "org/steer-tiny"
FIRST, SECOND = "a" * 40, "b" * 40


def add_to_hub_cache(cache: Path, repo_id: str, commit: str, folder: Path, branch: str | None = "main") -> Path:
    """Put a saved folder into a hub cache as `snapshot_download` leaves it: the file contents as
    blobs named by their sha256, the snapshot's files as links to them, a branch ref naming the commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name in MODEL_FILES:
        data = (folder / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    if branch is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / branch).write_text(commit)
    return snapshot


@pytest.fixture(scope="module")
def tiny_trunk(tmp_path_factory):
    """A local file for the tiny trunk (`test_vit`), which timm would otherwise download."""
    path = tmp_path_factory.mktemp("trunk") / "trunk.safetensors"
    save_file(make_tiny_model().trunk.state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """A hub cache holding REPO at two commits with different weights; `main` points at the second."""
    root = tmp_path_factory.mktemp("hub")
    models = {FIRST: make_tiny_model(seed=1), SECOND: make_tiny_model(seed=2)}
    for commit, model in models.items():
        model.save_pretrained(root / commit)
        add_to_hub_cache(root / "cache", REPO, commit, root / commit, branch="main" if commit == SECOND else None)
    return root / "cache", {c: m.adapter_state_dict() for c, m in models.items()}


@pytest.fixture()
def load(tiny_trunk):
    def load(name, **kwargs):
        return SteerViT.from_pretrained(name, backbone_weights=tiny_trunk, text_encoder=TINY_ROBERTA, **kwargs)

    return load


def assert_same_adapter(model, expected):
    state = model.adapter_state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(state[key], value), key  # saved and read back as the same fp32 bytes


def test_names_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "model").mkdir()
    assert hub_repo_id("runs/model") is None  # an existing local path wins over the org/repo form
    assert hub_repo_id(Path("org/repo")) is None  # a Path is always local
    assert hub_repo_id(DEFAULT_MODEL) is None and hub_repo_id("steervit_dinov2_base") is None  # registered
    assert hub_repo_id("steervit_dinov2_base.pth") is None  # a published file name
    assert hub_repo_id("org/weights.pth") is None  # a (missing) checkpoint file, not a repo
    assert hub_repo_id("org/repo") == "org/repo"
    assert hub_repo_id("hf-hub:org/repo") == "org/repo" and hub_repo_id("hf-hub:solo") == "solo"
    with pytest.raises(ValueError, match="hf-hub:org/repo"):
        hub_repo_id("hf-hub:not a repo")


def test_load_by_repo_id_and_hf_hub_name_follows_main(hub_cache, load):
    cache, saved = hub_cache
    for name in (REPO, f"hf-hub:{REPO}"):
        assert_same_adapter(load(name, cache_dir=cache), saved[SECOND])


def test_revision_picks_the_commit(hub_cache, load):
    cache, saved = hub_cache
    first = load(REPO, cache_dir=cache, revision=FIRST)
    assert_same_adapter(first, saved[FIRST])
    assert not torch.equal(saved[FIRST]["seg_head.weight"], saved[SECOND]["seg_head.weight"])  # really two models
    assert_same_adapter(load(REPO, cache_dir=cache, revision=SECOND), saved[SECOND])


def test_repo_not_in_cache_gives_one_clear_line(hub_cache, load):
    cache, _ = hub_cache
    with pytest.raises(FileNotFoundError) as err:
        load("org/not-cached", cache_dir=cache, local_files_only=True)
    message = str(err.value)
    assert "\n" not in message
    assert "org/not-cached" in message and str(cache) in message and "local_files_only=True" in message
    assert "run once online" in message and "local folder" in message
    with pytest.raises(FileNotFoundError, match=r"HF_HUB_OFFLINE=1.*run once online"):  # conftest sets it
        load(REPO, cache_dir=cache, revision="c" * 40)  # a commit that is not cached


def test_altered_weights_in_the_cache_are_refused(load, tmp_path):
    """The weights sha256 recorded in config.json is checked for hub downloads as for local folders."""
    model = make_tiny_model(seed=3)
    model.save_pretrained(tmp_path / "saved")
    snapshot = add_to_hub_cache(tmp_path / "cache", "org/altered", FIRST, tmp_path / "saved")
    weights = snapshot / "model.safetensors"
    with torch.no_grad():
        model.seg_head.weight.add_(1.0)
    altered = tmp_path / "altered.safetensors"
    save_file({k: v.contiguous() for k, v in model.adapter_state_dict().items()}, str(altered))
    weights.resolve().write_bytes(altered.read_bytes())
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        load("org/altered", cache_dir=tmp_path / "cache")


def test_model_card_metadata(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m", model_card_kwargs={
        "license": "apache-2.0", "metrics": {"pmass": 0.61}, "dataset": "JonaRuthardt/CORE"})
    assert sorted(os.listdir(tmp_path / "m")) == sorted(MODEL_FILES)
    text = (tmp_path / "m" / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "steervit"
    assert {"steervit", "vision", "referring-segmentation"} <= set(meta["tags"])
    assert meta["metrics"] == ["pmass"] and meta["datasets"] == ["JonaRuthardt/CORE"]
    result = meta["model-index"][0]["results"][0]
    assert result["metrics"] == [{"type": "pmass", "value": 0.61}]
    # The tiny trunk names no pretrained weights and its text encoder is a local folder: no base model.
    assert "base_model" not in meta
    # A local text-encoder folder appears by its name only: a pushed card must not publish local paths.
    assert str(TINY_ROBERTA.parent) not in text and f"`{TINY_ROBERTA.name}`" in text
    assert not list((tmp_path / "m").glob(".*.tmp"))  # written through atomic_path, nothing left over


def test_model_card_names_the_trunk_and_text_encoder_on_the_hub(tiny_model):
    tiny_model.config.trunk = "vit_small_patch14_dinov2.lvd142m"  # the card only reads the names
    tiny_model.config.text_encoder = "FacebookAI/roberta-large"
    meta = model_card(tiny_model).data.to_dict()
    assert meta["base_model"] == ["timm/vit_small_patch14_dinov2.lvd142m", "FacebookAI/roberta-large"]
    assert meta["license"] == "unknown"  # never guessed
    tiny_model.config.trunk = "vit_small_patch14_dinov2"  # an architecture alone: which weights is unknown
    assert model_card(tiny_model).data.to_dict()["base_model"] == ["FacebookAI/roberta-large"]
    with pytest.raises(ValueError, match="dataset"):
        model_card(tiny_model, metrics={"pmass": 0.5})


def test_push_to_hub_uploads_only_what_save_pretrained_writes(tiny_model, monkeypatch):
    from types import SimpleNamespace

    from huggingface_hub import HfApi

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = repo_id
        return SimpleNamespace(repo_id=repo_id)  # push_to_hub reads only this of the RepoUrl

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        calls["upload"] = {"repo_id": repo_id, "revision": kwargs.get("revision"),
                           "files": sorted(str(p.relative_to(folder)) for p in folder.rglob("*")),
                           "tensors": load_file(str(folder / "model.safetensors"))}
        return "https://huggingface.co/commit"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    tiny_model.push_to_hub("org/pushed", branch="dev")
    upload = calls["upload"]
    assert calls["create_repo"] == "org/pushed" and upload["repo_id"] == "org/pushed" and upload["revision"] == "dev"
    assert upload["files"] == sorted(MODEL_FILES)
    # The adapter, all of it, and nothing of the frozen trunk or text encoder.
    assert upload["tensors"].keys() == tiny_model.adapter_state_dict().keys()
    assert not any(k.startswith(("trunk.", "text_encoder.")) for k in upload["tensors"])
    with pytest.raises(ValueError, match="config"):
        tiny_model.push_to_hub("org/pushed", config={"hidden": 1})


def test_registry_pins_are_known_or_unknown_never_guessed():
    bundled = REGISTRY[DEFAULT_MODEL]
    weights = BUNDLED_DIR / DEFAULT_MODEL / "model.safetensors"
    assert bundled.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    import json

    assert json.loads((weights.parent / "config.json").read_text())["weights_sha256"] == bundled.sha256
    published = REGISTRY["steervit_dinov2_base"]
    assert published.revision is None and published.shown_revision == "unknown"


def test_pinned_sha256_is_checked_on_download(tmp_path, monkeypatch):
    """A registered published file whose bytes are not the pinned ones is refused before it is read."""
    import dataclasses

    import huggingface_hub

    import steervit.pretrained as pretrained

    fake = tmp_path / "steervit_dinov2_base.pth"
    fake.write_bytes(b"not the published file")
    asked = {}

    def hf_hub_download(repo_id, filename, **kwargs):
        asked.update(repo_id=repo_id, filename=filename, revision=kwargs["revision"])
        return str(fake)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    entry = dataclasses.replace(REGISTRY["steervit_dinov2_base"], revision=FIRST, sha256="0" * 64)
    monkeypatch.setitem(pretrained.REGISTRY, entry.name, entry)
    with pytest.raises(CheckpointError, match="not the pinned"):
        SteerViT.from_pretrained(entry.name)
    assert asked == {"repo_id": "JonaRuthardt/SteerViT", "filename": "steervit_dinov2_base.pth", "revision": FIRST}


def test_models_command_shows_pins(capsys):
    from steervit.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"sha256:   {REGISTRY[DEFAULT_MODEL].sha256}" in out
    assert "revision: unknown" in out and "sha256:   unknown" in out
