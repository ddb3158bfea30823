"""Batched, cached feature extraction shared by the benchmarks.

Images are named by `ImageRef`s (a file or encoded bytes), loaded in batches with a DataLoader and
encoded with every prompt at once (`cross=True`, so the prompt-independent blocks run once per image).
Global features are cached per (model, prompt, gate factor, image list): in memory always, and on
disk as safetensors when a cache folder is given, because CORE, PODS and the gate sweep re-read them.

Under torchrun, inside `sharded_over_ranks()`, the passes split their batches over the ranks and
gather the results, so every rank holds the 1-process result (see `_encode`). `steervit embed`'s
files (one, or per-rank shards and an index) are read back by `load_embeddings`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from ..io import atomic_path, decode_rgb, open_rgb
from ..train import distributed


# Bumped whenever image reading changes what pixels a file gives (2: EXIF orientation, 16-bit
# scaling), so features cached on disk by an older reader are never reused.
READER_VERSION = 2


@dataclass(frozen=True)
class ImageRef:
    """One image: a file `path`, or encoded bytes `data` (parquet rows). `key` names it in caches."""

    key: str
    path: Path | None = None
    data: bytes | None = None
    # False for images whose label maps are in the file's stored pixel coordinates (dense benchmarks):
    # then the image is read as stored too, so labels and pixels line up whatever its EXIF says.
    upright: bool = True

    @classmethod
    def file(cls, path: str | Path, root: str | Path | None = None, *, upright: bool = True) -> "ImageRef":
        path = Path(path)
        key = path.relative_to(root).as_posix() if root is not None else path.as_posix()
        return cls(key=key, path=path, upright=upright)

    @classmethod
    def encoded(cls, data: bytes, name: str = "") -> "ImageRef":
        return cls(key=name or hashlib.sha1(data).hexdigest(), data=data)

    def open(self) -> Image.Image:
        """RGB, upright by its EXIF orientation, size-checked: steervit.io's reader, as every path."""
        if self.path is not None:
            return open_rgb(self.path, upright=self.upright)
        return decode_rgb(self.data, self.key, upright=self.upright)


class ImageDataset(torch.utils.data.Dataset):
    def __init__(self, refs: Sequence[ImageRef], transform: Callable) -> None:
        self.refs = list(refs)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.refs[i].open())


def batches(refs: Sequence[ImageRef], transform: Callable, batch_size: int = 32, workers: int = 0,
            desc: str = "") -> Iterator[torch.Tensor]:
    """Transformed images in order, `batch_size` at a time, with a progress bar."""
    from tqdm import tqdm

    loader = torch.utils.data.DataLoader(ImageDataset(refs, transform), batch_size=batch_size,
                                         num_workers=workers, shuffle=False)
    yield from tqdm(loader, desc=desc or "images", unit="batch", disable=None, leave=False)


_sharding = {"on": False}


@contextlib.contextmanager
def sharded_over_ranks():
    """Within this block the feature passes below share their images among the ranks of the started
    process group (torchrun), and every rank must run them together, as the eval commands do.
    Opt-in, so that a library caller that started a group for something else never waits on peers."""
    before, _sharding["on"] = _sharding["on"], True
    try:
        yield
    finally:
        _sharding["on"] = before


