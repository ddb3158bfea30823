"""Load on loopback: 20 concurrent requests to a live uvicorn server, all answered correctly, RSS bounded."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from .conftest import decode_data_url, png_bytes

CONCURRENT = 20
pytestmark = pytest.mark.timeout(180)  # with pytest-timeout (the dev extra): never hang CI
# Documented in docs/serve.md. The first burst grows RSS by ~70 MB (20 worker threads, their malloc
# arenas, spooled forms); a second identical burst must reuse that memory.
RSS_GROWTH_LIMIT_MB = 200
RSS_ROUND_LIMIT_MB = 50


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def post(url: str, prompt: str, gate: float, image: bytes) -> dict:
    import httpx

    response = httpx.post(f"{url}/api/steer", data={"prompts": [prompt], "gate_factor": str(gate)},
                          files={"image": ("q.png", image, "image/png")}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def pictures(answer: dict) -> list[np.ndarray]:
    result = answer["results"][0]
    return [decode_data_url(u).astype(int) for u in (result["head"], result["attention"], answer["plain_attention"])]


def fire(url: str, cases, image: bytes) -> list[dict]:
    with ThreadPoolExecutor(CONCURRENT) as pool:
        futures = [pool.submit(post, url, *cases[i % len(cases)], image) for i in range(CONCURRENT)]
        return [f.result(timeout=90) for f in futures]


def test_twenty_concurrent_requests(live_server):
    image = png_bytes(5)
    cases = [("the bright square", 1.0), ("the left edge", 1.0), ("the bright square", 0.5), ("the left edge", 0.0)]
    expected = {case: pictures(post(live_server, *case, image)) for case in cases}  # one at a time; also warms up
    baseline, peak, done = rss_mb(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.monotonic()
    try:
        answers = fire(live_server, cases, image)
        first_peak = peak[0]
        answers += fire(live_server, cases, image)  # a second round must not need more memory: no leak
    finally:
        done.set()
        sampler.join(timeout=5)
    seconds = time.monotonic() - start

    for i, answer in enumerate(answers):  # each answer is the one for its own prompt and gate factor
        prompt, gate = cases[i % CONCURRENT % len(cases)]
        assert answer["results"][0]["prompt"] == prompt and answer["gate_factor"] == gate
        for got, want in zip(pictures(answer), expected[(prompt, gate)]):
            assert np.abs(got - want).max() <= 2, f"request {i} ({prompt!r}, gate {gate}) differs from the reference"
    growth, second = peak[0] - baseline, peak[0] - first_peak
    print(f"2 x {CONCURRENT} concurrent requests in {seconds:.1f} s; RSS {baseline:.0f} MB, "
          f"peak +{growth:.1f} MB (second round +{second:.1f} MB)")
    assert growth < RSS_GROWTH_LIMIT_MB, f"RSS grew by {growth:.0f} MB under load (limit {RSS_GROWTH_LIMIT_MB} MB)"
    assert second < RSS_ROUND_LIMIT_MB, f"the second round grew RSS by another {second:.0f} MB: a leak?"
