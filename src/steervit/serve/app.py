"""The FastAPI app behind `steervit serve`: a plain HTML page and a small JSON API.

Endpoints (all answers are JSON except `/`; every error is `{"error": "..."}` with a 4xx/5xx code):
  GET  /               the page (page.html, no external resources)
  GET  /api/examples   gallery thumbnails, the limits and the model's default gate factor
  POST /api/steer      image (upload `image` or gallery `example`) + `prompts` (repeated) +
                       `gate_factor` -> head-heatmap and attention overlays, steered and plain
  POST /api/search     same form -> per prompt, the gallery ranked by steered and by plain features
  POST /api/words      same form -> per prompt, per word: where the image's patches read that word
                       (cross-attention mass on its tokens), as small overlays with the word as caption

`SteerService` holds the model, limits, queue and gallery and has one method per endpoint; `create_app`
only wires FastAPI to it. Each request's gate factor goes to the model calls as `gate_factor=`; the
shared model is never changed. One model pass still runs at a time (a lock): two cores gain nothing
from parallel passes, and the text cache and the gallery's cache are not thread-safe. Requests wait
in a bounded queue; past it they get 503 at once. With `batching` (serve/batching.py), steer and
search requests that wait together run as one model batch, one (image, prompt) pair per row.
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
from .batching import Batcher, BatchSettings
from .gallery import Gallery, data_url, default_examples

PAGE = Path(__file__).with_name("page.html")
WORD_MAP_SIDE = 112  # pixels per word overlay: small, as there is one per word


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
    max_word_maps: int = 48  # words over all prompts of one /api/words request (one overlay each)

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


def check_request_prompts(prompts: list[str], limits: Limits) -> list[str]:
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


# ------------------------------------------------------------------------------ answers
def prompt_stats(head, steered, plain) -> dict:
    """Where the head points (0..1 of width/height) and how sharply (peak / mean; 1 = flat), and how
    much the prompt moved the attention: mean |steered - plain|, both min-max scaled (0 = not at all)."""
    y, x = divmod(int(head.argmax()), head.shape[1])
    return {
        "peak_x": round((x + 0.5) / head.shape[1], 4),
        "peak_y": round((y + 0.5) / head.shape[0], 4),
        "peak_ratio": round(float(head.max() / max(head.mean(), 1e-12)), 3),
        "attention_change": round(float(abs(ov.normalize(steered) - ov.normalize(plain)).mean()), 4),
    }


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _api_error(request, err: ApiError):
    return error(err.status, err.message)


async def _http_error(request, err: HTTPException):
    return error(err.status_code, str(err.detail))


async def _validation_error(request, err: RequestValidationError):
    return error(400, "; ".join(str(e.get("msg")) for e in err.errors()) or "invalid request")


async def _unexpected(request, err: Exception):  # the server keeps serving; the page shows this
    return error(500, f"internal error: {type(err).__name__}: {err}")


ERROR_HANDLERS = {ApiError: _api_error, HTTPException: _http_error, RequestValidationError: _validation_error,
                  Exception: _unexpected}


def _text(value, name: str):
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"field {name!r} must be text, not a file")
    return value


@dataclass(frozen=True)
class Query:
    """A checked steer/search form. `source`: the upload's bytes (decoded later, under the model lock:
    decoding is CPU work too) or an example's picture; `example`: that example's key, else None."""
    source: bytes | Image.Image
    example: str | None
    prompts: list[str]
    gate: float


# ------------------------------------------------------------------------------ the service
class SteerService:
    """One loaded model with its limits, request queue and gallery; one method per endpoint.

    The gate factor is passed to each model call (`gate_factor=`), never set on the shared model.
    Endpoint methods have no return annotations: FastAPI would take them as response models."""

    def __init__(self, model, gallery: Gallery | None = None, limits: Limits | None = None,
                 batching: BatchSettings | None = None) -> None:
        self.model = model.eval()
        self.limits = limits or Limits()
        self.default_gate = model.gate_factor
        self.preprocessing = model.preprocessing  # the model's one source of resize and normalisation
        self.transform = self.preprocessing.transform()
        self.gallery = Gallery(model, default_examples()) if gallery is None else gallery
        self.worker = Worker(self.limits.max_pending)
        # steer and search requests that arrive together run as one model batch (see batching.py)
        self.batcher = None if batching is None else Batcher(self._run_batch, batching)
        self.page = PAGE.read_text(encoding="utf-8")

    # ---- endpoints
    def index(self):
        return self.page

    def health(self):
        return {"status": "ok"}

    def examples(self):
        return {"examples": self.gallery.describe(), "limits": asdict(self.limits),
                "default_gate_factor": self.default_gate, "image_size": self.model.image_size}

    async def steer(self, request: Request):
        return await self._answer(request, self.steer_image, batch_kind="steer")

    async def search(self, request: Request):
        return await self._answer(request, self.search_image, batch_kind="search")

    async def words(self, request: Request):
        return await self._answer(request, self.word_maps_image)

    async def limit_body(self, request: Request, call_next):
        """Middleware: refuse a too-large body from its declared length, before any of it is read."""
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return error(411, "send the request with a Content-Length header")
            if not length.isdigit():
                return error(400, f"invalid Content-Length {length[:20]!r}")
            if int(length) > self.limits.max_request_bytes:
                return error(413, f"the upload is {int(length) / 2**20:.1f} MB; "
                                  f"the limit is {self.limits.max_upload_bytes / 2**20:g} MB")
        return await call_next(request)

    # ---- requests
    async def _answer(self, request: Request, work, batch_kind: str | None = None) -> dict:
        """Admit the request to the queue, read its form, and run `work(query)` under the model lock;
        with batching on, a `batch_kind` request goes to the batcher instead, grouped by gate factor."""
        self.worker.admit()
        try:
            start = time.perf_counter()
            query = await self.read_form(request)
            if self.batcher is not None and batch_kind is not None:
                answer = await run_in_threadpool(self.batcher.submit, (batch_kind, query.gate), query)
            else:
                answer = await run_in_threadpool(self.worker.run, work, query)
            answer["seconds"] = round(time.perf_counter() - start, 3)
            return answer
        finally:
            self.worker.release()

    async def read_form(self, request: Request) -> Query:
        limits = self.limits
        async with request.form(max_files=1, max_fields=4 * limits.max_prompts + 8,
                                max_part_size=64 * 1024) as form:
            upload = form.get("image")
            if isinstance(upload, str):
                raise ApiError(400, "field 'image' must be a file upload")
            example = _text(form.get("example"), "example") or None
            prompts = [_text(p, "prompts") for p in form.getlist("prompts")]
            gate = check_gate_factor(_text(form.get("gate_factor"), "gate_factor"), self.default_gate, limits)
            data = None if upload is None else await upload.read(limits.max_upload_bytes + 1)
        prompts = check_request_prompts(prompts, limits)
        return Query(self._image_source(data, example), example, prompts, gate)

    def _image_source(self, data: bytes | None, example: str | None) -> bytes | Image.Image:
        if data is not None and example is not None:
            raise ApiError(400, "give either an uploaded image or an example, not both")
        if data is not None:
            return data
        if example is None:
            raise ApiError(400, "no image: upload one (field 'image') or pick an example (field 'example')")
        if example not in self.gallery.examples:
            raise ApiError(400, f"unknown example {example[:40]!r}; "
                                f"choose one of: {', '.join(self.gallery.keys)}")
        return self.gallery.examples[example].image

    def _model_input(self, query: Query):
        image = decode_image(query.source, self.limits) if isinstance(query.source, bytes) else query.source
        return self.transform(image)[None]

    def _model_inputs(self, queries: list[Query]) -> list:
        """Each query's (1, 3, S, S) input, or the ApiError that refuses its upload (that query only)."""
        inputs = []
        for query in queries:
            try:
                inputs.append(self._model_input(query))
            except ApiError as err:
                inputs.append(err)
        return inputs

    def _run_batch(self, key: tuple[str, float], queries: list[Query]) -> list:
        """The batcher's work: one batch of steer or search queries of one gate factor, under the model
        lock. A lone query runs as unbatched (the same answer exactly, and many prompts share a pass)."""
        one, several = {"steer": (self.steer_image, self.steer_images),
                        "search": (self.search_image, self.search_images)}[key[0]]
        if len(queries) > 1:
            return self.worker.run(several, queries)
        try:
            return [self.worker.run(one, queries[0])]
        except ApiError as err:
            return [err]

    # ---- model work (called under the model lock)
    def steer_image(self, query: Query) -> dict:
        """Head heatmap and attention, steered and plain, as overlays on the model's view of the image."""
        import torch

        model, gate, prompts = self.model, query.gate, query.prompts
        x = self._model_input(query)
        with torch.no_grad():
            embedding = model.encode_text(prompts)
            head = model.get_heatmaps(x, embedding, cross=True, gate_factor=gate)[0, :, 0]  # (P, H, W)
            steered = model.get_attention_heatmaps(x, embedding, cross=True, gate_factor=gate)[0]  # (P, H, W)
            plain = model.get_attention_heatmaps(x, None)[0]  # (H, W)
        return self._steer_answer(x, query, head, steered, plain)

    def steer_images(self, queries: list[Query]) -> list:
        """Several steer queries of one gate factor as one model batch: each (image, prompt) pair is a
        row (one prompt per image), each image once in the plain pass. Each answer is `steer_image`'s to
        float tolerance, whatever else is in the batch; a refused upload fails its own query only."""
        import torch

        inputs = self._model_inputs(queries)
        ok = [i for i, x in enumerate(inputs) if not isinstance(x, ApiError)]
        if not ok:
            return inputs
        model, gate = self.model, queries[ok[0]].gate
        x = torch.cat([inputs[i] for i in ok])  # (U, 3, S, S)
        owner = [u for u, i in enumerate(ok) for _ in queries[i].prompts]  # the image of each row
        with torch.no_grad():
            text = model.encode_text([p for i in ok for p in queries[i].prompts])
            head = model.get_heatmaps(x[owner], text, gate_factor=gate)[:, 0]  # (R, H, W)
            steered = model.get_attention_heatmaps(x[owner], text, gate_factor=gate)  # (R, H, W)
            plain = model.get_attention_heatmaps(x, None)  # (U, H, W)
        answers, row = list(inputs), 0
        for u, i in enumerate(ok):
            rows = slice(row, row + len(queries[i].prompts))
            answers[i] = self._steer_answer(x[u:u + 1], queries[i], head[rows], steered[rows], plain[u])
            row = rows.stop
        return answers

    def _steer_answer(self, x, query: Query, head, steered, plain) -> dict:
        """The steer answer from one image's maps: head (P, H, W), steered (P, H, W), plain (H, W)."""
        gate, prompts = query.gate, query.prompts
        head, steered, plain = ov.as_heat(head), ov.as_heat(steered), ov.as_heat(plain)
        picture = self.preprocessing.denormalize(x[0])
        results = [{"prompt": prompt,
                    "head": data_url(ov.heat_panel(picture, head[j], ov.HEAD_LABEL)),
                    "attention": data_url(ov.heat_panel(picture, steered[j], ov.STEERED_LABEL)),
                    "stats": prompt_stats(head[j], steered[j], plain)}
                   for j, prompt in enumerate(prompts)]
        plain_panel = ov.heat_panel(picture, plain, ov.PLAIN_LABEL)
        return {"image": data_url(picture), "plain_attention": data_url(plain_panel), "gate_factor": gate,
                "results": results}

    def search_image(self, query: Query) -> dict:
        """Rank the gallery by cosine similarity of global features: steered by each prompt, and plain."""
        import torch
        import torch.nn.functional as F

        model, gallery, gate, prompts = self.model, self.gallery, query.gate, query.prompts
        x = self._model_input(query)
        with torch.no_grad():
            plain = F.normalize(model.get_global_features(x).float(), dim=-1)[0]
            steered = model.get_global_features(x, model.encode_text(prompts), cross=True, gate_factor=gate)[0]
            steered = F.normalize(steered.float(), dim=-1)  # (P, D)
            features = gallery.steered(prompts, gate)  # (P, N, D)
        return self._search_answer(query, plain, steered, features)

    def search_images(self, queries: list[Query]) -> list:
        """Several search queries of one gate factor as one model batch (as `steer_images`): each
        (image, prompt) pair a row, the gallery steered by all their prompts at once."""
        import torch
        import torch.nn.functional as F

        inputs = self._model_inputs(queries)
        ok = [i for i, x in enumerate(inputs) if not isinstance(x, ApiError)]
        if not ok:
            return inputs
        model, gate = self.model, queries[ok[0]].gate
        x = torch.cat([inputs[i] for i in ok])
        owner = [u for u, i in enumerate(ok) for _ in queries[i].prompts]
        prompts = [p for i in ok for p in queries[i].prompts]
        unique = list(dict.fromkeys(prompts))
        with torch.no_grad():
            plain = F.normalize(model.get_global_features(x).float(), dim=-1)  # (U, D)
            steered = model.get_global_features(x[owner], model.encode_text(prompts), gate_factor=gate)
            steered = F.normalize(steered.float(), dim=-1)  # (R, D)
            features = self.gallery.steered(unique, gate)  # (unique prompts, N, D)
        answers, row = list(inputs), 0
        for u, i in enumerate(ok):
            rows = slice(row, row + len(queries[i].prompts))
            mine = features[[unique.index(p) for p in prompts[rows]]]
            answers[i] = self._search_answer(queries[i], plain[u], steered[rows], mine)
            row = rows.stop
        return answers

    def _search_answer(self, query: Query, plain, steered, features) -> dict:
        """The search answer from one image's unit features: plain (D,), steered (P, D), gallery (P, N, D)."""
        gallery, k, exclude = self.gallery, self.limits.search_k, query.example
        results = [{"prompt": p, "steered": gallery.rank(features[j] @ steered[j], exclude, k)}
                   for j, p in enumerate(query.prompts)]
        return {"gate_factor": query.gate, "plain": gallery.rank(gallery.plain @ plain, exclude, k),
                "results": results}

    def word_maps_image(self, query: Query) -> dict:
        """Which words steer where: per prompt and word, the cross-attention mass the image's patch
        tokens put on the word's tokens (mean over heads and cross-attention layers), as a small overlay.

        `share`: that mass averaged over the patches, the fraction of the patches' attention the word
        gets; `other_share`: the rest, on special tokens (<s>, </s>) and lone spaces. Each overlay is
        min-max scaled on its own, so compare words by `share`, and places within a word by colour."""
        import torch

        model, gate, prompts = self.model, query.gate, query.prompts
        words = [model.text_encoder.words(p) for p in prompts]
        count = sum(map(len, words))
        if count > self.limits.max_word_maps:
            raise ApiError(400, f"the prompts have {count} words; word maps are drawn for at most "
                                f"{self.limits.max_word_maps}: shorten the prompts or send fewer")
        x = self._model_input(query)
        with torch.no_grad():
            images = x.expand(len(prompts), -1, -1, -1)  # one prompt per image
            maps = model.get_cross_attention_maps(images, model.encode_text(prompts), gate_factor=gate)
        patches = torch.stack(list(model.drop_prefix_rows(maps).values()))  # (layers, P, heads, N, L)
        mass = patches.float().mean(dim=(0, 2)).cpu()  # (P, N, L)
        grid = (x.shape[-2] // model.patch_size, x.shape[-1] // model.patch_size)
        small = self.preprocessing.denormalize(x[0])
        small.thumbnail((WORD_MAP_SIDE, WORD_MAP_SIDE))
        results = []
        for j, prompt in enumerate(prompts):
            entries, word_mass = [], 0.0
            for word, positions in words[j]:
                heat = mass[j][:, positions].sum(-1).view(grid).numpy()
                word_mass += float(heat.mean())
                row, col = divmod(int(heat.argmax()), grid[1])
                entries.append({"word": word, "share": round(float(heat.mean()), 4),
                                "peak_x": round((col + 0.5) / grid[1], 4), "peak_y": round((row + 0.5) / grid[0], 4),
                                "map": data_url(ov.overlay(small, heat))})
            results.append({"prompt": prompt, "words": entries, "other_share": round(max(1.0 - word_mass, 0.0), 4)})
        return {"image": data_url(small), "gate_factor": gate,
                "layers": [name for name, _ in model.insertion_points()], "results": results}


# ------------------------------------------------------------------------------ the app
def create_app(model, gallery: Gallery | None = None, limits: Limits | None = None,
               batching: BatchSettings | None = None) -> FastAPI:
    """The app for one loaded model. `gallery`: a `Gallery`, or None for the default examples;
    `batching`: run concurrent steer/search requests as one model batch (None: one at a time)."""
    service = SteerService(model, gallery, limits, batching)
    app = FastAPI(title="SteerViT", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.state.worker, app.state.gallery, app.state.limits = service.worker, service.gallery, service.limits
    for error_type, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(error_type, handler)
    app.middleware("http")(service.limit_body)
    app.get("/", response_class=HTMLResponse)(service.index)
    app.get("/api/health")(service.health)
    app.get("/api/examples")(service.examples)
    app.post("/api/steer")(service.steer)
    app.post("/api/search")(service.search)
    app.post("/api/words")(service.words)
    return app