def _encode(refs: Sequence[ImageRef], transform: Callable, batch_size: int, workers: int, desc: str,
            encode: Callable[[torch.Tensor, range], torch.Tensor]) -> torch.Tensor:
    """`encode(images, rows)` over `refs` in batches of `batch_size`, rows concatenated in order.

    Sharded (see `sharded_over_ranks`), rank r encodes its contiguous block of whole batches and
    the blocks are gathered in rank order: every image sits in the same batch, with the same
    neighbours, as in one process, so the same operations give the same numbers on every rank."""
    info = distributed.current() if _sharding["on"] else distributed.DistInfo()
    share = distributed.contiguous_share(-(-len(refs) // batch_size), info)
    lo, hi = share.start * batch_size, min(share.stop * batch_size, len(refs))
    parts, start = [], lo
    for x in batches(list(refs[lo:hi]), transform, batch_size, workers, desc):
        parts.append(encode(x, range(start, start + x.shape[0])).float().cpu())
        start += x.shape[0]
    local = torch.cat(parts) if parts else torch.empty(0)
    return distributed.all_gather_rows(local) if info.enabled else local


# ------------------------------------------------------------------------------------ pre-processing
def square_transform(model, size: int | None = None) -> Callable[[Image.Image], torch.Tensor]:
    """The model's no-crop transform (whole image to size x size, normalised; `Preprocessing`).

    Dense benchmarks use it instead of `get_transforms()` (which may crop) so that every pixel of
    the ground truth has a prediction: masks go through `resize_mask` with the same size.
    """
    return model.preprocessing.with_size(size or model.image_size).transform(crop=False)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Label map (H, W) -> (size, size) by nearest neighbour, so labels are never blended."""
    im = Image.fromarray(np.asarray(mask).astype(np.int32))
    return np.asarray(im.resize((size, size), Image.NEAREST))


def read_label_png(path: str | Path) -> np.ndarray:
    """A label PNG as integers: palette images give their indices, grey images their values."""
    with Image.open(path) as im:
        if im.mode not in ("P", "L", "I", "I;16", "1"):
            im = im.convert("L")
        return np.asarray(im).astype(np.int64)


# ------------------------------------------------------------------------------------ caching
def model_fingerprint(model) -> str:
    """A short hash of what determines features: config, trained tensors and a trunk signature.

    The trunk is represented by its weight-file hash when known and by its patch embedding, position
    embedding and final norm (cheap, and different for every pretrained trunk).
    """
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    tensors = dict(sorted(model.adapter_state_dict().items()))
    trunk_params = dict(model.trunk.named_parameters())
    for name in ("patch_embed.proj.weight", "pos_embed", "norm.weight"):
        if name in trunk_params:
            tensors["trunk." + name] = trunk_params[name]
    for name, value in tensors.items():
        h.update(name.encode())
        h.update(value.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def refs_digest(refs: Sequence[ImageRef]) -> str:
    h = hashlib.sha256()
    for ref in refs:
        h.update(ref.key.encode() + b"\0")
    return h.hexdigest()[:16]


class FeatureCache:
    """Feature tensors by key: in memory, and under `directory/<model fingerprint>/` when given."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory else None
        self.memory: dict[str, torch.Tensor] = {}
        self._fingerprints: dict[int, str] = {}

    def key(self, model, kind: str, prompt: str | None, refs: Sequence[ImageRef], transform: str) -> str:
        fingerprint = self._fingerprints.setdefault(id(model), model_fingerprint(model))
        gate = None if prompt is None else model.gate_factor  # plain features ignore the gate
        spec = json.dumps([READER_VERSION, fingerprint, kind, prompt, gate, transform, model.image_size,
                           len(refs), refs_digest(refs)])
        return fingerprint + "/" + kind + "-" + hashlib.sha256(spec.encode()).hexdigest()[:24]

    def get(self, key: str) -> torch.Tensor | None:
        if key in self.memory:
            return self.memory[key]
        if self.directory is not None:
            path = self.directory / f"{key}.safetensors"
            if path.is_file():
                from safetensors.torch import load_file

                self.memory[key] = load_file(str(path))["features"]
                return self.memory[key]
        return None

    def put(self, key: str, features: torch.Tensor, meta: dict[str, str]) -> None:
        features = features.detach().float().cpu().contiguous()
        self.memory[key] = features
        if self.directory is not None and distributed.current().is_main:  # every rank holds the same features
            from safetensors.torch import save_file

            with atomic_path(self.directory / f"{key}.safetensors") as tmp:
                save_file({"features": features}, str(tmp), metadata={k: str(v) for k, v in meta.items()})


# ------------------------------------------------------------------------------------ extraction
@torch.no_grad()
def global_features(model, refs: Sequence[ImageRef], prompts: Sequence[str] | None, *,
                    batch_size: int = 32, workers: int = 0, cache: FeatureCache | None = None,
                    desc: str = "") -> torch.Tensor:
    """Global features of every image under every prompt: (N, P, D), or (N, D) when `prompts` is None.

    Only the prompts missing from the cache are computed, all in one pass over the images. At gate
    factor 0 the steered features are exactly the plain ones, so those are computed once and repeated.
    """
    cache = cache if cache is not None else FeatureCache()
    if prompts is not None and model.gate_factor == 0.0:
        plain = global_features(model, refs, None, batch_size=batch_size, workers=workers, cache=cache, desc=desc)
        return plain[:, None].expand(-1, len(prompts), -1)
    wanted = [None] if prompts is None else list(prompts)
    keys = {p: cache.key(model, "global", p, refs, "eval") for p in dict.fromkeys(wanted)}
    missing = [p for p, k in keys.items() if cache.get(k) is None]
    if missing:
        text = None if missing == [None] else model.encode_text(missing)

        def encode(x: torch.Tensor, rows: range) -> torch.Tensor:
            feats = model.get_global_features(x, text, cross=text is not None)
            return feats if text is not None else feats[:, None]

        computed = _encode(refs, model.get_transforms(), batch_size, workers, desc, encode)
        for j, p in enumerate(missing):
            cache.put(keys[p], computed[:, j], {"prompt": json.dumps(p), "gate_factor": model.gate_factor,
                                                "images": len(refs)})
    out = torch.stack([cache.get(keys[p]) for p in wanted], dim=1)
    return out[:, 0] if prompts is None else out


@torch.no_grad()
def paired_global_features(model, refs: Sequence[ImageRef], prompts: Sequence[str] | None, *,
                           batch_size: int = 32, workers: int = 0, desc: str = "") -> torch.Tensor:
    """Global features of image i under prompt i: (N, D). Repeated (image, prompt) pairs run once."""
    pairs = list(zip((r.key for r in refs), prompts if prompts is not None else [None] * len(refs)))
    unique = list(dict.fromkeys(pairs))
    first = {pair: i for i, pair in reversed(list(enumerate(pairs)))}
    order = [first[pair] for pair in unique]
    uniq_prompts = None if prompts is None else sorted({prompts[i] for i in order})
    embedding = None if uniq_prompts is None else model.encode_text(uniq_prompts)
    index = {p: j for j, p in enumerate(uniq_prompts or [])}

    def encode(x: torch.Tensor, rows: range) -> torch.Tensor:
        text = None if embedding is None else embedding[[index[prompts[order[r]]] for r in rows]]
        return model.get_global_features(x, text)

    feats = _encode([refs[i] for i in order], model.get_transforms(), batch_size, workers, desc, encode)
    row = {pair: j for j, pair in enumerate(unique)}
    return feats[[row[pair] for pair in pairs]]


@torch.no_grad()
def dense_features(model, refs: Sequence[ImageRef], prompt: str | None, transform: Callable, *,
                   batch_size: int = 32, workers: int = 0, desc: str = "") -> torch.Tensor:
    """Patch features (N, patches, D) of every image under one prompt (None = plain trunk)."""
    embedding = None if prompt is None else model.encode_text([prompt])

    def encode(x: torch.Tensor, rows: range) -> torch.Tensor:
        text = None if embedding is None else embedding.repeat_interleave(x.shape[0])
        return model.get_dense_features(x, text)

    return _encode(refs, transform, batch_size, workers, desc, encode)


# ------------------------------------------------------------------------------------ embedding files
INDEX_SUFFIX = ".index.json"
INDEX_FORMAT = "steervit-embed-shards"


@dataclass
class Embeddings:
    """What `steervit embed` wrote, as one result: global features (N, D), patch features
    (N, patches, D) or None, the image paths (relative to `meta["root"]`) in row order, the settings."""

    global_features: torch.Tensor
    dense_features: torch.Tensor | None
    paths: list[str]
    meta: dict = field(default_factory=dict)


def shard_path(out: str | Path, rank: int, world_size: int) -> Path:
    """What rank `rank` of a torchrun `embed` writes: features.npy -> features-00001-of-00004.npy."""
    out = Path(out)
    return out.with_name(f"{out.stem}-{rank:05d}-of-{world_size:05d}{out.suffix}")


def index_path(out: str | Path) -> Path:
    """The index a torchrun `embed` writes beside its shards: features.safetensors.index.json."""
    out = Path(out)
    return out.with_name(out.name + INDEX_SUFFIX)


def save_embeddings(out: str | Path, global_feats: torch.Tensor, dense_feats: torch.Tensor | None,
                    paths: list[str], meta: dict) -> list[Path]:
    """One `embed` file, atomically: FILE.safetensors ("global", "dense"; paths and `meta` as JSON
    metadata) or FILE.npy (global only) with FILE.json (paths and `meta`). Returns what was written."""
    from safetensors.torch import save_file

    out = Path(out)
    meta = {**meta, "paths": paths}
    if out.suffix == ".npy":
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.save(f, global_feats.numpy())
        sidecar = out.with_suffix(".json")
        with atomic_path(sidecar) as tmp:
            tmp.write_text(json.dumps(meta, indent=1) + "\n")
        return [out, sidecar]
    tensors = {"global": global_feats} if dense_feats is None else {"global": global_feats, "dense": dense_feats}
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in meta.items()})
    return [out]


