"""GPU benchmark at the paper's configuration, as one script: inference, many prompts, training, SDPA.

    bash bench/gpu.sh                    # on a GPU: full size (1-3 min expected on an H200; budget 8)
    bash bench/gpu.sh --small            # anywhere, automatic without CUDA: tiny trunk, 2 rounds, seconds
    bash bench/gpu.sh --json out.json    # also write the results there ($OUT/gpu.json when $OUT is set)

On the lent GPU machine, through the device tool (gpu.sh's header says how to fetch the wheel first):
    run(command="bash bench/gpu.sh", carry=[".device-wheels"], timeout_s=540)

Full size (reference §1, §4, §5 "Cost"): DINOv2 ViT-B/14 (`vit_base_patch14_dinov2`, random weights,
nothing downloaded) at 336 px, cross-attention before blocks 1, 3, ..., 11 with 16 heads x 72, and
RoBERTa-Large-sized text: 1024-d states of 16 tokens (8..16 real, the rest padding), given as
precomputed states through `model.embed_text_states`; the model has no text encoder. Inference runs
in bf16. It measures, side by side in one run (variants take turns round by round, warm-up first,
median of rounds, `torch.cuda.synchronize` around each timed round):

  inference   plain trunk vs steered global features, factorised and SDPA cross-attention, at batch
              16 (the paper's) and 64; ratio steered / plain (paper, A100, text encoder included:
              0.69; goal >= 0.90); peak memory (`torch.cuda.max_memory_allocated`) of each.
  cross       P prompts on B images: one `cross=True` call vs P calls (image-prompt pairs per second).
  training    `Trainer.train_step` at the recipe's shape (batch 12, 336 px) reading a text cache:
              bf16 autocast with factorised or SDPA cross-attention, and fp32 SDPA (the published
              precision); images/s (paper: about 88 per H100, fp32, live RoBERTa-Large). Without
              omegaconf (the device machine has none unless gpu.sh installs the carried wheel) the
              same step is run without the Trainer: text cache, forward with logits, the project's
              loss, backward, clipping, AdamW over the adapter.
  sdpa        which SDPA backends (flash, efficient, cuDNN, math) accept `CrossAttention.forward_direct`
              with its boolean key-padding mask, forward and backward; the attention kernels the
              profiler sees in each path (the factorised path calls no SDPA).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch

from steervit import SteerViT, SteerViTConfig
from steervit.cross_attention import CrossAttention

PAPER = {"steered_over_plain_a100": 0.69, "steered_over_plain_goal": 0.90, "train_img_s_per_h100": 88.0}


@dataclass(frozen=True)
class Setup:
    """What one run measures; FULL is the paper's configuration, SMALL a seconds-long CPU check of the script."""

    trunk: str
    image_size: int
    batches: tuple[int, ...]  # inference batch sizes
    prompts: int  # P for the cross comparison (on the first batch size)
    train_batch: int
    rounds: int
    calls: int  # calls (or training steps) per timed round
    warmup: int
    text_dim: int = 1024  # RoBERTa-Large's width
    text_tokens: int = 16
    cross_attn_heads: int = 16  # reference §1: 16 heads x 72 = 1152, independent of the ViT width
    cross_attn_head_dim: int = 72
    dtype: str = "bfloat16"  # inference weights and inputs


FULL = Setup("vit_base_patch14_dinov2", 336, batches=(16, 64), prompts=8, train_batch=12, rounds=15, calls=5, warmup=3)
# Everything shrunk (fp32: bf16 matrix products are slow on most CPUs); prompts stay shorter than the
# head dim, so the factorised path still runs.
SMALL = Setup("test_vit", 64, batches=(2,), prompts=3, train_batch=2, rounds=2, calls=1, warmup=1, text_dim=64,
              text_tokens=8, cross_attn_heads=4, cross_attn_head_dim=16, dtype="float32")


