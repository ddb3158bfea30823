"""Small file helpers shared by everything that reads or writes: atomic writes, clear missing-file errors."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from PIL import Image, UnidentifiedImageError

# Refuse decompression bombs: PIL warns above this and raises above twice this.
Image.MAX_IMAGE_PIXELS = 64_000_000


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


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an image file as RGB (grey, RGBA, palette and CMYK are converted); clear error if unreadable."""
    path = require_file(path, "image")
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparent areas become black as in a plain `convert`."""
    if image.mode == "RGB":
        return image
    if image.mode in ("P", "LA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")
