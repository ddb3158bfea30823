"""The training loop: referential segmentation at patch level, adapter only (reference §4).

    trainer = Trainer(load_config("paper", overrides))   # or Trainer(cfg, model=ready_built_model)
    trainer.fit()                                         # trainer.fit(resume=True) continues last.pt

One step: text states (from the cache, or the frozen encoder live) -> connector -> steered trunk ->
head logits (B, N) -> soft cross-entropy against the mask pooled per patch (or, with
`train.supervision=pointing`, a Gaussian at the box centre). Only the CA layers,
connector and head are in the optimiser (less `seg_head.bias`, see optim.py); the trunk and text
encoder never get gradients. Samples that cannot teach anything (a blank expression, an empty mask)
are dropped and counted by reason; an epoch with no usable sample at all stops the run.

Run folder (`train.out_dir`, written by rank 0 only):
    config.yaml       the resolved run config
    metrics.jsonl     one line per log / validation (see metrics.py); tensorboard/ when installed
    last.pt, best.pt  training checkpoints (see state.py), written atomically; temp files that a
                      killed write left behind are removed when the next run starts here
    best_model/, final_model/   `save_pretrained` exports, loadable with `SteerViT.from_pretrained`

Distributed (torchrun): each rank draws its share of one global sample sequence, the loss is the
mean over the global batch (so K processes of batch b match one of batch K*b), and every metric is
summed over ranks before it is logged.
"""
from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from ..data import AugmentConfig, ReferringSegmentationDataset, SkipCounter, collate, load_mixture
from ..data.dataset import SKIP_REASONS
from ..losses import patch_targets, pointing_targets, probability_mass, soft_cross_entropy
from . import distributed
from .config import check_config, sources, to_model_config
from .metrics import MetricsLog
from .optim import build_optimizer, is_gate
from .schedule import build_scheduler
from .state import capture_rng, load_state, remove_stale_temp_files, restore_rng, save_state
from .text_cache import TextCache

log = logging.getLogger(__name__)

LAST, BEST = "last.pt", "best.pt"
EXPORTS = ("best_model", "final_model")
# Reasons a sample is dropped: the dataset's, plus a blank expression (nothing to encode) and an
# empty mask (a box outside the image, an all-black mask: nothing to point at).
REASONS = (*SKIP_REASONS, "blank_expression", "empty_mask", "unknown")


class NonFiniteLossError(RuntimeError):
    """The loss or gradient became NaN/inf; the run stops before the bad update is applied."""


class NoUsableSampleError(RuntimeError):
    """A whole epoch was skipped: training on would never take a step (or log a meaningless loss 0)."""