# ------------------------------------------------------------------------------------ measuring
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_rounds(variants: dict[str, Callable[[], object]], device: torch.device, setup: Setup
               ) -> tuple[dict[str, float], dict[str, float | None]]:
    """Median seconds per call of each variant, and its peak allocated MiB (CUDA only, else None).

    Variants take turns round by round, so clock or load drift hits all of them alike."""
    for fn in variants.values():
        for _ in range(setup.warmup):
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    peaks: dict[str, float | None] = {name: None for name in variants}
    for _ in range(setup.rounds):
        for name, fn in variants.items():
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            for _ in range(setup.calls):
                fn()
            sync(device)
            seconds[name].append((time.perf_counter() - start) / setup.calls)
            if device.type == "cuda":
                peaks[name] = max(peaks[name] or 0.0, torch.cuda.max_memory_allocated(device) / 2**20)
    return {name: statistics.median(s) for name, s in seconds.items()}, peaks


def resident_mib(device: torch.device) -> float | None:
    return torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else None


# ------------------------------------------------------------------------------------ inputs
def text_states(count: int, setup: Setup, device: torch.device, generator: torch.Generator):
    """Random frozen-encoder states (count, L, d_t) and their mask: the first row full, the others
    L/2..L real tokens, padded as the tokenizer pads a batch."""
    length = setup.text_tokens
    lengths = torch.randint(length // 2, length + 1, (count,), generator=generator)
    lengths[0] = length
    mask = torch.arange(length)[None] < lengths[:, None]
    states = torch.randn(count, length, setup.text_dim, generator=generator)
    return states.to(device), mask.to(device)


class RandomTextStates:
    """Stands in for RoBERTa-Large when `build_text_cache` writes the training cache: random 1024-d
    states of 8..16 tokens per expression. The trainer only reads the cache; only the shape matters."""

    name = "roberta-large"
    max_length = 512
    cache_size = 0

    def __init__(self, setup: Setup, seed: int = 0) -> None:
        self.setup = setup
        self.dim = setup.text_dim
        self.generator = torch.Generator().manual_seed(seed)

    def clear_cache(self) -> None:
        pass

    def encode(self, prompts):
        return text_states(len(prompts), self.setup, torch.device("cpu"), self.generator)


def training_batches(count: int, setup: Setup, pin: bool) -> list[dict]:
    """Collated batches as the data loader gives them: images, box masks, distinct expressions."""
    g = torch.Generator().manual_seed(1)
    size, b = setup.image_size, setup.train_batch
    batches = []
    for k in range(count):
        masks = torch.zeros(b, size, size)
        for i in range(b):
            x, y = torch.randint(0, size // 2, (2,), generator=g).tolist()
            masks[i, y:y + size // 3, x:x + size // 3] = 1
        images = torch.randn(b, 3, size, size, generator=g)
        batches.append({"images": images.pin_memory() if pin else images, "masks": masks,
                        "expressions": [f"the object number {k * b + i}" for i in range(b)],
                        "sources": ["bench"] * b, "skipped": {}})
    return batches


# ------------------------------------------------------------------------------------ the model
def build_model(setup: Setup) -> SteerViT:
    """Random trunk (pretrained=False), no text encoder, gates opened (any value works for speed)."""
    config = SteerViTConfig(trunk=setup.trunk, image_size=setup.image_size, text_dim=setup.text_dim,
                            cross_attn_heads=setup.cross_attn_heads, cross_attn_head_dim=setup.cross_attn_head_dim)
    model = SteerViT(config, text_encoder=False, pretrained_trunk=False)
    with torch.no_grad():
        for layer in model.cross_attn_layers.values():
            layer.attn_gate.fill_(0.5)
    return model


def set_factorise(model: SteerViT, on: bool) -> None:
    for layer in model.cross_attn_layers.values():
        layer.cross_attn.factorise = on


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------------------------ inference
@torch.inference_mode()
def bench_inference(model: SteerViT, setup: Setup, device: torch.device) -> tuple[list[dict], dict, dict]:
    g = torch.Generator().manual_seed(0)
    rows, checks = [], {}
    for b in setup.batches:
        images = torch.randn(b, 3, setup.image_size, setup.image_size, generator=g).to(device, model.dtype)
        states, mask = text_states(b, setup, device, g)

        def steered(factorise: bool, images=images, states=states, mask=mask):
            set_factorise(model, factorise)
            return model.get_global_features(images, model.embed_text_states(states, mask, [""] * len(mask)))

        variants = {"plain": lambda images=images: model.trunk.forward_features(images),
                    "steered": lambda: steered(True), "steered_sdpa": lambda: steered(False)}
        seconds, peaks = run_rounds(variants, device, setup)
        rows.append({"batch": b, **{f"{k}_img_s": b / s for k, s in seconds.items()},
                     "steered_over_plain": seconds["plain"] / seconds["steered"],
                     "steered_sdpa_over_plain": seconds["plain"] / seconds["steered_sdpa"],
                     "resident_mib": resident_mib(device), **{f"{k}_peak_mib": v for k, v in peaks.items()}})
        if b == setup.batches[0]:
            checks["factorised_vs_sdpa_rel_err"] = relative_error(steered(True), steered(False))
    set_factorise(model, True)

    b, p = setup.batches[0], setup.prompts
    images = torch.randn(b, 3, setup.image_size, setup.image_size, generator=g).to(device, model.dtype)
    states, mask = text_states(p, setup, device, g)

    def one_call():
        return model.get_global_features(images, model.embed_text_states(states, mask, [""] * p), cross=True)

    def separate_calls():
        return [model.get_global_features(images, model.embed_text_states(
            states[j:j + 1].expand(b, -1, -1), mask[j:j + 1].expand(b, -1), [""] * b)) for j in range(p)]

    seconds, peaks = run_rounds({"one_call": one_call, "separate_calls": separate_calls}, device, setup)
    cross = {"batch": b, "prompts": p, **{f"{k}_pairs_s": b * p / s for k, s in seconds.items()},
             "one_over_separate": seconds["separate_calls"] / seconds["one_call"],
             **{f"{k}_peak_mib": v for k, v in peaks.items()}}
    checks["cross_vs_separate_rel_err"] = relative_error(one_call(), torch.stack(separate_calls(), 1))
    return rows, cross, checks


# ------------------------------------------------------------------------------------ SDPA
ATTENTION_KERNEL = re.compile(r"fmha|flash|attention|attn|sdpa|cudnn|softmax", re.IGNORECASE)


def sdpa_report(model: SteerViT, setup: Setup, device: torch.device) -> dict:
    """Which SDPA backends take the cross-attention with its boolean mask, and what runs by default."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    layer: CrossAttention = next(iter(model.cross_attn_layers.values())).cross_attn
    g = torch.Generator().manual_seed(2)
    b, n = setup.batches[0], model.num_prefix_tokens + (setup.image_size // model.patch_size) ** 2
    x = torch.randn(b, n, model.feature_dim, generator=g).to(device, model.dtype)
    states, mask = text_states(b, setup, device, g)
    with torch.no_grad():
        text = model.embed_text_states(states, mask, [""] * b)

    def direct(backward: bool):
        xx = x.detach().requires_grad_(backward)
        out = layer.forward_direct(xx, text.tokens, text.mask)
        if backward:
            out.float().sum().backward()
        return out

    backends = {}
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                    SDPBackend.MATH):
        entry: dict[str, object] = {}
        for stage in ("forward", "backward"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    with sdpa_kernel([backend]):
                        direct(stage == "backward")
                    sync(device)
                    entry[stage] = True
                except Exception as err:  # a refused backend raises; its warnings say why
                    entry[stage] = False
                    # The warnings name the unmet condition; skip their "... not used because:" headers.
                    reasons = [str(w.message) for w in caught if not str(w.message).rstrip().endswith(":")]
                    reasons = reasons or [str(err).splitlines()[0]]
                    entry.setdefault("why", " | ".join(r.strip() for r in reasons)[:400])
        backends[backend.name.lower()] = entry
    layer.zero_grad(set_to_none=True)

    def factorised():
        with torch.no_grad():
            return layer.forward_factorised(x, text.tokens, text.mask)

    def direct_forward():
        with torch.no_grad():
            return direct(False)

    kernels = {"sdpa_forward": kernel_names(direct_forward, device),
               "sdpa_forward_backward": kernel_names(lambda: direct(True), device),
               "factorised_forward": kernel_names(factorised, device)}
    layer.zero_grad(set_to_none=True)
    default = {k: sdpa_backend(v["sdpa_ops"]) for k, v in kernels.items()}
    return {"backends": backends, "default_backend": default, "kernels": kernels}


def kernel_names(fn: Callable[[], object], device: torch.device, top: int = 6) -> dict[str, list[str]]:
    """What one profiled call ran: the SDPA backend ops dispatched (`aten::_scaled_dot_product_*`), the
    attention-like kernels (GPU kernels on CUDA, aten ops on the CPU), and the `top` ones by self time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    fn()
    sync(device)
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    rows, sdpa_ops = [], []
    for event in prof.key_averages():
        if event.key.startswith("aten::_scaled_dot_product"):
            sdpa_ops.append(event.key)
        if device.type == "cuda":
            if event.device_type != DeviceType.CUDA:
                continue
            spent = getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0)
        else:
            if not event.key.startswith("aten::"):
                continue
            spent = event.self_cpu_time_total
        rows.append((spent, event.key))
    names = [name[:100] for _, name in sorted(rows, reverse=True)]
    return {"sdpa_ops": sorted(sdpa_ops), "attention": [n for n in names if ATTENTION_KERNEL.search(n)],
            "top": names[:top]}


def sdpa_backend(sdpa_ops: list[str]) -> str:
    """The backend SDPA dispatched to, read off its aten op names; `no SDPA` when none ran."""
    text = " ".join(sdpa_ops)
    for backend in ("cudnn", "efficient", "flash", "math"):
        if backend in text:
            return backend + (" (cpu)" if "for_cpu" in text else "")
    return "no SDPA"


# ------------------------------------------------------------------------------------ training
def make_steppers(model: SteerViT, setup: Setup, device: torch.device, cache: Path, run_dir: Path,
                  loop: str) -> tuple[str, dict[str, Callable[[dict], float]]]:
    """One `batch -> loss` function per precision; the real Trainer when omegaconf is importable."""
    if loop == "auto":  # the Trainer's config is an OmegaConf one
        loop = "trainer" if importlib.util.find_spec("omegaconf") else "step"
    steppers = {}
    for precision in ("bf16", "fp32"):
        if loop == "trainer":
            from steervit.train.config import load_config
            from steervit.train.trainer import Trainer

            overrides = [f"train.device={device}", f"train.out_dir={run_dir}", f"train.batch_size={setup.train_batch}",
                         f"train.precision={precision}", f"data.text_cache={cache}", "train.tensorboard=false",
                         "train.progress=false"]
            trainer = Trainer(load_config("paper", overrides), model=model)
            steppers[precision] = lambda batch, trainer=trainer: trainer.train_step(batch)["loss"]
        else:
            steppers[precision] = faithful_step(model, device, cache, bf16=precision == "bf16")
    return ("Trainer.train_step" if loop == "trainer" else "faithful step"), steppers


def faithful_step(model: SteerViT, device: torch.device, cache: Path, bf16: bool) -> Callable[[dict], float]:
    """`Trainer.train_step` without its config: the same calls in the same order (paper recipe's
    optimiser settings), for a machine without omegaconf."""
    from steervit.losses import patch_targets, soft_cross_entropy
    from steervit.train.optim import build_optimizer
    from steervit.train.schedule import build_scheduler
    from steervit.train.text_cache import TextCache

    text_cache = TextCache(cache)
    model.to(device)
    optim_cfg = SimpleNamespace(lr=3e-4, min_lr=3e-5, warmup_iters=5000, decay_iters=40000, weight_decay=0.1,
                                connector_weight_decay=0.01, gate_lr_mult=1.0, betas=(0.9, 0.999), eps=1e-8)
    optimizer = build_optimizer(model, optim_cfg)
    scheduler = build_scheduler(optimizer, optim_cfg)
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def step(batch: dict) -> float:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        states, mask = text_cache.encode(batch["expressions"])
        states, mask = states.to(device, non_blocking=True), mask.to(device)
        images = batch["images"].to(device, non_blocking=True)
        targets = patch_targets(batch["masks"], model.patch_size).to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            text = model.embed_text_states(states, mask, batch["expressions"])
            logits = model(images, text, return_logits=True)[1]
        loss = soft_cross_entropy(logits, targets)
        value = float(loss)  # the Trainer reads the loss (and the norm below) every step, too
        loss.backward()
        if not math.isfinite(float(torch.nn.utils.clip_grad_norm_(params, 1.0))):
            raise RuntimeError("non-finite gradient norm")
        optimizer.step()
        scheduler.step()
        return value

    return step


def bench_training(model: SteerViT, setup: Setup, device: torch.device, loop: str) -> dict:
    from steervit.train.text_cache import build_text_cache

    batches = training_batches(4, setup, pin=device.type == "cuda")
    losses: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = build_text_cache(RandomTextStates(setup), [e for b in batches for e in b["expressions"]],
                                 Path(tmp) / "text-cache", progress=False)
        name, steppers = make_steppers(model, setup, device, cache, Path(tmp) / "run", loop)
        turn = iter(range(10**9))

        def variant(precision: str, factorise: bool):
            def run():
                set_factorise(model, factorise)
                losses.append(steppers[precision](batches[next(turn) % len(batches)]))
            return run

        variants = {"bf16": variant("bf16", True), "bf16_sdpa": variant("bf16", False),
                    "fp32_sdpa": variant("fp32", False)}
        seconds, peaks = run_rounds(variants, device, setup)
    set_factorise(model, True)
    patches = (setup.image_size // model.patch_size) ** 2
    return {"loop": name, "batch": setup.train_batch, "image_size": setup.image_size,
            **{f"{k}_img_s": setup.train_batch / s for k, s in seconds.items()},
            **{f"{k}_steps_s": 1 / s for k, s in seconds.items()},
            **{f"{k}_peak_mib": v for k, v in peaks.items()},
            # Zero-initialised head: every logit is 0 at the first step, so the loss is ln(patches).
            "first_loss": losses[0], "ln_patches": math.log(patches),
            "losses_finite": all(math.isfinite(v) for v in losses)}


# ------------------------------------------------------------------------------------ report
def show(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(result: dict) -> None:
    c, inf, cross, tr, sdpa = result["config"], result["inference"], result["cross"], result["training"], result["sdpa"]
    print(f"\nSteerViT GPU bench ({result['size']}): {c['trunk']} @ {c['image_size']} px, text {c['text_tokens']} x "
          f"{c['text_dim']}, CA before blocks {c['cross_attn_layers']} ({c['cross_attn_heads']} x "
          f"{c['cross_attn_head_dim']}), {result['device_name']}, torch {result['torch']}; "
          f"median of {c['rounds']} rounds x {c['calls']}")
    print(f"inference, {c['dtype']} (img/s | peak MiB)  " + "".join(f"{'batch ' + str(r['batch']):>22}" for r in inf))
    for key, label in (("plain", "plain trunk"), ("steered", "steered, factorised CA"),
                       ("steered_sdpa", "steered, SDPA CA")):
        print(f"  {label:<34}" + "".join(f"{r[key + '_img_s']:>12.1f} | {show(r[key + '_peak_mib'], 0):>7}"
                                         for r in inf))
    print(f"  {'steered / plain, factorised':<34}" + "".join(f"{r['steered_over_plain']:>22.3f}" for r in inf)
          + f"   (paper A100 {PAPER['steered_over_plain_a100']}, goal >= {PAPER['steered_over_plain_goal']})")
    print(f"  {'steered / plain, SDPA':<34}" + "".join(f"{r['steered_sdpa_over_plain']:>22.3f}" for r in inf))
    print(f"cross, {cross['prompts']} prompts x {cross['batch']} images (pairs/s | peak MiB): one call "
          f"{cross['one_call_pairs_s']:.1f} | {show(cross['one_call_peak_mib'], 0)}, {cross['prompts']} calls "
          f"{cross['separate_calls_pairs_s']:.1f} | {show(cross['separate_calls_peak_mib'], 0)}; "
          f"ratio {cross['one_over_separate']:.3f}")
    print(f"training, {tr['loop']}, batch {tr['batch']} @ {tr['image_size']} px, text cache (img/s | peak MiB):")
    for key, label in (("bf16", "bf16 autocast, factorised CA"), ("bf16_sdpa", "bf16 autocast, SDPA CA"),
                       ("fp32_sdpa", "fp32, SDPA CA")):
        print(f"  {label:<34}{tr[key + '_img_s']:>12.1f} | {show(tr[key + '_peak_mib'], 0):>7}")
    print(f"  (paper: about {PAPER['train_img_s_per_h100']:.0f} img/s per H100, fp32, live RoBERTa-Large); first loss "
          f"{tr['first_loss']:.4f} vs ln(patches) {tr['ln_patches']:.4f}")
    print("SDPA with the boolean mask (forward / backward):")
    for name, entry in sdpa["backends"].items():
        why = f"   {entry['why'][:110]}" if "why" in entry else ""
        print(f"  {name:<20} {'yes' if entry['forward'] else 'no':>4} / {'yes' if entry['backward'] else 'no':<4}{why}")
    for key, kernels in sdpa["kernels"].items():
        print(f"  {key:<22} by default: {sdpa['default_backend'][key]:<12} attention kernels: "
              f"{', '.join(k[:60] for k in kernels['attention'][:3]) or '-'}")
    ch = result["checks"]
    print(f"checks: factorised vs SDPA rel err {ch['factorised_vs_sdpa_rel_err']:.2e}, "
          f"cross vs separate {ch['cross_vs_separate_rel_err']:.2e}; total {result['seconds']:.0f} s")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny trunk, 2 rounds (automatic without CUDA)")
    parser.add_argument("--json", type=Path, help="write the results here (default: $OUT/gpu.json when $OUT is set)")
    parser.add_argument("--loop", choices=("auto", "trainer", "step"), default="auto",
                        help="training: the real Trainer (needs omegaconf), the same step without it, or auto")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    small = args.small or not cuda
    if not cuda and not args.small:
        print("no CUDA device: running the small size", file=sys.stderr)
    setup = SMALL if small else FULL
    if small:
        torch.set_num_threads(1)  # tiny tensors: threads only add synchronisation (badly so on a busy machine)
    device = torch.device("cuda" if cuda else "cpu")
    started = time.perf_counter()
    torch.manual_seed(0)

    model = build_model(setup)
    model = model.eval().to(device, getattr(torch, setup.dtype))
    inference, cross, checks = bench_inference(model, setup, device)
    sdpa = sdpa_report(model, setup, device)
    training = bench_training(model.float(), setup, device, args.loop)  # fp32 weights, as the recipe trains

    result = {
        "size": "small" if small else "full", "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__, "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "config": {**asdict(setup), "cross_attn_layers": model.config.cross_attn_layers,
                   "adapter_parameters": sum(p.numel() for p in model.trainable_parameters().values())},
        "paper": PAPER, "inference": inference, "cross": cross, "training": training, "sdpa": sdpa,
        "checks": checks, "seconds": time.perf_counter() - started,
    }
    print_table(result)
    path = args.json or (Path(os.environ["OUT"]) / "gpu.json" if os.environ.get("OUT") else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
        print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
