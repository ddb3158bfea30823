"""Small file helpers shared by everything that reads or writes: atomic writes, clear missing-file errors,
and the one image reader every path uses (command line, API file helpers, training data, server).

Reading an image (`open_rgb` for a file, `decode_rgb` for encoded bytes, `probe_image` for the header
only) always:

* checks the size from the header, before decoding: at most `MAX_PIXELS` pixels and sides at most
  `MAX_ASPECT_RATIO`:1 apart (an 8000 x 1 PNG of 106 bytes would otherwise become a 1.8M x 224 image
  in the model's short-side resize); refusals raise `ImageTooLargeError` / `ImageShapeError`;
* applies the EXIF orientation, so that pixels (and so heatmaps) are the photo as a viewer shows it;
* scales high-bit-depth images to 8 bit by their type's range instead of clipping them to white
  (see `to_rgb`).

Every refusal is an `ImageError`, a `ValueError` with a one-line message naming the image.
An image already in memory (`to_rgb`) is taken as it is: no EXIF rotation, as the caller sees it.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

# Limits every image reader applies, from the header, before decoding (the server may be stricter).
MAX_PIXELS = 64_000_000  # width x height; 8 bytes a pixel at most while decoding and converting
MAX_ASPECT_RATIO = 20.0  # long side / short side; the model resizes the short side to ~224 px
# PIL's own decompression-bomb guard, for every other PIL read: it warns above this, raises above twice this.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

ImageSource = Union[str, os.PathLike, bytes]
_READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError,
                KeyError, TypeError)
_FORMATS = "use a PNG, JPEG, GIF, BMP, TIFF or WebP file"


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    A crash or error mid-write leaves the previous file intact and no partial file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _plain_file_mode())  # mkstemp makes 0600; the result should read like open()'s
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _plain_file_mode() -> int:
    """The mode `open(path, "w")` would give a new file: 0666 less the process umask.

    Linux reports the umask in /proc (read-only, so thread-safe); elsewhere it is set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


class ImageError(ValueError):
    """An image that cannot be used: unreadable, too many pixels, or too elongated."""


class ImageTooLargeError(ImageError):
    """More pixels than allowed (or a possible decompression bomb)."""


class ImageShapeError(ImageError):
    """Sides too far apart (or an image without pixels)."""


def _label(name: str | os.PathLike | None) -> str:
    return f"image {name}" if name else "the image"


def _ratio(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def check_image_size(width: int, height: int, name: str | os.PathLike | None = None, *,
                     max_pixels: int = MAX_PIXELS, max_aspect: float = MAX_ASPECT_RATIO) -> None:
    """Refuse a size the readers will not decode: more than `max_pixels`, or sides more than
    `max_aspect`:1 apart. `name` (a path) goes into the message."""
    what = _label(name)
    if min(width, height) < 1:
        raise ImageShapeError(f"{what} is {width}×{height}: it has no pixels")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"{what} is {width}×{height} = {width * height / 1e6:.0f} megapixels; "
                                 f"the limit is {max_pixels / 1e6:g} megapixels — shrink it first")
    aspect = max(width, height) / min(width, height)
    if aspect > max_aspect:
        raise ImageShapeError(f"{what} is {width}×{height} (aspect {_ratio(aspect)}:1); "
                              f"at most {max_aspect:g}:1 is supported — crop it first")


@contextlib.contextmanager
def _opened(source: ImageSource, name, max_pixels: int, max_aspect: float) -> Iterator[Image.Image]:
    """The image open but not decoded, its header size checked; read errors become `ImageError`."""
    what = str(name) if name else "the file"
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with warnings.catch_warnings():
            # PIL warns between MAX_IMAGE_PIXELS and twice that; the check below refuses those anyway
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(f"{_label(name)} is too large to decode safely, a possible decompression "
                                 f"bomb ({err}); the limit is {max_pixels / 1e6:g} megapixels") from err
    except _READ_ERRORS as err:
        why = "unknown format" if isinstance(err, UnidentifiedImageError) else f"{type(err).__name__}: {err}"
        raise ImageError(f"cannot read {what} as an image ({why}); {_FORMATS}") from err
    with im:
        check_image_size(*im.size, name, max_pixels=max_pixels, max_aspect=max_aspect)
        try:
            yield im
        except ImageError:
            raise
        except Image.DecompressionBombError as err:
            raise ImageTooLargeError(f"{_label(name)} is too large to decode safely ({err}); "
                                     f"the limit is {max_pixels / 1e6:g} megapixels") from err
        except _READ_ERRORS as err:
            raise ImageError(f"cannot read {what} as an image ({type(err).__name__}: {err}); {_FORMATS}") from err


def _source(source: ImageSource) -> ImageSource:
    return source if isinstance(source, (bytes, bytearray, memoryview)) else require_file(source, "image")


