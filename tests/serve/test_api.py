"""The JSON API in-process (FastAPI TestClient) on the golden tiny model."""
from __future__ import annotations

import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest

from .conftest import decode_data_url, png_bytes


def steer(client, prompts, gate=None, image=None, example=None, url="/api/steer"):
    data = {"prompts": prompts}
    if gate is not None:
        data["gate_factor"] = str(gate)
    if example is not None:
        data["example"] = example
    files = {"image": ("x.png", image, "image/png")} if image is not None else None
    return client.post(url, data=data, files=files)


def assert_error(response, status, *words):
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for word in words:
        assert word in message, message


def assert_still_serving(client):
    response = steer(client, ["the square"], image=png_bytes(1))
    assert response.status_code == 200, response.text


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose data is a few bytes: a decompression bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_page_and_examples(client):
    page = client.get("/")
    assert page.status_code == 200 and "<form" in page.text
    assert "http:" not in page.text and "https:" not in page.text  # no CDN: nothing is fetched from elsewhere
    answer = client.get("/api/examples").json()
    keys = [e["key"] for e in answer["examples"]]
    assert {"astronaut", "cat", "coffee", "rocket"} <= set(keys)
    assert all(e["thumbnail"].startswith("data:image/jpeg;base64,") for e in answer["examples"])
    assert answer["limits"]["max_prompts"] == 8 and answer["default_gate_factor"] == 1.0


def test_real_multi_object_photos_suggest_prompts_for_their_objects(client):
    """The pointing game's photos are examples, each suggesting one prompt per hand-boxed object."""
    from steervit.evaluation import pointing

    examples = {e["key"]: e for e in client.get("/api/examples").json()["examples"]}
    for photo in pointing.read_photos():
        if photo.id in examples:
            assert examples[photo.id]["prompts"] == [obj.prompts[0] for obj in photo.objects]
    assert {"motorcycle", "china", "flower", "quokka", "astronaut", "coffee"} <= set(examples)
    assert examples["cat"]["prompts"] == []  # not a pointing photo: no boxes, nothing suggested
    assert len(examples["motorcycle"]["prompts"]) >= 4


def test_steer_gives_overlays_that_differ_between_prompts(client):
    response = steer(client, ["the bright square", "the dark background at the bottom"], image=png_bytes(0))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [r["prompt"] for r in answer["results"]] == ["the bright square", "the dark background at the bottom"]
    heads = [decode_data_url(r["head"]).astype(int) for r in answer["results"]]
    steered = [decode_data_url(r["attention"]).astype(int) for r in answer["results"]]
    assert all(im.shape == (160, 160, 3) for im in heads + steered)  # the golden model's resolution
    # the tiny random model's head barely reacts to the text; its steered attention clearly does
    assert np.abs(heads[0] - heads[1]).mean() > 0.05
    assert np.abs(steered[0] - steered[1]).mean() > 2.0
    stats = answer["results"][0]["stats"]
    assert 0 <= stats["peak_x"] <= 1 and 0 <= stats["peak_y"] <= 1 and stats["peak_ratio"] >= 1
    assert stats["attention_change"] > 0


def test_gate_factor_zero_makes_steered_equal_plain(client, serve_model):
    answer = steer(client, ["the bright square", "the corner"], gate=0, image=png_bytes(2)).json()
    assert serve_model.gate_factor == 1.0  # passed per call: the shared model is left as it was
    plain = decode_data_url(answer["plain_attention"])
    for result in answer["results"]:
        steered = decode_data_url(result["attention"])
        # identical pictures but for the label text drawn in the corner
        assert np.array_equal(steered[30:], plain[30:])
        assert result["stats"]["attention_change"] == 0
    assert answer["gate_factor"] == 0
    # and the gate factor is per request: the next one at 1 steers again
    again = steer(client, ["the bright square"], gate=1, image=png_bytes(2)).json()
    assert again["results"][0]["stats"]["attention_change"] > 0


def test_example_image_and_search(client):
    answer = steer(client, ["the cat's face"], example="cat").json()
    assert decode_data_url(answer["image"]).shape == (160, 160, 3)
    response = steer(client, ["the cat's face", "a red cup"], example="cat", url="/api/search")
    assert response.status_code == 200, response.text
    found = response.json()
    assert len(found["results"]) == 2 and len(found["plain"]) == 5
    for result in found["results"]:
        keys = [h["key"] for h in result["steered"]]
        assert len(keys) == 5 and "cat" not in keys  # the query itself is left out
        scores = [h["score"] for h in result["steered"]]
        assert scores == sorted(scores, reverse=True) and all(-1.001 <= s <= 1.001 for s in scores)
    uploaded = steer(client, ["the bright square"], image=png_bytes(3), url="/api/search").json()
    assert len(uploaded["results"][0]["steered"]) == 5


@pytest.mark.parametrize("prompts, words", [
    ([], ["at least one prompt"]),
    (["the cat", "   "], ["prompt 2 is empty"]),
    ([f"prompt {i}" for i in range(9)], ["9 prompts", "at most 8"]),
    (["x" * 201], ["201 characters", "limit is 200"]),
])
def test_bad_prompts_are_refused(client, prompts, words):
    assert_error(steer(client, prompts, image=png_bytes(0)), 400, *words)
    assert_still_serving(client)