def write_shard_index(out: str | Path, world_size: int, counts: Sequence[int], meta: dict) -> Path:
    """The index of a torchrun `embed` run (rank 0 writes it once every shard is written): the shards in
    row order, rank 0 first; ranks that kept no image wrote no shard and are not listed."""
    shards = [{"file": shard_path(out, rank, world_size).name, "rank": rank, "images": int(n)}
              for rank, n in enumerate(counts) if n]
    index = {"format": INDEX_FORMAT, "version": 1, "images": int(sum(counts)), "world_size": world_size,
             "order": "the shards' rows concatenated in the order listed", "shards": shards, "meta": meta}
    path = index_path(out)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    return path


def load_embeddings(path: str | Path) -> Embeddings:
    """Read what `steervit embed` wrote, from one process or from torchrun, as one result.

    `path`: FILE.safetensors or FILE.npy (read as it is), a torchrun run's FILE.<suffix>.index.json,
    or the `--out` name of a torchrun run (only its index and shards exist): the shards are then
    concatenated in the index's order, which is the order one process would have written."""
    path = Path(path).expanduser()
    if path.name.endswith(INDEX_SUFFIX):
        return _load_sharded(path)
    if not path.exists() and index_path(path).is_file():
        return _load_sharded(index_path(path))
    return _load_one(path)


