"""The FastAPI app behind `steervit serve`: a plain HTML page and a small JSON API.

Endpoints (all answers are JSON except `/`; every error is `{"error": "..."}` with a 4xx/5xx code):
  GET  /               the page (page.html, no external resources)
  GET  /api/examples   gallery thumbnails, the limits and the model's default gate factor
  POST /api/steer      image (upload `image` or gallery `example`) + `prompts` (repeated) +
                       `gate_factor` -> head-heatmap and attention overlays, steered and plain
  POST /api/search     same form -> per prompt, the gallery ranked by steered and by plain features

One model pass runs at a time (a lock): the model holds the gate factor as state, and two cores gain
nothing from parallel passes. Requests wait in a bounded queue; past it they get 503 at once.
Uploads are checked before decoding (body size from Content-Length; pixel count and aspect ratio from
the header, by steervit.io's reader, which every path uses), so a large file, a decompression bomb or
an 8000 x 1 strip is refused without being decoded.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from starlette.exceptions import HTTPException

from .. import io as steervit_io  # the image reader and its limits; also sets PIL's bomb limit
from .. import overlay as ov
from .gallery import Gallery, data_url, default_examples

PAGE = Path(__file__).with_name("page.html")


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 10 * 1024 * 1024
    # Checked by steervit.io's reader from the header, before decoding. Uploads come from anyone: the
    # pixel limit is stricter than the one for files (steervit.io.MAX_PIXELS); the aspect limit is the same.
    max_pixels: int = 40_000_000
    max_aspect: float = steervit_io.MAX_ASPECT_RATIO  # long side / short side; a 1 x 40M image explodes in the resize
    max_side: int = 1024  # larger uploads are shrunk first: the model sees 224 px anyway
    max_prompts: int = 8
    max_prompt_chars: int = 200
    max_gate_factor: float = 5.0  # tanh saturates long before this
    max_pending: int = 32  # requests waiting for or holding the model; more get 503
    search_k: int = 5

    @property
    def max_request_bytes(self) -> int:
        return self.max_upload_bytes + 64 * 1024  # room for the other form fields


class ApiError(Exception):
    """A request the server refuses; becomes `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Worker:
    """Runs model work one call at a time, with at most `max_pending` requests admitted at once."""

    def __init__(self, max_pending: int) -> None:
        self.lock = threading.Lock()  # held while the model runs
        self.max_pending = max_pending
        self.pending = 0  # admitted requests: waiting for the lock or holding it
        self._count_lock = threading.Lock()

    def admit(self) -> None:
        with self._count_lock:
            if self.pending >= self.max_pending:
                raise ApiError(503, "the server is busy with other requests; try again in a moment")
            self.pending += 1

    def release(self) -> None:
        with self._count_lock:
            self.pending -= 1

    def run(self, fn, *args):
        with self.lock:
            return fn(*args)


# ------------------------------------------------------------------------------ input checks
def decode_image(data: bytes, limits: Limits) -> Image.Image:
    """Bytes -> RGB image through the project's one image reader (steervit.io: size checked from the
    header before decoding, EXIF orientation applied, 16-bit scaled), under the server's limits."""
    if not data:
        raise ApiError(400, "the uploaded file is empty")
    if len(data) > limits.max_upload_bytes:
        raise ApiError(413, f"the file is {len(data) / 2**20:.1f} MB; "
                            f"the limit is {limits.max_upload_bytes / 2**20:g} MB")
    try:
        return steervit_io.decode_rgb(data, max_pixels=limits.max_pixels, max_aspect=limits.max_aspect,
                                      max_side=limits.max_side)
    except steervit_io.ImageTooLargeError as err:
        raise ApiError(413, str(err)) from err
    except steervit_io.ImageError as err:
        raise ApiError(400, str(err)) from err


def check_prompts(prompts: list[str], limits: Limits) -> list[str]:
    if not prompts:
        raise ApiError(400, "give at least one prompt, e.g. 'the cat'")
    if len(prompts) > limits.max_prompts:
        raise ApiError(400, f"{len(prompts)} prompts given; at most {limits.max_prompts} are allowed")
    for i, prompt in enumerate(prompts, start=1):
        if not prompt.strip():
            raise ApiError(400, f"prompt {i} is empty; write what to look for, e.g. 'the red cup'")
        if len(prompt) > limits.max_prompt_chars:
            raise ApiError(400, f"prompt {i} has {len(prompt)} characters; the limit is {limits.max_prompt_chars}")
    return [p.strip() for p in prompts]


def check_gate_factor(text: str | None, default: float, limits: Limits) -> float:
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, f"gate_factor must be a number, got {text[:40]!r}") from None
    if not 0.0 <= value <= limits.max_gate_factor:  # also refuses nan and inf
        raise ApiError(400, f"gate_factor must be a finite number between 0 and {limits.max_gate_factor:g}, "
                            f"got {text[:40]}")
    return value


# ------------------------------------------------------------------------------ model work
def _panel(picture: Image.Image, heat, label: str) -> str:
    return ov.add_label(ov.overlay(picture, heat), label)


def steer(model, transform, mean_std, image: Image.Image, prompts: list[str], gate: float) -> dict:
    """Head heatmap and attention, steered and plain, as overlays on the model's view of the image."""
    import torch

    x = transform(image)[None]
    with torch.no_grad():
        model.set_gate_factor(gate)
        embedding = model.encode_text(prompts)
        head = model.get_heatmaps(x, embedding, cross=True)[0, :, 0].float().cpu().numpy()  # (P, H, W)
        steered = model.get_attention_heatmaps(x, embedding, cross=True)[0].float().cpu().numpy()
        plain = model.get_attention_heatmaps(x, None)[0].float().cpu().numpy()
    picture = ov.denormalize(x[0].float().cpu().numpy(), *mean_std)
    results = []
    for j, prompt in enumerate(prompts):
        y, x_ = divmod(int(head[j].argmax()), head[j].shape[1])
        results.append({
            "prompt": prompt,
            "head": data_url(_panel(picture, head[j], "head heatmap")),
            "attention": data_url(_panel(picture, steered[j], "attention (steered)")),
            "stats": {
                # where the head points (0..1 of width/height) and how sharply (peak / mean; 1 = flat)
                "peak_x": round((x_ + 0.5) / head[j].shape[1], 4),
                "peak_y": round((y + 0.5) / head[j].shape[0], 4),
                "peak_ratio": round(float(head[j].max() / max(head[j].mean(), 1e-12)), 3),
                # mean |steered - plain| attention, both min-max scaled: 0 = the prompt changed nothing
                "attention_change": round(float(abs(ov.normalize(steered[j]) - ov.normalize(plain)).mean()), 4),
            },
        })
    return {"image": data_url(picture), "plain_attention": data_url(_panel(picture, plain, "attention (plain)")),
            "gate_factor": gate, "results": results}


def search(model, transform, gallery, image: Image.Image, prompts: list[str], gate: float,
           exclude: str | None, k: int) -> dict:
    """Rank the gallery by cosine similarity of global features: steered by each prompt, and plain."""
    import torch
    import torch.nn.functional as F

    x = transform(image)[None]
    with torch.no_grad():
        model.set_gate_factor(gate)
        plain = F.normalize(model.get_global_features(x).float(), dim=-1)[0]
        query = F.normalize(model.get_global_features(x, model.encode_text(prompts), cross=True)[0].float(), dim=-1)
        features = gallery.steered(prompts, gate)  # (P, N, D)
    plain_ranking = gallery.rank(gallery.plain @ plain, exclude, k)
    return {"gate_factor": gate, "plain": plain_ranking, "results": [
        {"prompt": p, "steered": gallery.rank(features[j] @ query[j], exclude, k)} for j, p in enumerate(prompts)
    ]}


# ------------------------------------------------------------------------------ the app
def create_app(model, gallery=None, limits: Limits | None = None):
    """The app for one loaded model. `gallery`: a `Gallery`, or None for the default examples."""
    from ..cli import normalization

    limits = limits or Limits()
    model.eval()
    default_gate = model.gate_factor
    transform = model.get_transforms()
    mean_std = normalization(transform)
    if gallery is None:
        gallery = Gallery(model, default_examples())
    worker = Worker(limits.max_pending)
    page = PAGE.read_text(encoding="utf-8")

    app = FastAPI(title="SteerViT", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.worker, app.state.gallery, app.state.limits = worker, gallery, limits

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(ApiError)
    async def _api_error(request, err: ApiError):
        return error(err.status, err.message)

    @app.exception_handler(HTTPException)
    async def _http_error(request, err: HTTPException):
        return error(err.status_code, str(err.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, err: RequestValidationError):
        return error(400, "; ".join(str(e.get("msg")) for e in err.errors()) or "invalid request")

    @app.exception_handler(Exception)
    async def _unexpected(request, err: Exception):  # the server keeps serving; the page shows this
        return error(500, f"internal error: {type(err).__name__}: {err}")

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        """Refuse a too-large body from its declared length, before any of it is read."""
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return error(411, "send the request with a Content-Length header")
            if not length.isdigit():
                return error(400, f"invalid Content-Length {length[:20]!r}")
            if int(length) > limits.max_request_bytes:
                return error(413, f"the upload is {int(length) / 2**20:.1f} MB; "
                                  f"the limit is {limits.max_upload_bytes / 2**20:g} MB")
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page

    @app.get("/api/health")
    def health():
        return {"status": "ok"}

    @app.get("/api/examples")
    def examples():
        return {"examples": gallery.describe(), "limits": asdict(limits), "default_gate_factor": default_gate,
                "image_size": model.image_size}

    async def read_form(request: Request):
        """(image bytes or example image, example key or None, prompts, gate factor), all checked but
        the bytes, which are decoded later under the model lock: decoding is CPU work too."""
        async with request.form(max_files=1, max_fields=4 * limits.max_prompts + 8,
                                max_part_size=64 * 1024) as form:
            def text(value, name: str):
                if value is not None and not isinstance(value, str):
                    raise ApiError(400, f"field {name!r} must be text, not a file")
                return value

            upload = form.get("image")
            if isinstance(upload, str):
                raise ApiError(400, "field 'image' must be a file upload")
            example = text(form.get("example"), "example") or None
            prompts = [text(p, "prompts") for p in form.getlist("prompts")]
            gate = check_gate_factor(text(form.get("gate_factor"), "gate_factor"), default_gate, limits)
            data = None if upload is None else await upload.read(limits.max_upload_bytes + 1)
        prompts = check_prompts(prompts, limits)
        if data is not None and example is not None:
            raise ApiError(400, "give either an uploaded image or an example, not both")
        if data is not None:
            return data, None, prompts, gate
        if example is None:
            raise ApiError(400, "no image: upload one (field 'image') or pick an example (field 'example')")
        if example not in gallery.examples:
            raise ApiError(400, f"unknown example {example[:40]!r}; choose one of: {', '.join(gallery.keys)}")
        return gallery.examples[example].image, example, prompts, gate

    async def handle(request: Request, work):
        worker.admit()
        try:
            start = time.perf_counter()
            source, example, prompts, gate = await read_form(request)

            def job():
                image = decode_image(source, limits) if isinstance(source, bytes) else source
                return work(image, example, prompts, gate)

            answer = await run_in_threadpool(worker.run, job)
            answer["seconds"] = round(time.perf_counter() - start, 3)
            return answer
        finally:
            worker.release()

    @app.post("/api/steer")
    async def steer_endpoint(request: Request):
        return await handle(request, lambda image, example, prompts, gate:
                            steer(model, transform, mean_std, image, prompts, gate))

    @app.post("/api/search")
    async def search_endpoint(request: Request):
        return await handle(request, lambda image, example, prompts, gate:
                            search(model, transform, gallery, image, prompts, gate, example, limits.search_k))

    return app