def test_bad_files_are_refused_and_the_server_keeps_serving(client):
    assert_error(steer(client, ["the cat"], image=b"this is not an image"), 400, "cannot read the file as an image")
    truncated = png_bytes(0)[:300]
    assert_error(steer(client, ["the cat"], image=truncated), 400, "cannot read")
    assert_error(steer(client, ["the cat"], image=b""), 400, "empty")
    assert_error(steer(client, ["the cat"], image=huge_png_header(100_000, 100_000)), 413, "decompression bomb",
                 "limit is 40 megapixels")
    assert_error(steer(client, ["the cat"], image=huge_png_header(8000, 6000)), 413, "48 megapixels", "limit is 40")
    assert_error(steer(client, ["the cat"], image=huge_png_header(4000, 20)), 400, "20:1")
    assert_error(steer(client, ["the cat"], image=b"\0" * (10 * 2**20 + 1)), 413, "limit is 10 MB")
    assert_error(steer(client, ["the cat"]), 400, "no image")
    assert_error(steer(client, ["the cat"], example="nope"), 400, "unknown example")
    assert_error(steer(client, ["the cat"], example="cat", image=png_bytes(0)), 400, "not both")
    assert_error(steer(client, ["the cat"], gate="abc", image=png_bytes(0)), 400, "gate_factor")
    assert_error(steer(client, ["the cat"], gate=-1, image=png_bytes(0)), 400, "between 0 and 5")
    assert_error(steer(client, ["the cat"], gate="nan", image=png_bytes(0)), 400, "gate_factor")
    assert_error(client.post("/api/steer", data={"prompts": ["a"], "example": "cat"},
                             files={"gate_factor": ("g.txt", b"1", "text/plain")}), 400, "must be text")
    chunked = client.post("/api/steer", content=iter([b"prompts=a&example=cat"]),
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert_error(chunked, 411, "Content-Length")
    assert_still_serving(client)


def test_gate_factor_must_be_finite(client):
    for value in ("inf", "-inf", "1e999", "nan"):
        assert_error(steer(client, ["the cat"], gate=value, image=png_bytes(0)), 400, "gate_factor", "finite")
    assert_still_serving(client)


def test_an_8000x1_upload_is_refused_by_the_shared_reader(client):
    from steervit.io import MAX_ASPECT_RATIO

    buffer = io.BytesIO()
    from PIL import Image

    Image.new("L", (8000, 1)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 200
    assert_error(steer(client, ["the cat"], image=buffer.getvalue()), 400, "8000×1", "aspect 8000:1",
                 f"at most {MAX_ASPECT_RATIO:g}:1", "crop it first")
    assert_still_serving(client)


def test_uploads_are_read_upright_and_16bit_scaled(client, tmp_path):
    from test_images import exif_jpeg, gradient16, is_blue, is_red

    photo = exif_jpeg(tmp_path / "phone.jpg", 6, (120, 80))  # displayed 80 x 120, the top half red
    picture = decode_data_url(steer(client, ["the red half"], image=photo.read_bytes()).json()["image"])
    assert is_red(picture[40, 150]) and is_blue(picture[150, 10])

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(gradient16(200, 150)).save(buffer, format="PNG")
    picture = decode_data_url(steer(client, ["the dark side"], image=buffer.getvalue()).json()["image"])
    assert picture[:40].mean() < 80 and picture[-40:].mean() > 170  # a top-to-bottom gradient, not all white


def test_a_full_queue_answers_503(serve_model):
    from fastapi.testclient import TestClient

    from steervit.serve.app import Limits, create_app
    from steervit.serve.gallery import Gallery, photo_examples

    app = create_app(serve_model, Gallery(serve_model, photo_examples()[:2]), Limits(max_pending=1))
    client = TestClient(app, raise_server_exceptions=False)
    worker = app.state.worker
    results = []
    with worker.lock:  # the model is busy: the first request waits in the only slot
        waiting = threading.Thread(target=lambda: results.append(steer(client, ["a"], image=png_bytes(0))))
        waiting.start()
        deadline = time.monotonic() + 20
        while worker.pending < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert_error(steer(client, ["b"], image=png_bytes(0)), 503, "busy")
    waiting.join(timeout=30)
    assert results and results[0].status_code == 200
    assert steer(client, ["c"], image=png_bytes(0)).status_code == 200


def test_a_large_photo_within_the_limits_is_accepted(client):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2000, 3000, 3), dtype=np.uint8)  # 6 MP of noise: a JPEG of a few MB
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    assert 2**20 < len(buffer.getvalue()) < 10 * 2**20
    response = client.post("/api/steer", data={"prompts": ["the noise"]},
                           files={"image": ("big.jpg", buffer.getvalue(), "image/jpeg")})
    assert response.status_code == 200, response.text
    assert decode_data_url(response.json()["image"]).shape == (160, 160, 3)


def test_an_example_photo_whose_package_is_missing_is_left_out_with_a_warning(monkeypatch):
    """The web app still starts without, say, scikit-learn: that photo is an example fewer, said once."""
    from steervit.evaluation import pointing
    from steervit.serve import gallery

    real_load = pointing.load_photo

    def load(photo, check=True):
        if photo.id == "china":
            raise ImportError("No module named 'sklearn'")
        return real_load(photo, check)

    monkeypatch.setattr(pointing, "load_photo", load)
    with pytest.warns(UserWarning, match="leaving out the example 'china'.*sklearn"):
        keys = [e.key for e in gallery.photo_examples()]
    assert "china" not in keys and {"flower", "quokka", "astronaut"} <= set(keys)