def _load_one(path: Path) -> Embeddings:
    from ..io import require_file

    require_file(path, "embeddings file")
    if path.suffix == ".npy":
        meta = json.loads(require_file(path.with_suffix(".json"), "embeddings list of paths").read_text())
        features = torch.from_numpy(np.load(path, allow_pickle=False))
        return Embeddings(features, None, meta.pop("paths"), meta)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: not an embed output (FILE.safetensors, FILE.npy or FILE.<suffix>{INDEX_SUFFIX})")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if "global" not in tensors or "paths" not in meta:
        raise ValueError(f"{path}: not an embed output (no 'global' tensor or no 'paths' metadata)")
    return Embeddings(tensors["global"], tensors.get("dense"), meta.pop("paths"), meta)


def _load_sharded(index_file: Path) -> Embeddings:
    from ..io import require_file

    index = json.loads(require_file(index_file, "embeddings index").read_text(encoding="utf-8"))
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ValueError(f"{index_file}: not an index written by `steervit embed` (format {INDEX_FORMAT!r})")
    if not index.get("shards"):
        raise ValueError(f"{index_file} lists no shards; embed again")
    parts = []
    for shard in index["shards"]:
        part = _load_one(index_file.parent / Path(shard["file"]).name)  # beside the index, never elsewhere
        if len(part.paths) != shard["images"] or part.global_features.shape[0] != shard["images"]:
            raise ValueError(f"{shard['file']} holds {part.global_features.shape[0]} images, the index "
                             f"{index_file} says {shard['images']}: the shard is from another run; embed again")
        parts.append(part)
    dense = None if parts[0].dense_features is None else torch.cat([p.dense_features for p in parts])
    return Embeddings(torch.cat([p.global_features for p in parts]), dense,
                      [path for p in parts for path in p.paths], dict(index["meta"]))
