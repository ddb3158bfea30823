"""Reader for the published Hugging Face dataset `JonaRuthardt/SteerViT` from local files.

Accepted inputs (no `datasets` package needed; pyarrow reads them):
- the hub's parquet files, e.g. `data/train-00000-of-00042.parquet` (also the parquet-converter
  layout `default/train/0000.parquet`), or a hub cache folder holding them;
- `datasets` arrow files: `save_to_disk` folders (`train/data-00000-of-00003.arrow`) and the
  `datasets` cache (`steer_vi_t-train-00000-of-00010.arrow`).
Columns: `image_id`, `dataset`, `referential_expression`, `mask`; the mask is an HF `Image` feature,
stored as a struct {"bytes": PNG bytes, "path": str | None}. Already-loaded rows (mask = PIL image)
go through `records_from_rows`.

The dataset ships no images: they are resolved under the user's roots by `image_paths`. Rows whose
root was not given are dropped and counted in a log line.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

from .image_paths import coco_image_path, mapillary_image_path, visual_genome_image_path
from .records import ImageMask, MaskSpec, PngBytesMask, PngMask, Record, resolve_path

log = logging.getLogger(__name__)

COLUMNS = ("image_id", "dataset", "referential_expression", "mask")


def read_steervit_hf(
    path: str | os.PathLike,
    split: str = "train",
    *,
    coco_root: str | os.PathLike | None = None,
    vg_root: str | os.PathLike | None = None,
    mapillary_root: str | os.PathLike | None = None,
) -> list[Record]:
    """All records of `split` from the parquet/arrow files at `path` (a file or a folder)."""
    files = find_split_files(path, split)
    records: list[Record] = []
    dropped: Counter[str] = Counter()
    for file in files:
        rows = _iter_rows(file)
        records.extend(
            records_from_rows(
                rows, split, coco_root=coco_root, vg_root=vg_root, mapillary_root=mapillary_root,
                base_dir=file.parent, dropped=dropped,
            )
        )
    if dropped:
        log.warning("SteerViT HF %s: dropped rows %s", split, dict(dropped))
    return records


def records_from_rows(
    rows: Iterable[dict],
    split: str | None = None,
    *,
    coco_root: str | os.PathLike | None = None,
    vg_root: str | os.PathLike | None = None,
    mapillary_root: str | os.PathLike | None = None,
    base_dir: str | os.PathLike = ".",
    dropped: Counter | None = None,
) -> Iterator[Record]:
    """Rows as dicts (from parquet, or a loaded `datasets.Dataset` whose masks are PIL images)."""
    dropped = Counter() if dropped is None else dropped
    for row in rows:
        image_id, source = str(row["image_id"]), str(row["dataset"])
        image = _resolve_image(image_id, source, coco_root, vg_root, mapillary_root)
        if image is None:
            dropped[f"no image root for {source!r}"] += 1
            continue
        mask = _mask_spec(row["mask"], base_dir)
        if mask is None:
            dropped["no mask"] += 1
            continue
        yield Record(image, str(row["referential_expression"]), mask, source, image_id, split)


def _resolve_image(image_id, source, coco_root, vg_root, mapillary_root) -> str | None:
    name = source.lower()
    if image_id.startswith("COCO_"):
        return coco_image_path(coco_root, image_id) if coco_root is not None else None
    if "visual" in name or "genome" in name or name in ("vg", "visual_genome"):
        return visual_genome_image_path(vg_root, image_id) if vg_root is not None else None
    if "mapillary" in name:
        return mapillary_image_path(mapillary_root, image_id) if mapillary_root is not None else None
    return None


def _mask_spec(value: Any, base_dir) -> MaskSpec | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return PngBytesMask(bytes(value))
    if isinstance(value, dict):
        if value.get("bytes"):
            return PngBytesMask(bytes(value["bytes"]))
        if value.get("path"):
            return PngMask(resolve_path(value["path"], base_dir))
        return None
    if hasattr(value, "mode") and hasattr(value, "size"):  # a decoded PIL image
        return ImageMask(value)
    raise TypeError(f"unsupported mask value: {type(value).__name__}")


def find_split_files(path: str | os.PathLike, split: str) -> list[Path]:
    """Parquet/arrow files of `split` under `path` (hub cache symlinks to one blob are read once)."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"SteerViT dataset not found: {path}")
    candidates = sorted(p for ext in ("*.parquet", "*.arrow") for p in path.rglob(ext))
    if not candidates:
        raise FileNotFoundError(f"no .parquet or .arrow files under {path}")
    chosen, seen = [], set()
    for file in candidates:
        if _belongs_to_split(file.relative_to(path), split):
            real = os.path.realpath(file)
            if real not in seen:
                seen.add(real)
                chosen.append(file)
    if not chosen:
        raise FileNotFoundError(f"no files of split {split!r} under {path}; found e.g. {candidates[0]}")
    return chosen


def _belongs_to_split(relative: Path, split: str) -> bool:
    if split in relative.parts[:-1]:
        return True
    stem = relative.name.split(".")[0]
    tokens = stem.replace("_", "-").split("-")
    return split in tokens


def _iter_rows(file: Path) -> Iterator[dict]:
    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        batches = pq.ParquetFile(file).iter_batches(batch_size=4096, columns=list(COLUMNS))
    else:
        batches = _arrow_batches(file)
    for batch in batches:
        yield from batch.select(list(COLUMNS)).to_pylist()


def _arrow_batches(file: Path):
    import pyarrow as pa

    with pa.memory_map(str(file)) as source:
        try:
            stream = pa.ipc.open_stream(source)  # what `datasets` writes
        except pa.ArrowInvalid:  # the random-access IPC file format
            stream = None
        if stream is not None:
            yield from stream
            return
        source.seek(0)
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