class SteeredLogits(nn.Module):
    """The trainable computation as one module, which is what DDP wraps: frozen text states ->
    connector -> steered trunk -> head logits (B, N). Tensor inputs only, so DDP can handle them."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        text = self.model.embed_text_states(states, mask, [""] * states.shape[0])
        return self.model(images, text, return_logits=True)[1]


def build_model(cfg: DictConfig, *, text_encoder: bool = True, text_dim: int | None = None):
    """A fresh SteerViT from `cfg.model`; `text_encoder=False` (with `text_dim`) when text comes cached."""
    from ..checkpoint import sha256_file
    from ..model import SteerViT

    config = to_model_config(cfg)
    config.text_dim = text_dim
    m = cfg.model
    model = SteerViT(config, backbone_weights=m.backbone_weights, pretrained_trunk=m.pretrained_trunk,
                     text_encoder=None if text_encoder else False)
    if m.backbone_weights:
        model.config.trunk_weights_sha256 = sha256_file(m.backbone_weights)
    if m.get("init_adapter"):
        model.load_adapter(resolve_adapter_dir(m.init_adapter))
    return model


def resolve_adapter_dir(name_or_dir: str) -> Path:
    """A saved model folder, or the folder of a bundled model named in the registry."""
    from ..pretrained import bundled_adapter_dir

    path = Path(name_or_dir).expanduser()
    if (path / "config.json").is_file():
        return path
    try:
        return bundled_adapter_dir(str(name_or_dir))
    except FileNotFoundError:
        raise FileNotFoundError(f"model.init_adapter={name_or_dir}: neither a saved model folder (config.json + "
                                "model.safetensors) nor a bundled model name") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Owns the model, optimiser, scheduler, data position and run folder of one training run."""

    def __init__(self, cfg: DictConfig, model=None, *, dist_info: distributed.DistInfo | None = None) -> None:
        check_config(cfg)
        self.cfg = cfg
        self.dist = dist_info or distributed.from_env()
        self.device = distributed.resolve_device(cfg.train.device, self.dist)
        self.bf16 = self._use_bf16(cfg.train.precision)
        self.run_dir = Path(cfg.train.out_dir)
        self.global_batch = cfg.train.batch_size * self.dist.world_size
        seed_everything(cfg.seed)

        self.text_cache = TextCache(cfg.data.text_cache) if cfg.data.text_cache else None
        if model is None:
            model = build_model(cfg, text_encoder=self.text_cache is None,
                                text_dim=self.text_cache.dim if self.text_cache else None)
        self.model = model
        self._check_text_side()
        self.model.to(self.device)
        self.model.grad_checkpointing = bool(cfg.model.grad_checkpointing)
        self.patch_size = self.model.patch_size

        self.optimizer = build_optimizer(self.model, cfg.train.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.train.optim)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.steered = SteeredLogits(self.model)
        self.net: nn.Module = self.steered
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.steered, device_ids=ids, broadcast_buffers=False)

        self.step = 0
        self.epoch = 0
        self.epoch_samples = 0  # global draws of the current epoch already consumed
        self.best_metric = -math.inf
        self.skips = SkipCounter()
        self.last_saved_step: int | None = None
        self._metrics: MetricsLog | None = None
        self._skips_logged = 0.0

    # ------------------------------------------------------------------------- set-up helpers
    def _use_bf16(self, precision: str) -> bool:
        return precision == "bf16" or (precision == "auto" and self.device.type == "cuda")

    def _check_text_side(self) -> None:
        if self.text_cache is None:
            if self.model.text_encoder is None:
                raise ValueError("the model has no text encoder and data.text_cache is not set: "
                                 "build a cache with `steervit cache-text` or load a text encoder")
            return
        if self.text_cache.dim != self.model.config.text_dim:
            raise ValueError(f"the text cache {self.text_cache.directory} holds width {self.text_cache.dim}, "
                             f"the model's connector expects {self.model.config.text_dim}")
        if Path(self.text_cache.text_encoder).name != Path(self.model.config.text_encoder).name:
            log.warning("text cache was made with %s, the model names %s", self.text_cache.text_encoder,
                        self.model.config.text_encoder)

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    # ------------------------------------------------------------------------- one step
    def text_states(self, expressions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen text-encoder states for the batch: read from the cache, or encoded live."""
        source = self.text_cache if self.text_cache is not None else self.model.text_encoder
        states, mask = source.encode(expressions)
        return states.to(self.device, torch.float32, non_blocking=True), mask.to(self.device)

    def _usable(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """The batch's usable images, targets and expressions; the collate's skips and ours counted."""
        self.skips.add(batch.get("skipped", {}))
        keep, targets = self._keep(batch, self.skips)
        if len(keep) == len(batch["expressions"]):  # no copy: the loader's pinned memory stays pinned
            return batch["images"], targets, list(batch["expressions"])
        return batch["images"][keep], targets[keep], [batch["expressions"][i] for i in keep]

    def _keep(self, batch: dict, skips: SkipCounter) -> tuple[list[int], torch.Tensor]:
        """Indices of the samples worth a loss term, and the whole batch's targets.

        Dropped and counted in `skips`: a blank expression (nothing to encode), and an empty mask or
        one that covers no patch: its all-zero target adds no loss, yet would count in the batch mean
        and let a run of nothing but such samples "train" at loss 0."""
        expressions = batch["expressions"]
        if not expressions:
            return [], batch["masks"].new_zeros(0, 0)
        targets = self.targets(batch["masks"])
        blank = [not e.strip() for e in expressions]
        empty = (targets.sum(-1) <= 0).tolist()
        skips.add({"blank_expression": sum(blank),
                   "empty_mask": sum(e and not b for b, e in zip(blank, empty))})
        return [i for i, (b, e) in enumerate(zip(blank, empty)) if not (b or e)], targets

    def _placeholder(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A one-sample batch with an empty mask (zero target, zero loss, zero gradient): keeps a rank
        whose whole batch was skipped in step with the others."""
        size = self.model.image_size
        return (torch.zeros(1, 3, size, size, device=self.device), torch.zeros(1, size, size, device=self.device),
                torch.zeros(1, 1, self.model.config.text_dim, device=self.device),
                torch.ones(1, 1, dtype=torch.bool, device=self.device))

    def targets(self, masks: torch.Tensor) -> torch.Tensor:
        """The soft patch targets of the configured supervision (both are all-zero for an empty mask)."""
        if self.cfg.train.supervision == "pointing":
            return pointing_targets(masks, self.patch_size, sigma=self.cfg.train.pointing_sigma)
        return patch_targets(masks, self.patch_size)

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def train_step(self, batch: dict) -> dict[str, float] | None:
        """One optimiser step on a collated batch; None when every sample of the global batch was skipped."""
        images, targets, expressions = self._usable(batch)
        n_local = len(expressions)
        n_global = int(distributed.sum_floats([n_local], self.device)[0]) if self.dist.enabled else n_local
        if n_global == 0:
            return None
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        if n_local:
            states, text_mask = self.text_states(expressions)
            images, targets = images.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
        else:
            images, masks, states, text_mask = self._placeholder()
            targets = self.targets(masks)
        with self._autocast():
            logits = self.net(images, states, text_mask)
        local_mean = soft_cross_entropy(logits, targets)

        # The global-batch mean, whatever each rank holds: DDP averages gradients over ranks.
        loss_sum = local_mean.detach().double() * n_local
        loss = float(distributed.all_reduce_sum(loss_sum)) / n_global
        if not math.isfinite(loss):
            raise NonFiniteLossError(self._nonfinite_message(f"loss is {loss}"))
        (local_mean * (n_local * self.dist.world_size / n_global)).backward()
        clip = self.cfg.train.optim.grad_clip
        if clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip))
        else:
            grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self.params])))
        if not math.isfinite(grad_norm):
            raise NonFiniteLossError(self._nonfinite_message(f"gradient norm is {grad_norm}"))
        lr = {g["name"]: float(g["lr"]) for g in self.optimizer.param_groups}  # the rates this step used
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {"loss": loss, "images": n_global, "grad_norm": grad_norm, "lr": lr}

    def _nonfinite_message(self, what: str) -> str:
        kept = (f"the last good checkpoint {self.run_dir / LAST} (step {self.last_saved_step}) is kept"
                if self.last_saved_step is not None else "no checkpoint had been written yet")
        return (f"{what} at step {self.step + 1}; stopped before applying the update, {kept}. "
                "Lower train.optim.lr (or check the data) and continue with --resume.")

    # ------------------------------------------------------------------------- data
    def _train_loader(self, records, mixture) -> tuple[DataLoader, Any, int]:
        cfg = self.cfg
        mean, std = self._normalisation()
        dataset = ReferringSegmentationDataset(records, self.model.image_size, train=True, mean=mean, std=std,
                                               augment=self._augment_config(), seed=cfg.seed)
        wanted = cfg.data.samples_per_epoch or len(records)
        per_epoch = max(self.global_batch, wanted // self.global_batch * self.global_batch)
        sampler = mixture.sampler(per_epoch // self.dist.world_size, seed=cfg.seed,
                                  rank=self.dist.rank, world_size=self.dist.world_size)
        loader = DataLoader(dataset, batch_size=cfg.train.batch_size, sampler=sampler, collate_fn=collate,
                            num_workers=cfg.data.num_workers, drop_last=True,
                            pin_memory=self.device.type == "cuda", persistent_workers=False)
        return loader, sampler, per_epoch

    def _val_loader(self, records) -> DataLoader:
        mean, std = self._normalisation()
        limit = self.cfg.eval.max_samples
        chosen = list(range(len(records)))
        if limit is not None and limit < len(records):
            g = torch.Generator().manual_seed(self.cfg.seed)
            chosen = sorted(torch.randperm(len(records), generator=g)[:limit].tolist())
        mine = chosen[self.dist.rank::self.dist.world_size]
        dataset = ReferringSegmentationDataset(records, self.model.image_size, train=False, mean=mean, std=std)
        return DataLoader(dataset, batch_size=self.cfg.eval.batch_size, sampler=mine, collate_fn=collate,
                          num_workers=self.cfg.data.num_workers, pin_memory=self.device.type == "cuda")

    def _augment_config(self) -> AugmentConfig:
        values = {k: tuple(v) if isinstance(v, list) else v
                  for k, v in OmegaConf.to_container(self.cfg.data.augment, resolve=True).items()}
        try:
            return AugmentConfig(**values)
        except TypeError as err:
            raise ValueError(f"data.augment: {err} (fields: {', '.join(AugmentConfig.__dataclass_fields__)})") from err

    def _normalisation(self):
        from timm.data import resolve_data_config

        data_cfg = resolve_data_config({}, model=self.model.trunk)
        return data_cfg["mean"], data_cfg["std"]

    # ------------------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, loader: DataLoader, source_names: list[str]) -> dict[str, float]:
        """Loss and pmass (softmax mass inside the mask) per source and overall, summed over ranks.

        `pmass` is the mean over sources of each source's mean (every dataset counts the same);
        `pmass_all` the mean over all samples."""
        self.steered.eval()
        totals = torch.zeros(len(source_names), 3, dtype=torch.float64, device=self.device)  # pmass, loss, n
        skipped = SkipCounter()
        for batch in loader:
            skipped.add(batch.get("skipped", {}))
            keep, targets = self._keep(batch, skipped)
            if not keep:
                continue
            expressions = [batch["expressions"][i] for i in keep]
            images = batch["images"][keep].to(self.device)
            masks = batch["masks"][keep].to(self.device)
            targets = targets[keep].to(self.device)
            states, text_mask = self.text_states(expressions)
            with self._autocast():
                logits = self.steered(images, states, text_mask).float()
            pmass = probability_mass(logits, masks, self.patch_size).double()  # the mask, whatever the supervision
            for s, name in enumerate(source_names):
                idx = [j for j, i in enumerate(keep) if batch["sources"][i] == name]
                if idx:
                    totals[s, 0] += pmass[idx].sum()
                    totals[s, 1] += float(soft_cross_entropy(logits[idx], targets[idx])) * len(idx)
                    totals[s, 2] += len(idx)
        distributed.all_reduce_sum(totals)
        n_skipped = distributed.sum_floats([skipped.total()], self.device)[0]
        count = float(totals[:, 2].sum())
        if count == 0:
            raise ValueError(f"no usable validation sample ({int(n_skipped)} skipped; see the skipped-sample warnings)")
        result = {"loss": float(totals[:, 1].sum()) / count, "pmass_all": float(totals[:, 0].sum()) / count}
        per_source = {}
        for s, name in enumerate(source_names):
            if totals[s, 2] > 0:
                per_source[name] = float(totals[s, 0] / totals[s, 2])
                result[f"pmass/{name}"] = per_source[name]
        result["pmass"] = sum(per_source.values()) / len(per_source)
        result["samples"] = count
        result["skipped"] = n_skipped
        return result

    # ------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "adapter": {k: v.cpu() for k, v in self.model.adapter_state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "epoch_samples": self.epoch_samples,
            "global_batch": self.global_batch,
            "world_size": self.dist.world_size,
            "best_metric": self.best_metric,
            "skips": dict(self.skips),
            "rng": capture_rng(),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "variant": self._variant(),
        }

    def _variant(self) -> dict[str, Any]:
        """What a resumed run must share with this one: the trainable tensors' layout and the objective."""
        t = self.cfg.train
        return {**self.model.config.variant(), "supervision": t.supervision,
                "pointing_sigma": float(t.pointing_sigma) if t.supervision == "pointing" else None}

    def save_checkpoint(self, name: str = LAST) -> Path | None:
        """Rank 0 writes `<run_dir>/<name>` atomically; other ranks write nothing."""
        if not self.is_main:
            return None
        path = save_state(self.run_dir / name, self.state_dict())
        if name == LAST:
            self.last_saved_step = self.step
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Continue from a training checkpoint: weights, optimiser, schedule, step, data position, RNG."""
        state = load_state(path)
        theirs, ours = state.get("variant"), self._variant()
        if theirs is not None and theirs != ours:
            diff = ", ".join(f"{k}: checkpoint {theirs.get(k)!r}, this run {ours[k]!r}"
                             for k in ours if theirs.get(k) != ours[k])
            raise ValueError(f"{path} is a run of another variant ({diff}); resume it with its own config, "
                             "or start a new train.out_dir")
        if state["global_batch"] != self.global_batch:
            raise ValueError(f"{path} was trained with a global batch of {state['global_batch']}; this run has "
                             f"{self.global_batch} (batch_size x processes): the data position would not carry over")
        self.model.load_adapter_state_dict(state["adapter"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as err:  # e.g. a checkpoint from before seg_head.bias left the optimiser
            raise ValueError(f"{path}: its optimiser state does not fit this run's parameter groups ({err}); "
                             "it was written by another steervit version: start a new train.out_dir, "
                             "with model.init_adapter set to an export of that run") from err
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.epoch_samples = state["step"], state["epoch"], state["epoch_samples"]
        self.best_metric = float(state["best_metric"])
        self.skips = SkipCounter(state.get("skips", {}))
        restore_rng(state["rng"])
        self.last_saved_step = self.step

    def export(self, name: str) -> Path | None:
        """A `save_pretrained` folder of the current adapter (rank 0)."""
        if not self.is_main:
            return None
        self.model.save_pretrained(self.run_dir / name)
        return self.run_dir / name

    # ------------------------------------------------------------------------- the loop
    def fit(self, resume: bool | str | Path = False) -> dict[str, Any]:
        """Train to `train.train_iters`; `resume=True` continues `<out_dir>/last.pt`, a path continues that
        file. Returns the last train and validation metrics."""
        cfg = self.cfg
        if not resume and (self.run_dir / LAST).exists():
            raise FileExistsError(f"{self.run_dir / LAST} exists: continue it with --resume, or choose another "
                                  "train.out_dir")
        train_mix = load_mixture(sources(cfg, "train"))
        val_records = load_mixture(sources(cfg, "val")).records if cfg.data.val else []
        if self.text_cache is not None:
            missing = self.text_cache.missing(r.expression for r in [*train_mix.records, *val_records])
            if missing:
                raise ValueError(f"{len(missing)} expressions of the configured data are not in the text cache "
                                 f"{self.text_cache.directory} (e.g. {missing[:3]}); rebuild it with "
                                 "`steervit cache-text` for this config")
        if resume:
            self.load_checkpoint(self.run_dir / LAST if resume is True else resume)
        loader, sampler, per_epoch = self._train_loader(train_mix.records, train_mix)
        val_loader = self._val_loader(val_records) if val_records else None
        val_sources = sorted({r.source for r in val_records})
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for folder in (self.run_dir, *(self.run_dir / name for name in EXPORTS)):
                remove_stale_temp_files(folder)
            OmegaConf.save(cfg, self.run_dir / "config.yaml", resolve=True)
            self._metrics = MetricsLog(self.run_dir, tensorboard=cfg.train.tensorboard, wandb_cfg=cfg.wandb,
                                       config=OmegaConf.to_container(cfg, resolve=True),
                                       resume_step=self.step if resume else None)
            log.info("training %d adapter tensors (%s parameters) on %s, %d process(es), global batch %d",
                     len(self.params), f"{sum(p.numel() for p in self.params):,}", self.device,
                     self.dist.world_size, self.global_batch)
        try:
            return self._loop(loader, sampler, per_epoch, val_loader, val_sources)
        finally:
            if self._metrics is not None:
                self._metrics.close()
                self._metrics = None

    def _loop(self, loader, sampler, per_epoch, val_loader, val_sources) -> dict[str, Any]:
        from tqdm import tqdm

        cfg = self.cfg.train
        summary: dict[str, Any] = {"train": {}, "val": {}}
        bar = tqdm(total=cfg.train_iters, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not (self.is_main and cfg.progress))
        window = {"loss": 0.0, "images": 0.0, "steps": 0.0}
        started, paused = time.perf_counter(), 0.0  # paused: validation and saving, not training speed
        while self.step < cfg.train_iters:
            self._roll_over_epoch(per_epoch)  # for a checkpoint from before the position rolled over itself
            start, steps_before = self.epoch_samples, self.step
            sampler.set_epoch(self.epoch, start=start // self.dist.world_size)
            finished_epoch = True
            for batch in loader:
                self.epoch_samples += self.global_batch
                self._roll_over_epoch(per_epoch)  # before any save: a checkpoint never sits at an epoch's end
                out = self.train_step(batch)
                if out is None:
                    continue
                window["loss"] += out["loss"]
                window["images"] += out["images"]
                window["steps"] += 1
                bar.update(1)
                last = self.step >= cfg.train_iters
                if self.step % cfg.log_every == 0 or last:
                    elapsed = max(time.perf_counter() - started - paused, 1e-9)
                    summary["train"] = self._log_train(window, elapsed, out)
                    bar.set_postfix(loss=f"{summary['train']['loss']:.4f}", lr=f"{summary['train']['lr']:.2e}",
                                    img_s=f"{summary['train']['images_per_s']:.1f}")
                    window = {"loss": 0.0, "images": 0.0, "steps": 0.0}
                    started, paused = time.perf_counter(), 0.0
                pause_start = time.perf_counter()
                if val_loader is not None and (self.step % cfg.val_every == 0 or last):
                    summary["val"] = self._validate_and_keep_best(val_loader, val_sources)
                if self.step % cfg.save_every == 0 or last:
                    self.save_checkpoint(LAST)
                paused += time.perf_counter() - pause_start
                if last:
                    finished_epoch = False
                    break
            if finished_epoch and start == 0 and self.step == steps_before:
                raise self._no_usable_sample(per_epoch)
        bar.close()
        self.export("final_model")
        distributed.barrier()
        summary["step"] = self.step
        summary["best_pmass"] = self.best_metric
        return summary

    def _roll_over_epoch(self, per_epoch: int) -> None:
        """Once an epoch's draws are all consumed, the data position is the start of the next one."""
        if self.epoch_samples >= per_epoch:
            self.epoch, self.epoch_samples = self.epoch + 1, 0

    def _no_usable_sample(self, per_epoch: int) -> NoUsableSampleError:
        reasons = distributed.sum_floats([self.skips.get(r, 0) for r in REASONS], self.device)
        counts = ", ".join(f"{r}={int(n)}" for r, n in zip(REASONS, reasons) if n) or "none counted"
        return NoUsableSampleError(f"a whole epoch ({per_epoch} samples) gave no usable sample (skipped so far: "
                                   f"{counts}): check the data paths and masks (see the skipped-sample warnings)")

    def _log_train(self, window: dict, elapsed: float, out: dict) -> dict[str, float]:
        reasons = distributed.sum_floats([self.skips.get(r, 0) for r in REASONS], self.device)
        gates = [p.detach().float().tanh().abs().mean() for n, p in self.model.trainable_parameters().items()
                 if is_gate(n)]
        values = {
            "loss": window["loss"] / max(window["steps"], 1),
            "lr": out["lr"].get("cross_attn_and_head", next(iter(out["lr"].values()))),
            "images_per_s": window["images"] / elapsed,
            "grad_norm": out["grad_norm"],
            "gate_abs_tanh": float(torch.stack(gates).mean()) if gates else 0.0,  # how open the gates are
            "epoch": float(self.epoch),
            "skipped": sum(reasons),
            **{f"skipped/{r}": n for r, n in zip(REASONS, reasons) if n},
        }
        if self.cfg.train.optim.gate_lr_mult != 1 and "gates" in out["lr"]:
            values["gate_lr"] = out["lr"]["gates"]
        if self._metrics is not None:
            self._metrics.log(self.step, "train", values)
            if values["skipped"] > self._skips_logged:  # a line only when the count grew
                self._skips_logged = values["skipped"]
                log.info("step %d: %d samples skipped so far (%s)", self.step, values["skipped"],
                         ", ".join(f"{r}={int(n)}" for r, n in zip(REASONS, reasons) if n))
        return values

    def _validate_and_keep_best(self, val_loader, val_sources) -> dict[str, float]:
        values = self.validate(val_loader, val_sources)
        improved = values["pmass"] > self.best_metric
        if improved:
            self.best_metric = values["pmass"]
        values["best_pmass"] = self.best_metric
        if self._metrics is not None:
            self._metrics.log(self.step, "val", values)
            log.info("step %d: val loss %.4f, pmass %.4f%s", self.step, values["loss"], values["pmass"],
                     " (best)" if improved else "")
        if improved:
            self.save_checkpoint(BEST)
            self.export("best_model")
        return values
