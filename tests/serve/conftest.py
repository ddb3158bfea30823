"""Fixtures for the web app: the golden tiny model, the app in-process, and a live uvicorn server."""
from __future__ import annotations

import importlib
import io
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from support import OFFICIAL, TINY_ROBERTA, TRUNK

# Fail, not skip, without the web app's packages: a skipped suite would hide a missing install step.
for _name in ("fastapi", "httpx", "python_multipart", "uvicorn"):
    try:
        importlib.import_module(_name)
    except ImportError as err:
        raise ImportError(f"tests/serve need the web app's packages ({err}); "
                          "pip install fastapi uvicorn python-multipart httpx selenium") from err


def png_bytes(seed: int = 0, size: tuple[int, int] = (200, 150)) -> bytes:
    """A small RGB PNG with structure (a gradient and a bright square), different per seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], -1).astype(np.uint8)
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    rgb[y0:y0 + h // 3, x0:x0 + w // 3] = rng.integers(150, 256, 3)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_data_url(url: str) -> np.ndarray:
    import base64

    assert url.startswith("data:image/png;base64,"), url[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


@pytest.fixture(scope="session")
def serve_model():
    """A private golden model: the app sets the gate factor per request, so it is not shared."""
    from steervit import SteerViT

    return SteerViT.from_pretrained(OFFICIAL, backbone_weights=TRUNK, text_encoder=TINY_ROBERTA)


@pytest.fixture(scope="session")
def app(serve_model):
    from steervit.serve.app import create_app

    return create_app(serve_model)


@pytest.fixture()
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def live_server(app):
    """The app under uvicorn in a thread on a free loopback port; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)
    sock.close()