def probe_image(source: ImageSource, name: str | os.PathLike | None = None, *, max_pixels: int = MAX_PIXELS,
                max_aspect: float = MAX_ASPECT_RATIO) -> tuple[int, int]:
    """(width, height) as stored, from the header only: a cheap check before slow work.

    Raises FileNotFoundError for a missing file and `ImageError` for what `open_rgb` would refuse from
    the header (a file that is truncated further on is only found when decoding)."""
    source = _source(source)
    with _opened(source, name or (None if isinstance(source, bytes) else source), max_pixels, max_aspect) as im:
        return im.size


def read_image(source: ImageSource, name: str | os.PathLike | None = None, *, upright: bool = True,
               max_pixels: int = MAX_PIXELS, max_aspect: float = MAX_ASPECT_RATIO,
               max_side: int | None = None) -> tuple[Image.Image, int]:
    """A file path or encoded bytes -> (RGB image, EXIF orientation of the file, 1 = none).

    The size is checked from the header before decoding. `upright` applies the EXIF orientation to
    the pixels (the returned orientation then says what was applied); `upright=False` returns the
    pixels as stored, for callers whose annotations are in stored coordinates (`apply_orientation`
    turns them with the image). `max_side`: decode a JPEG at reduced scale where PIL can, then
    shrink to fit max_side x max_side. Raises FileNotFoundError or `ImageError`.
    """
    source = _source(source)
    name = name or (None if isinstance(source, bytes) else source)
    with _opened(source, name, max_pixels, max_aspect) as im:
        if max_side:
            im.draft("RGB", (max_side, max_side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        im.load()
        orientation = exif_orientation(im)
        image = to_rgb(im)
    if upright:
        image = apply_orientation(image, orientation)
    if max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return image, orientation


def open_image(source: ImageSource, name: str | os.PathLike | None = None, *, max_pixels: int = MAX_PIXELS,
               max_aspect: float = MAX_ASPECT_RATIO) -> Image.Image:
    """A file or encoded bytes decoded in its own mode and as stored (no EXIF rotation, no conversion):
    for masks and label maps, whose pixels are data in the stored coordinates. Same size checks and
    errors as `read_image`."""
    source = _source(source)
    with _opened(source, name or (None if isinstance(source, bytes) else source), max_pixels, max_aspect) as im:
        im.load()
        return im


def open_rgb(path: str | os.PathLike, **options) -> Image.Image:
    """An image file as RGB, upright by its EXIF orientation, 16-bit scaled to 8 bit, its size checked
    before decoding (see `read_image` for the options). FileNotFoundError or `ImageError` (a ValueError)."""
    return read_image(path, **options)[0]


def decode_rgb(data: bytes, name: str | None = None, **options) -> Image.Image:
    """Encoded image bytes as `open_rgb` reads a file; `name` names the image in errors."""
    if not data:
        raise ImageError(f"{_label(name)} is empty (0 bytes)")
    return read_image(bytes(data), name, **options)[0]


# EXIF orientation -> the transpose that makes the image upright (as PIL.ImageOps.exif_transpose).
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag of an opened image, 1 (as stored) when absent, unknown or unreadable:
    a broken EXIF block does not make an otherwise readable image unusable."""
    try:
        value = int(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - corrupt EXIF comes in many exception types
        return 1
    return value if value in _ORIENTATIONS else 1


def apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    """Turn `image` (or a mask image in the same stored coordinates) upright by an EXIF orientation value."""
    method = _ORIENTATIONS.get(int(orientation))
    return image if method is None else image.transpose(method)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparent areas become black as in a plain `convert`.

    High-bit-depth grey is scaled to 8 bit by its type's range (`convert` would clip it: every value
    above 255 becomes white): `I;16*` by 65535 (v -> round(v / 257)). `I` (32-bit int) has no fixed
    white level: it is taken as 16-bit when every value fits in 0..65535 (how PIL and most tools store
    16-bit data in it), and otherwise stretched from its own min..max. `F` (float) is taken as 0..1
    when it fits, and otherwise stretched from its min..max. No EXIF rotation: an image in memory is
    used as the caller sees it (the file readers apply it).
    """
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        image = Image.fromarray(_to_uint8(image), "L")
    if image.mode in ("P", "LA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def _to_uint8(image: Image.Image) -> np.ndarray:
    values = np.asarray(image).astype(np.float64)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if image.mode.startswith("I;16") or (image.mode == "I" and lo >= 0 and hi <= 65535):
        scaled = values / 257.0
    elif image.mode == "F" and lo >= 0 and hi <= 1:
        scaled = values * 255.0
    else:  # no fixed range: the image's own
        scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    return np.rint(np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)).clip(0, 255).astype(np.uint8)
