"""The web app under load: latency per request at 1 and N concurrent clients, and throughput,
with request batching on and off, side by side.

    .venv/bin/python bench/server.py [--model NAME_OR_DIR | --tiny] [--clients 1 4 8] [--requests 16]
        [--rounds 3] [--endpoint steer|search] [--max-batch 8] [--wait-ms 3] [--json]

Two copies of the real app (`serve.app.create_app`, one with `BatchSettings`, one without) share
the model and the gallery and run under uvicorn on loopback ports; they take turns, never both at
once. At each client count, that many client threads send `--requests` requests in all, each
waiting for its answer before sending the next (distinct uploaded images and one prompt each, as
the page does). Reported: median and 90th-percentile latency (and the app's own `seconds`, from
reading the form to the answer), requests/s, the batches the batched
app formed, and the ratios batched / unbatched; numbers are medians over the rounds.
Model: the bundled default (`steervit_s14_minilm_offline`); `--tiny` uses the golden tiny checkpoint
of tests/golden (for a quick check that the bench runs).
"""
from __future__ import annotations

import argparse
import io
import json
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden"
PROMPTS = ["the bright square", "the dark background", "a gradient from left to right", "the top left corner",
           "the red object", "something round", "the brightest part", "the centre of the picture"]


def load_model(args: argparse.Namespace):
    from steervit import SteerViT

    if args.tiny:
        return SteerViT.from_pretrained(GOLDEN / "official-tiny" / "steervit_official.pth",
                                        backbone_weights=GOLDEN / "official-tiny" / "trunk.safetensors",
                                        text_encoder=GOLDEN / "tiny-roberta")
    return SteerViT.from_pretrained(args.model)


def png(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    """A photo-sized upload with structure (a gradient and a bright square), different per seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], -1).astype(np.uint8)
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    rgb[y0:y0 + h // 3, x0:x0 + w // 3] = rng.integers(150, 256, 3)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


class LiveServer:
    """An app under uvicorn in a thread on a free loopback port."""

    def __init__(self, app) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def load(url: str, endpoint: str, clients: int, requests: int, uploads: list[bytes]) -> dict:
    """`clients` threads, `requests` requests in all; per-request latencies and requests/s."""
    import httpx

    latencies: list[float] = []
    server_side: list[float] = []  # the app's own "seconds": form, queue, model, rendering
    per_client = [requests // clients + (c < requests % clients) for c in range(clients)]

    def client(c: int) -> None:
        with httpx.Client(timeout=300) as http:
            for r in range(per_client[c]):
                n = c * 1000 + r
                start = time.perf_counter()
                response = http.post(f"{url}/api/{endpoint}", data={"prompts": [PROMPTS[n % len(PROMPTS)]]},
                                     files={"image": ("q.png", uploads[n % len(uploads)], "image/png")})
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise RuntimeError(f"{endpoint}: {response.status_code} {response.text[:200]}")
                server_side.append(response.json()["seconds"])

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {"latency_ms": 1000 * statistics.median(ordered),
            "p90_ms": 1000 * ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
            "server_ms": 1000 * statistics.median(server_side),
            "requests_per_s": len(ordered) / wall}


def run(args: argparse.Namespace) -> dict:
    import torch

    from steervit.serve.app import create_app
    from steervit.serve.batching import BatchSettings
    from steervit.serve.gallery import Gallery, photo_examples

    model = load_model(args).eval()
    gallery = Gallery(model, photo_examples())
    settings = BatchSettings(max_batch=args.max_batch, max_wait_ms=args.wait_ms)
    apps = {"unbatched": create_app(model, gallery), "batched": create_app(model, gallery, batching=settings)}
    servers = {mode: LiveServer(app) for mode, app in apps.items()}
    uploads = [png(seed) for seed in range(16)]
    raw = {mode: {c: [] for c in args.clients} for mode in apps}
    batches: dict[int, list[int]] = {c: [] for c in args.clients}
    try:
        for server in servers.values():  # warm-up: first calls, text cache of the prompts
            load(server.url, args.endpoint, 1, 2, uploads)
        for _ in range(args.rounds):
            for c in args.clients:
                for mode, server in servers.items():
                    sizes = apps[mode].state.service.batcher.batch_sizes if mode == "batched" else None
                    seen = len(sizes) if sizes is not None else 0
                    raw[mode][c].append(load(server.url, args.endpoint, c, max(args.requests, c), uploads))
                    if sizes is not None:
                        batches[c].extend(sizes[seen:])
    finally:
        for server in servers.values():
            server.stop()
    result = {"model": "golden tiny" if args.tiny else str(args.model), "image_size": model.image_size,
              "endpoint": args.endpoint, "torch_threads": torch.get_num_threads(), "rounds": args.rounds,
              "requests": args.requests, "max_batch": args.max_batch, "wait_ms": args.wait_ms, "clients": {}}
    for c in args.clients:
        row = {mode: {k: statistics.median(r[k] for r in raw[mode][c]) for k in raw[mode][c][0]} for mode in apps}
        row["mean_batch"] = statistics.mean(batches[c]) if batches[c] else 0.0
        row["throughput_ratio"] = row["batched"]["requests_per_s"] / row["unbatched"]["requests_per_s"]
        row["latency_ratio"] = row["batched"]["latency_ms"] / row["unbatched"]["latency_ms"]
        result["clients"][str(c)] = row
    return result


def report(result: dict) -> None:
    print(f"/api/{result['endpoint']} on {result['model']} ({result['image_size']} px, "
          f"{result['torch_threads']} threads), {result['requests']} requests per setting, batching up to "
          f"{result['max_batch']} / {result['wait_ms']:g} ms; median of {result['rounds']} rounds")
    print(f"  {'clients':>7s}  {'mode':9s} {'median ms':>9s} {'p90 ms':>8s} {'server ms':>9s} {'req/s':>7s}")
    for c, row in result["clients"].items():
        for mode in ("unbatched", "batched"):
            v = row[mode]
            print(f"  {c:>7s}  {mode:9s} {v['latency_ms']:9.1f} {v['p90_ms']:8.1f} {v['server_ms']:9.1f} "
                  f"{v['requests_per_s']:7.2f}")
        print(f"  {'':>7s}  batched / unbatched: throughput {row['throughput_ratio']:.2f}x, "
              f"median latency {row['latency_ratio']:.2f}x (mean batch {row['mean_batch']:.1f})")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="steervit_s14_minilm_offline", help="model name or folder")
    parser.add_argument("--tiny", action="store_true", help="the golden tiny checkpoint instead (quick check)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests", type=int, default=16, help="requests per client count and mode, per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--endpoint", choices=["steer", "search"], default="steer")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--wait-ms", type=float, default=3.0)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result)) if args.json else report(result)
    return result


if __name__ == "__main__":
    main()
