"""Request batching: each caller gets its own result; batched answers equal unbatched ones to float tolerance."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from steervit.serve.app import ApiError, Query, SteerService
from steervit.serve.batching import Batcher, BatchSettings
from steervit.serve.gallery import Gallery, photo_examples

from .conftest import decode_data_url, png_bytes

# Batching changes which rows share a matrix product and how far prompts are padded; the outputs
# agree to float rounding (~1e-6 here), far below what changes a picture or a ranking.
ATOL = 1e-5


# ------------------------------------------------------------------------------ the queue itself
class Recorder:
    """A batch function that records its batches and holds the first one until released."""

    def __init__(self) -> None:
        self.batches: list[tuple] = []
        self.release = threading.Event()

    def __call__(self, key, items):
        self.release.wait(timeout=10)
        self.batches.append((key, list(items)))
        return [ValueError(f"bad {v}") if v < 0 else (key, v * 10) for v in items]


def submit_all(batcher: Batcher, jobs: list[tuple]) -> list:
    """Submit jobs from threads (in order, a little apart) and collect each caller's result or error."""
    def one(job):
        try:
            return batcher.submit(*job)
        except ValueError as err:
            return str(err)

    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = []
        for job in jobs:
            futures.append(pool.submit(one, job))
            time.sleep(0.02)  # arrive in this order
        return [f.result(timeout=20) for f in futures]


def test_each_caller_gets_its_own_result_and_keys_never_mix():
    recorder = Recorder()
    batcher = Batcher(recorder, BatchSettings(max_batch=3, max_wait_ms=1))
    jobs = [("a", 1), ("a", 2), ("b", 3), ("a", -4), ("a", 5), ("b", 6), ("a", 7)]
    threading.Timer(0.3, recorder.release.set).start()  # the first batch holds the model meanwhile
    results = submit_all(batcher, jobs)
    batcher.close()
    assert results == [("a", 10), ("a", 20), ("b", 30), "bad -4", ("a", 50), ("b", 60), ("a", 70)]
    assert all(len(items) <= 3 for _, items in recorder.batches)
    for key, items in recorder.batches:  # a batch holds one key's items, in arrival order
        assert all(job[0] == key for job in jobs if job[1] in items)
        assert items == sorted(items, key=abs)
    assert sorted(v for _, items in recorder.batches for v in items) == sorted(v for _, v in jobs)
    assert max(len(items) for _, items in recorder.batches) == 3  # the queued requests did batch


def test_a_failing_batch_fails_its_callers_only():
    def run(key, items):
        if key == "broken":
            raise RuntimeError("model failure")
        return items

    batcher = Batcher(run, BatchSettings(max_batch=4, max_wait_ms=0))
    with pytest.raises(RuntimeError, match="model failure"):
        batcher.submit("broken", 1)
    assert batcher.submit("fine", 2) == 2  # and it keeps serving
    batcher.close()


# ------------------------------------------------------------------------------ the service
@pytest.fixture(scope="module")
def service(serve_model):
    gallery = Gallery(serve_model, photo_examples()[:4])
    return SteerService(serve_model, gallery)


def queries() -> list[Query]:
    return [Query(png_bytes(0), None, ["the bright square"], 1.0),
            Query(png_bytes(1), None, ["the dark corner", "a gradient", "the bright square"], 1.0),
            Query(png_bytes(2), None, ["a square at the top of the picture"], 1.0)]


def maps(answer: dict) -> list:
    return [decode_data_url(r[k]).astype(int) for r in answer["results"] for k in ("head", "attention")]


def test_batched_steer_answers_are_the_unbatched_ones(service):
    alone = [service.steer_image(q) for q in queries()]
    together = service.steer_images(queries())
    other = service.steer_images([queries()[2], Query(png_bytes(9), None, ["anything else entirely"], 1.0)])[0]
    for a, b in zip(alone + [alone[2]], together + [other]):
        assert [r["prompt"] for r in a["results"]] == [r["prompt"] for r in b["results"]]
        for ra, rb in zip(a["results"], b["results"]):
            for stat, value in ra["stats"].items():
                assert rb["stats"][stat] == pytest.approx(value, abs=2e-3), stat  # stats are rounded
        # the overlays: the same up to a colour level where a float rounding crosses a step
        for pa, pb in zip(maps(a), maps(b)):
            assert abs(pa - pb).max() <= 2
        assert decode_data_url(a["plain_attention"]).tolist() == decode_data_url(b["plain_attention"]).tolist()


def test_batched_steer_maps_match_to_float_tolerance(service, serve_model):
    """The maps themselves, before rendering: one query alone vs in a batch of three."""
    qs = queries()
    x = torch.cat([service._model_input(q) for q in qs])
    with torch.no_grad():
        alone = serve_model.get_heatmaps(x[1:2], serve_model.encode_text(qs[1].prompts), cross=True)[0, :, 0]
        rows = [0, 1, 1, 1, 2]
        prompts = [p for q in qs for p in q.prompts]
        batched = serve_model.get_heatmaps(x[rows], serve_model.encode_text(prompts))[1:4, 0]
    torch.testing.assert_close(batched, alone, atol=ATOL * alone.max().item(), rtol=0)


def test_batched_search_ranks_as_unbatched(service):
    qs = queries() + [Query(service.gallery.examples[service.gallery.keys[0]].image, service.gallery.keys[0],
                            ["the face"], 1.0)]
    alone = [service.search_image(q) for q in qs]
    together = service.search_images(qs)
    for a, b in zip(alone, together):
        assert [h["key"] for h in a["plain"]] == [h["key"] for h in b["plain"]]
        for ra, rb in zip(a["results"], b["results"]):
            assert [h["key"] for h in ra["steered"]] == [h["key"] for h in rb["steered"]]
            assert [h["score"] for h in ra["steered"]] == pytest.approx([h["score"] for h in rb["steered"]], abs=1e-3)


def test_a_bad_upload_fails_only_its_own_query(service):
    bad = Query(b"not an image", None, ["the cat"], 1.0)
    answers = service.steer_images([queries()[0], bad])
    assert isinstance(answers[1], ApiError) and answers[1].status == 400
    assert answers[0]["results"][0]["prompt"] == "the bright square"


def test_concurrent_requests_batch_through_the_app(serve_model):
    """Over HTTP: concurrent requests form batches, and each answer is what it is alone."""
    from fastapi.testclient import TestClient

    from steervit.serve.app import create_app

    app = create_app(serve_model, Gallery(serve_model, photo_examples()[:4]),
                     batching=BatchSettings(max_batch=4, max_wait_ms=50))
    cases = [(seed, prompt) for seed in range(3) for prompt in ("the bright square", "the background")]

    def post(client, case):
        response = client.post("/api/steer", data={"prompts": [case[1]]},
                               files={"image": ("q.png", png_bytes(case[0]), "image/png")})
        assert response.status_code == 200, response.text
        return response.json()

    with TestClient(app) as client:
        with ThreadPoolExecutor(len(cases)) as pool:
            together = list(pool.map(lambda case: post(client, case), cases))
        alone = [post(client, case) for case in cases]  # one at a time: batches of one
    sizes = app.state.service.batcher.batch_sizes
    assert max(sizes[:-len(cases)]) > 1 and sizes[-len(cases):] == [1] * len(cases)
    for a, b in zip(alone, together):
        assert a["results"][0]["prompt"] == b["results"][0]["prompt"]
        for pa, pb in zip(maps(a), maps(b)):
            assert abs(pa - pb).max() <= 2
    app.state.service.batcher.close()
