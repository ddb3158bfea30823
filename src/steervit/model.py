"""SteerViT: a frozen ViT whose tokens read a frozen text encoder through gated cross-attention.

The model is composed explicitly: the trunk's own modules run in order (embedding, blocks, final
norm) and a `GatedCrossAttention` runs before each block that has one. Nothing inside timm or
transformers is replaced. Reference §1 (architecture) and §3 (inference behaviour).

Text can be given as strings (one per image, the published form), as a `TextEmbedding` from
`encode_text` (cached, reusable, the text encoder can then be dropped), and with `cross=True` every
prompt is applied to every image in one batched pass, giving outputs shaped (B, P, ...).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
from pathlib import Path
from typing import Callable, Iterator, Sequence, Union

import torch
import torch.utils.checkpoint
from huggingface_hub import ModelHubMixin
from torch import nn

from . import families
from . import heatmaps as hm
from .config import SteerViTConfig
from .connector import Connector
from .cross_attention import GatedCrossAttention, PromptKeys
from .families import BlockKwargs
from .text import TextEmbedding, TextEncoder
from .transforms import Preprocessing
from .trunk import create_trunk

Texts = Union[None, Sequence[str], TextEmbedding]
Steer = Callable[[GatedCrossAttention, torch.Tensor], torch.Tensor]  # applies one cross-attention layer
DEFAULT_CHUNK = 64  # image-prompt pairs per pass in cross mode, off the CPU
# On the CPU, cross mode sizes each pass by its tokens instead: as many pairs as keep one pass's
# pairs x tokens x width within this many values (about 3 MiB in fp32), so a block's intermediates
# (its MLP widens 4x) stay in the caches and in memory the allocator reuses. From about 10 ViT-S/14
# pairs on, in fp32 and in bf16 alike (whose kernels keep some fp32 intermediates), each pass
# page-faulted fresh memory in (2026-12); compare with P calls in bench/inference.py.
CPU_CHUNK_VALUES = 800_000


def check_gate_factor(factor: float) -> float:
    """A gate factor is a finite number >= 0 (NaN or inf would turn every steered output into NaN)."""
    factor = float(factor)
    if not (math.isfinite(factor) and factor >= 0.0):
        raise ValueError(f"gate factor must be a finite number >= 0, got {factor}")
    return factor


class SteerViT(nn.Module, ModelHubMixin):
    """A steerable Vision Transformer. Build with `from_pretrained` or from a `SteerViTConfig`."""

    def __init__(
        self,
        config: SteerViTConfig,
        *,
        trunk: nn.Module | None = None,
        text_encoder: TextEncoder | None | bool = None,
        backbone_weights: str | Path | None = None,
        pretrained_trunk: bool | None = None,
    ) -> None:
        """`trunk`/`text_encoder` may be given ready-made; otherwise they are built from `config`.

        `text_encoder=False` builds no text encoder (then `config.text_dim` must be set, and text is
        passed as saved `TextEmbedding`s).
        """
        super().__init__()
        # A private copy: building fills in text_dim and the resolved layers, never on the caller's object.
        config = self.config = dataclasses.replace(config)
        self.trunk = trunk if trunk is not None else create_trunk(
            config.trunk, config.image_size, backbone_weights, pretrained_trunk
        )
        self.trunk.eval().requires_grad_(False)
        # Which kind of timm ViT the trunk is; refuses one that cannot take cross-attention.
        self.family = families.family_of(self.trunk, config.trunk)
        if config.pooling == "cls" and not self.family.has_cls:
            raise ValueError(f"the {self.family.name} trunk {config.trunk!r} has no CLS token to pool: "
                             "use pooling='mean' (the mean of the patch tokens)")
        if text_encoder is None:
            text_encoder = TextEncoder(config.text_encoder)
        self.text_encoder = text_encoder or None
        if self.text_encoder is not None:
            self.text_encoder.requires_grad_(False)
            config.text_dim = self.text_encoder.dim
        if config.text_dim is None:
            raise ValueError("config.text_dim is needed when the model has no text encoder")

        width = self.feature_dim
        config.cross_attn_layers = config.resolve_cross_attn_layers(len(self.trunk.blocks))
        self.connector = Connector(config.text_dim, width, config.connector)
        # Early fusion: keyed by the block each layer precedes. Late fusion: the same number of
        # layers stacked after the last block, keyed 0..k-1; the trunk's blocks are then untouched.
        keys = config.cross_attn_layers if config.fusion == "early" else range(len(config.cross_attn_layers))
        self.cross_attn_layers = nn.ModuleDict({
            str(i): GatedCrossAttention(width, config.cross_attn_heads, config.cross_attn_head_dim,
                                        config.use_ffn, config.ffn_mult, config.gate)
            for i in keys
        })
        if not self.cross_attn_layers:
            raise ValueError(f"no cross-attention layer fits a trunk of {len(self.trunk.blocks)} blocks")
        # Insertion points, resolved once: block index -> the layer run just before that block (early
        # fusion), or the layers run in order after the last block (late fusion).
        layers = list(self.cross_attn_layers.values())
        self.early_layers: dict[int, GatedCrossAttention] = (
            dict(zip(config.cross_attn_layers, layers)) if config.fusion == "early" else {})
        self.late_layers: list[GatedCrossAttention] = layers if config.fusion == "late" else []
        self.seg_head = nn.Linear(width, 1)
        nn.init.zeros_(self.seg_head.weight)
        nn.init.zeros_(self.seg_head.bias)
        self._gate_factor = 1.0
        # Recompute frozen trunk blocks in the backward pass instead of storing their activations.
        self.grad_checkpointing = False

    # ----------------------------------------------------------------------------- properties
    @property
    def patch_size(self) -> int:
        return int(self.trunk.patch_embed.patch_size[0])

    @property
    def feature_dim(self) -> int:
        return int(self.trunk.embed_dim)

    @property
    def image_size(self) -> int:
        return int(self.config.image_size)

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.trunk.num_prefix_tokens)

    @property
    def device(self) -> torch.device:
        return self.trunk.patch_embed.proj.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.trunk.patch_embed.proj.weight.dtype

    @property
    def gate_factor(self) -> float:
        return self._gate_factor

    # ----------------------------------------------------------------------------- training view
    def train(self, mode: bool = True) -> "SteerViT":
        """Only the adapter trains; the frozen trunk and text encoder always stay in eval mode."""
        super().train(mode)
        self.trunk.eval()
        if self.text_encoder is not None:
            self.text_encoder.eval()
        return self

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"connector": self.connector, "cross_attn_layers": self.cross_attn_layers, "seg_head": self.seg_head}

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Name -> parameter of the adapter (CA layers, connector, head): what checkpoints store.

        Training updates all of them except `seg_head.bias`, which the spatial softmax ignores."""
        return {
            f"{prefix}.{name}": p
            for prefix, module in self.trainable_modules().items()
            for name, p in module.named_parameters()
        }

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable tensors (what checkpoints store), detached."""
        return {k: p.detach() for k, p in self.trainable_parameters().items()}

    def load_adapter_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load trainable tensors strictly: any missing, unexpected or mis-shaped key is an error."""
        own = self.trainable_parameters()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(
            f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            for k in set(own) & set(state)
            if tuple(state[k].shape) != tuple(own[k].shape)
        )
        if missing or unexpected or wrong:
            lines = [f"the weights do not fit this model (trunk {self.config.trunk}, width "
                     f"{self.feature_dim}, {len(self.trunk.blocks)} blocks, text width {self.config.text_dim}):"]
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
                if keys:
                    lines.append(f"  {label} ({len(keys)}): " + ", ".join(keys[:10]) + (" ..." if len(keys) > 10 else ""))
            raise ValueError("\n".join(lines))
        with torch.no_grad():
            for k, p in own.items():
                p.copy_(state[k].to(p.dtype))

    def load_adapter(self, directory: str | Path) -> None:
        """Load the trainable weights of a saved model directory into this model, if it is the same variant."""
        from .checkpoint import read_saved

        config, state = read_saved(directory)
        ours, theirs = self.config.variant(), config.variant()
        if ours != theirs:
            diff = {k: (theirs[k], ours[k]) for k in ours if ours[k] != theirs[k]}
            raise ValueError(f"{directory} holds another model variant; (file, this model): {diff}")
        self.load_adapter_state_dict(state)

    def set_gate_factor(self, factor: float) -> None:
        """Scale every raw gate by `factor`: effective gate `tanh(factor * g)`; 0 = plain trunk.

        This is the model's default; every feature method also takes `gate_factor=` for one call,
        which is what the library itself uses (no state to set and restore). The stored parameters
        are untouched, so saving after this still writes the trained gates.
        """
        factor = check_gate_factor(factor)
        self._gate_factor = factor
        for layer in self.cross_attn_layers.values():
            layer.gate_factor = factor

    @contextlib.contextmanager
    def using_gate_factor(self, factor: float) -> Iterator["SteerViT"]:
        """`with model.using_gate_factor(f):` every call inside runs at gate factor `f`; the previous
        default comes back afterwards, also on error. For code that calls other code (a benchmark);
        a single call can pass `gate_factor=` instead."""
        previous = self._gate_factor
        self.set_gate_factor(factor)
        try:
            yield self
        finally:
            self.set_gate_factor(previous)

    def adapter_fingerprint(self) -> str:
        """A short hash of the connector weights; ties saved text embeddings to the weights that made them."""
        h = hashlib.sha256()
        for p in self.connector.parameters():
            h.update(p.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    # ----------------------------------------------------------------------------- text side
    def encode_text(self, prompts: Sequence[str]) -> TextEmbedding:
        """Prompts -> connector outputs + mask. Frozen encoder states are cached per prompt (LRU)."""
        if self.text_encoder is None:
            raise RuntimeError(
                "this model has no text encoder loaded; pass a TextEmbedding (see load_text_embedding) "
                "or load the model with a text encoder"
            )
        states, mask = self.text_encoder.encode(prompts)
        return self.embed_text_states(states, mask, prompts)

    def embed_text_states(self, states: torch.Tensor, mask: torch.Tensor, prompts: Sequence[str]) -> TextEmbedding:
        """Frozen text-encoder states (P, L, d_t) + mask -> connector outputs; for precomputed text caches."""
        weight = self.connector.mlp[0].weight
        if states.shape[-1] != weight.shape[1]:
            raise ValueError(f"text states have width {states.shape[-1]}, the connector expects {weight.shape[1]}")
        tokens = self.connector(states.to(device=weight.device, dtype=weight.dtype))
        return TextEmbedding(tokens, mask.to(device=tokens.device, dtype=torch.bool), list(prompts))

    def save_text_embedding(self, embedding: TextEmbedding, path: str | Path) -> None:
        embedding.fingerprint = self.adapter_fingerprint()
        embedding.save(path)

    def load_text_embedding(self, path: str | Path) -> TextEmbedding:
        """Load a saved embedding, refusing one made with different adapter weights."""
        embedding = TextEmbedding.load(path)
        if embedding.fingerprint and embedding.fingerprint != self.adapter_fingerprint():
            raise ValueError(
                f"{path} was made with other adapter weights (fingerprint {embedding.fingerprint}, "
                f"this model {self.adapter_fingerprint()}); re-encode the prompts"
            )
        if embedding.tokens.shape[-1] != self.feature_dim:
            raise ValueError(f"{path} has width {embedding.tokens.shape[-1]}, model expects {self.feature_dim}")
        return embedding.to(self.device, self.connector.mlp[0].weight.dtype)

    def drop_text_encoder(self) -> None:
        """Free the text encoder's memory; text must then come as `TextEmbedding`s."""
        self.text_encoder = None

    def _text(self, texts: Texts, batch: int, cross: bool) -> TextEmbedding | None:
        if texts is None:
            return None
        embedding = texts if isinstance(texts, TextEmbedding) else self.encode_text(texts)
        if not cross and len(embedding) != batch:
            raise ValueError(
                f"got {len(embedding)} prompts for {batch} images: give one prompt per image, "
                "or pass cross=True to apply every prompt to every image"
            )
        if embedding.tokens.shape[-1] != self.feature_dim:
            raise ValueError(f"text embedding width {embedding.tokens.shape[-1]} != model width {self.feature_dim}")
        return embedding.to(self.device, self.connector.mlp[0].weight.dtype)

    # ----------------------------------------------------------------------------- image side
    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a tensor (B, 3, H, W); got {type(images).__name__} "
                            "(use get_transforms() to turn PIL images into tensors)")
        if images.ndim == 3:
            raise ValueError(f"images must be batched (B, 3, H, W); got {tuple(images.shape)} "
                             "(add a batch axis with images[None])")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) with 3 channels; got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not divisible by the patch size {self.patch_size}")
        if images.shape[0] == 0:
            raise ValueError("empty batch of images")
        if not images.is_floating_point():
            raise TypeError(f"images must be normalised floating-point tensors, got {images.dtype}: "
                            "turn images into model input with model.get_transforms()")
        if not bool(torch.isfinite(images).all()):
            # A NaN or inf pixel would spread through attention to every token of its image.
            raise ValueError("images contain NaN or infinite values; replace them (e.g. torch.nan_to_num) first")
        return images.to(self.device, self.dtype)

    def _grid(self, images: torch.Tensor) -> tuple[int, int]:
        return images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size

    # ----------------------------------------------------------------------------- the block loop
    def _embed(self, images: torch.Tensor) -> tuple[torch.Tensor, BlockKwargs]:
        """The tokens before block 0 and each block's keyword arguments (see `families.embed`)."""
        return families.embed(self.trunk, images)

    def _block(self, i: int, x: torch.Tensor, kwargs: dict) -> torch.Tensor:
        """Trunk block `i`; recomputed in the backward pass when gradient checkpointing is on."""
        block = self.trunk.blocks[i]
        if self.grad_checkpointing and torch.is_grad_enabled() and x.requires_grad:
            return torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False, **kwargs)
        return block(x, **kwargs)

    def run_blocks(self, x: torch.Tensor, steer: Steer | None, *, start: int = 0, stop: int | None = None,
                   states: list[torch.Tensor] | None = None,
                   block_kwargs: BlockKwargs | None = None) -> torch.Tensor:
        """The one block loop: trunk blocks `start`..`stop`-1 on tokens `x`, each early-fusion
        cross-attention layer applied just before its block and the late-fusion layers after the last
        block (when `stop` is the depth). `steer(layer, x)` applies one layer (None: the plain trunk);
        `states`, if given, collects the tokens after every block run. Returns the tokens, not normed.
        `block_kwargs` are each block's arguments from `_embed` (an Eva's rotary embeddings); a trunk
        whose blocks take none may leave them out.

        `forward`, `forward_intermediates`, attention read-outs and the ONNX export all go through here.
        """
        depth = len(self.trunk.blocks)
        stop = depth if stop is None else stop
        if block_kwargs is None:
            if self.family.block_arguments:
                raise ValueError(f"the blocks of the {self.family.name} trunk take {self.family.block_arguments}: "
                                 "pass block_kwargs, as _embed returns them")
            block_kwargs = [{}] * depth
        for i in range(start, stop):
            if steer is not None and i in self.early_layers:
                x = steer(self.early_layers[i], x)
            x = self._block(i, x, block_kwargs[i])
            if states is not None:
                states.append(x)
        if steer is not None and stop == depth:
            for layer in self.late_layers:
                x = steer(layer, x)
        return x

    def insertion_points(self) -> list[tuple[str, GatedCrossAttention]]:
        """Where each cross-attention layer runs, named one way: "before block i" (early fusion) or
        "after the trunk, j of k" (late fusion)."""
        k = len(self.late_layers)
        return ([(f"before block {i}", layer) for i, layer in self.early_layers.items()]
                + [(f"after the trunk, {j + 1} of {k}", layer) for j, layer in enumerate(self.late_layers)])

    def _first_steered_block(self) -> int:
        """Blocks before this one do not depend on the prompt (all of them with late fusion)."""
        return min(self.early_layers, default=len(self.trunk.blocks))

    @staticmethod
    def _steer_with(text: TextEmbedding, gate_factor: float) -> Steer:
        return lambda layer, x: layer(x, text.tokens, text.mask, gate_factor)

    @staticmethod
    def _steer_with_keys(keys: dict[GatedCrossAttention, PromptKeys], rows: torch.Tensor, gate_factor: float) -> Steer:
        """Each layer reads its precomputed prompt keys, row `rows[i]` for image row i."""
        return lambda layer, x: layer(x, keys[layer].select(rows), None, gate_factor)

    def _factor(self, gate_factor: float | None) -> float:
        return self._gate_factor if gate_factor is None else check_gate_factor(gate_factor)

    def _tail(self, x: torch.Tensor, steer: Steer | None, start: int, attn_layer: int | None,
              block_kwargs: BlockKwargs | None = None) -> torch.Tensor:
        """From block `start` on: final-normed tokens, or, with `attn_layer`, that block's CLS->all
        self-attention probabilities (B, heads, N), read from its input after its cross-attention."""
        if attn_layer is None:
            return self.trunk.norm(self.run_blocks(x, steer, start=start, block_kwargs=block_kwargs))
        x = self.run_blocks(x, steer, start=start, stop=attn_layer, block_kwargs=block_kwargs)
        if steer is not None and attn_layer in self.early_layers:
            x = steer(self.early_layers[attn_layer], x)
        kwargs = {} if block_kwargs is None else block_kwargs[attn_layer]
        return families.self_attention_probs(self.trunk.blocks[attn_layer], x, **kwargs)[:, :, 0]

    def _pairs(self, images: torch.Tensor, texts: Texts, cross: bool, chunk_size: int | None,
               attn_layer: int | None = None, gate_factor: float | None = None) -> torch.Tensor:
        """Tokens (or attention) for each image with its text; in cross mode for every (image, prompt)
        pair, shaped (B, P, ...). The prompt-independent blocks run once per image.

        Memory in cross mode (no autograd): the (B, P, ...) output, the prompt keys (per layer
        2 x P x heads x L x D values, or x head_dim for long prompts), and the working set of one
        chunk at a time, about 6 x its tokens x width values (a block's input, residual, 4x MLP hidden);
        the chunk's pair count (`_pairs_per_chunk`) bounds it, whatever B and P are."""
        factor = self._factor(gate_factor)
        images = self._check_images(images)
        b = images.shape[0]
        text = self._text(texts, b, cross)
        x, block_kwargs = self._embed(images)
        if text is None or factor == 0.0:
            # Gate factor 0 makes every gate exactly 0: the output is the plain trunk's, so it runs
            # the plain trunk's operations in the same order (no chunking, no shared prefix).
            plain = self._tail(x, None, 0, attn_layer, block_kwargs=block_kwargs)
            if text is None or not cross:
                return plain
            return plain[:, None].expand(b, len(text), *plain.shape[1:])
        start = self._first_steered_block()
        if attn_layer is not None:
            start = min(start, attn_layer)
        x = self.run_blocks(x, None, stop=start, block_kwargs=block_kwargs)
        if not cross:
            return self._tail(x, self._steer_with(text, factor), start, attn_layer, block_kwargs)
        # Every (image, prompt) pair, image-major, a chunk of pairs per pass. The keys and values
        # depend on the prompt only: computed once per prompt and layer, each chunk picks its rows.
        p = len(text)
        chunk = self._pairs_per_chunk(x, chunk_size)
        keys = {layer: layer.cross_attn.prompt_keys(text.tokens, text.mask) for layer in self.cross_attn_layers.values()}
        out = None
        for lo in range(0, b * p, chunk):
            pair = torch.arange(lo, min(lo + chunk, b * p), device=x.device)
            part = self._tail(x[pair // p], self._steer_with_keys(keys, pair % p, factor), start, attn_layer,
                              block_kwargs)
            if out is None:  # one output buffer, filled chunk by chunk (no list of parts to concatenate)
                out = part.new_empty(b * p, *part.shape[1:])
            out[lo:lo + len(pair)] = part
        return out.view(b, p, *out.shape[1:])

    def _pairs_per_chunk(self, x: torch.Tensor, chunk_size: int | None) -> int:
        """Image-prompt pairs per pass in cross mode: `chunk_size` when given; else on the CPU as
        many as fit CPU_CHUNK_VALUES tokens x width (at least 1), elsewhere DEFAULT_CHUNK. It depends
        on one image's tokens x width only, never on how many images or prompts a call has."""
        if chunk_size:
            return max(1, chunk_size)
        if x.device.type != "cpu":
            return DEFAULT_CHUNK
        return max(1, CPU_CHUNK_VALUES // x[0].numel())

    def forward_intermediates(self, images: torch.Tensor, texts: Texts = None, *,
                              indices: int | Sequence[int] | None = None, norm: bool = False,
                              gate_factor: float | None = None, return_final: bool = False):
        """Token states (B, 1+N, D) after trunk blocks, cross-attention applied exactly where `forward`
        applies it: early fusion steers the blocks that follow each layer; late fusion steers only
        after the trunk, so every block's state equals the plain trunk's.

        `indices`: None = every block, an int n = the last n blocks, or a list of block indices
        (negative counts from the end). `norm` applies the trunk's final norm to each state, as timm's
        `forward_intermediates(norm=True)` does. `return_final` also returns `forward`'s output from
        the same pass: `(final, states)`.
        """
        factor = self._factor(gate_factor)
        images = self._check_images(images)
        text = self._text(texts, images.shape[0], cross=False)
        if factor == 0.0:
            text = None
        depth = len(self.trunk.blocks)
        if indices is None:
            wanted = list(range(depth))
        elif isinstance(indices, int):
            if not 0 < indices <= depth:
                raise ValueError(f"indices={indices}: ask for the last 1..{depth} blocks")
            wanted = list(range(depth - indices, depth))
        else:
            wanted = [int(i) for i in indices]
            bad = [i for i in wanted if not -depth <= i < depth]
            if bad:
                raise ValueError(f"block indices {bad} out of range for a trunk of {depth} blocks")
            wanted = [i % depth for i in wanted]
        states: list[torch.Tensor] = []
        steer = None if text is None else self._steer_with(text, factor)
        # Only the early layers touch block states; the late ones (after the trunk) do not.
        stop = len(self.trunk.blocks) if return_final else max(wanted) + 1
        x, block_kwargs = self._embed(images)
        x = self.run_blocks(x, steer, stop=stop, states=states, block_kwargs=block_kwargs)
        out = [states[i] for i in wanted]
        if norm:
            out = [self.trunk.norm(s) for s in out]
        return (self.trunk.norm(x), out) if return_final else out

    def forward(self, images: torch.Tensor, texts: Texts = None, *, return_logits: bool = False,
                cross: bool = False, chunk_size: int | None = None, gate_factor: float | None = None):
        """All tokens after the final norm (B, 1+N, D); with `return_logits` also the head's (B, N) logits.

        Every feature method takes `cross` (every prompt on every image: outputs (B, P, ...)),
        `chunk_size` (image-prompt pairs per pass in cross mode; by default sized to the CPU's caches,
        or DEFAULT_CHUNK on an accelerator) and `gate_factor` (this call only)."""
        tokens = self._pairs(images, texts, cross, chunk_size, gate_factor=gate_factor)
        if not return_logits:
            return tokens
        return tokens, self.seg_head(tokens[..., self.num_prefix_tokens:, :]).squeeze(-1)

    def _pool(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "cls":
            return tokens[..., 0, :]
        return tokens[..., self.num_prefix_tokens:, :].mean(-2)

    def get_global_features(self, images: torch.Tensor, texts: Texts = None, *, cross: bool = False,
                            chunk_size: int | None = None, gate_factor: float | None = None) -> torch.Tensor:
        """Global feature (B, D), or (B, P, D) with cross=True: CLS token or mean of patch tokens."""
        return self._pool(self._pairs(images, texts, cross, chunk_size, gate_factor=gate_factor))

    def get_global_and_dense_features(self, images: torch.Tensor, texts: Texts = None, *, cross: bool = False,
                                      chunk_size: int | None = None, gate_factor: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Both features from one pass: (B, D) and (B, N, D) (with cross=True: (B, P, D), (B, P, N, D))."""
        tokens = self._pairs(images, texts, cross, chunk_size, gate_factor=gate_factor)
        return self._pool(tokens), tokens[..., self.num_prefix_tokens:, :]

    def get_dense_features(self, images: torch.Tensor, texts: Texts = None, *, cross: bool = False,
                           chunk_size: int | None = None, gate_factor: float | None = None) -> torch.Tensor:
        """Patch tokens without prefix tokens: (B, N, D), or (B, P, N, D) with cross=True."""
        return self._pairs(images, texts, cross, chunk_size, gate_factor=gate_factor)[..., self.num_prefix_tokens:, :]

    def segmentation_logits(self, images: torch.Tensor, texts: Texts, *, cross: bool = False,
                            chunk_size: int | None = None, gate_factor: float | None = None) -> torch.Tensor:
        """The head's per-patch logits (B, N), or (B, P, N) with cross=True."""
        return self.forward(images, texts, return_logits=True, cross=cross, chunk_size=chunk_size,
                            gate_factor=gate_factor)[1]

    def get_heatmaps(self, images: torch.Tensor, texts: Texts, *, cross: bool = False,
                     chunk_size: int | None = None, gate_factor: float | None = None) -> torch.Tensor:
        """Softmax over patches, on the grid, bilinear to the input size: (B, 1, H, W) or (B, P, 1, H, W)."""
        logits = self.segmentation_logits(images, texts, cross=cross, chunk_size=chunk_size, gate_factor=gate_factor)
        grid = self._grid(images)
        probs = logits.float().softmax(-1).reshape(*logits.shape[:-1], *grid)
        return hm.upsample(probs, tuple(images.shape[-2:])).unsqueeze(-3)

    def get_attention_heatmaps(self, images: torch.Tensor, texts: Texts = None, layer: int = -1,
                               head_pooling: str = "mean", remove_sinks: bool = True,
                               interpolate: bool = True, *, cross: bool = False,
                               chunk_size: int | None = None, gate_factor: float | None = None) -> torch.Tensor:
        """CLS->patch self-attention of block `layer`, pooled over heads, sinks suppressed, min-max
        normalised, upsampled: (B, H, W), or (B, P, H, W) with cross=True."""
        if not self.family.has_cls:
            raise ValueError(f"attention heatmaps read the CLS token's attention, and the {self.family.name} "
                             f"trunk {self.config.trunk!r} has no CLS token: use get_heatmaps (the trained head)")
        depth = len(self.trunk.blocks)
        if not -depth <= layer < depth:
            raise ValueError(f"layer {layer} out of range for a trunk of {depth} blocks")
        if head_pooling not in hm.HEAD_POOLINGS:
            raise ValueError(f"head_pooling must be one of {hm.HEAD_POOLINGS}, got {head_pooling!r}")
        cls_attn = self._pairs(images, texts, cross, chunk_size, attn_layer=layer % depth, gate_factor=gate_factor)
        cls_attn = cls_attn[..., self.num_prefix_tokens:]
        lead = cls_attn.shape[:-2]
        maps = hm.attention_heatmaps(
            cls_attn.reshape(-1, *cls_attn.shape[-2:]), self._grid(images), tuple(images.shape[-2:]),
            head_pooling, remove_sinks, interpolate,
        )
        return maps.view(*lead, *maps.shape[1:])

    # ----------------------------------------------------------------------------- cross-attention read-out
    def get_cross_attention_maps(self, images: torch.Tensor, texts: Texts, layers: Sequence[int] | None = None, *,
                                 gate_factor: float | None = None) -> dict[int, torch.Tensor]:
        """Where each image token reads the prompt: per cross-attention layer, probabilities
        (B, heads, N_tokens, L), with one prompt per image.

        Keys are insertion indices, the keys of `cross_attn_layers` as ints (early fusion: the block
        the layer runs before; late fusion: 0..k-1), in running order, which is `insertion_points()`'s
        order; `layers` picks some of them (None: all). Rows are all tokens, prefix tokens (CLS,
        registers) first: `drop_prefix_rows` keeps the patches'. Columns are the prompt's tokens,
        padded to the longest prompt: a padded one gets exactly 0, each row sums to 1 over the real ones.

        The probabilities are recorded inside the one block loop (`run_blocks`), from the tokens each
        layer receives as it is applied, so they are the ones the steered forward uses. At gate factor
        0 no layer changes the tokens: the maps are then what each layer reads from the plain trunk's
        tokens, i.e. where the prompt would steer first if the gates were opened.
        """
        factor = self._factor(gate_factor)
        images = self._check_images(images)
        text = self._text(texts, images.shape[0], cross=False)
        if text is None:
            raise ValueError("cross-attention maps need prompts: pass texts, one per image")
        index = {layer: int(key) for key, layer in self.cross_attn_layers.items()}
        present = list(index.values())
        if isinstance(layers, int):
            layers = [layers]
        wanted = set(present) if layers is None else {int(i) for i in layers}
        unknown = sorted(wanted - set(present))
        if unknown or not wanted:
            raise ValueError(f"no cross-attention layer at {unknown or 'an empty list'}; "
                             f"this model has them at {present} (layers=None gives all)")
        maps: dict[int, torch.Tensor] = {}

        def apply_and_record(layer: GatedCrossAttention, x: torch.Tensor) -> torch.Tensor:
            if index[layer] in wanted:
                maps[index[layer]] = layer.cross_attn.attention_probs(x, text.tokens, text.mask)
            return layer(x, text.tokens, text.mask, factor)

        # Early fusion: the blocks after the last wanted layer cannot change its maps, so they do not run.
        stop = max(wanted) + 1 if self.early_layers else None
        x, block_kwargs = self._embed(images)
        self.run_blocks(x, apply_and_record, stop=stop, block_kwargs=block_kwargs)
        return maps

    def drop_prefix_rows(self, maps: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """`get_cross_attention_maps` output without the prefix tokens' rows: (B, heads, N_patches, L),
        patches in row-major grid order (reshape N_patches to the grid `images.shape[-2:] // patch_size`)."""
        p = self.num_prefix_tokens
        return {key: probs[..., p:, :] for key, probs in maps.items()}

    # ----------------------------------------------------------------------------- pre-processing
    @property
    def preprocessing(self) -> Preprocessing:
        """The one source of input size, normalisation and resize policy (the trunk's, at our size)."""
        return Preprocessing.from_trunk(self.trunk, self.image_size)

    def get_transforms(self, image_size: int | None = None, crop: bool = True):
        """timm's eval transform for the trunk, at the model's resolution (PIL image -> normalised tensor).

        Grey, RGBA and palette images are converted to RGB first. `crop=False` resizes the whole
        image to S x S (no centre crop), so masks can be resized alongside.
        """
        return self.preprocessing.with_size(image_size or self.image_size).transform(crop)

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) of the trunk's input normalisation."""
        return self.preprocessing.mean, self.preprocessing.std

    # ----------------------------------------------------------------------------- compilation
    def compile(self, **kwargs) -> "SteerViT":
        """`torch.compile` the modules every feature path runs through, each in place: the patch
        embedding, every trunk block, every cross-attention layer and the final norm. Returns self.

        Per module rather than `torch.compile(model)`: every public method (features, heatmaps,
        attention read-outs, cross mode), not only `forward`, then runs compiled code, and the
        Python-level block loop (`run_blocks`) stays plain, readable Python. `kwargs` go to each
        module's `nn.Module.compile` (e.g. `mode=`, `backend=`, `dynamic=`). Weights stay graph inputs
        and the gate factor a per-call argument: changing either takes effect (a new gate factor
        compiles the cross-attention layers once more, as they branch on factor 0).
        """
        trunk = self.trunk
        for module in (trunk.patch_embed, *trunk.blocks, *self.cross_attn_layers.values(), trunk.norm):
            module.compile(**kwargs)
        return self

    # ----------------------------------------------------------------------------- persistence
    # The hub integration is huggingface_hub's `ModelHubMixin`: `push_to_hub` is its own (it uploads
    # what `save_pretrained` writes), `_save_pretrained` / `_from_pretrained` / `generate_model_card`
    # are its hooks. `from_pretrained` is ours, as names can also be local paths or registered models.
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, backbone_weights: str | Path | None = None,
                        text_encoder: str | Path | None | bool = None, device=None, dtype=None,
                        revision: str | None = None, cache_dir: str | Path | None = None,
                        token: str | bool | None = None, local_files_only: bool = False,
                        force_download: bool = False) -> "SteerViT":
        """Load a model by path, registered name or hub repo; the first that matches wins:

        1. an existing local path: a published `.pth`, or a folder written by `save_pretrained`;
        2. a registered name (`steervit.pretrained.REGISTRY`): the bundled default, published checkpoints;
        3. `"hf-hub:org/repo"`, or plain `"org/repo"`: a hub repo holding what `save_pretrained` writes
           (only its config.json, model.safetensors and README.md are fetched);
        4. a published file name (`"steervit_dinov2_base.pth"`) in the hub repo JonaRuthardt/SteerViT.

        `revision` (branch, tag or commit: a commit pins the files), `cache_dir`, `token`,
        `local_files_only` and `force_download` go to huggingface_hub's download and cache unchanged;
        with `HF_HUB_OFFLINE=1` a repo already in the cache still loads. `backbone_weights` (local timm
        state dict) and `text_encoder` (HF id or folder) override what the checkpoint names, so
        everything can be loaded offline.
        """
        from .checkpoint import build_from_checkpoint
        from .hub import HubOptions, hub_repo_id

        hub = HubOptions(revision, cache_dir, token, local_files_only, force_download)
        parts = dict(backbone_weights=backbone_weights, text_encoder=text_encoder, device=device, dtype=dtype)
        repo_id = hub_repo_id(name_or_path)
        if repo_id is not None:
            return cls._from_pretrained(model_id=repo_id, **hub.download_kwargs(), **parts)
        return build_from_checkpoint(cls, name_or_path, hub=hub, **parts)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         backbone_weights: str | Path | None = None, text_encoder: str | Path | None | bool = None,
                         device=None, dtype=None) -> "SteerViT":
        """`ModelHubMixin`'s loading hook: the repo's files from the hub cache, loaded like a local folder."""
        from .checkpoint import build_from_checkpoint
        from .hub import HubOptions, download_model

        folder = download_model(model_id, HubOptions(revision, cache_dir, token, local_files_only, force_download))
        return build_from_checkpoint(cls, folder, backbone_weights=backbone_weights, text_encoder=text_encoder,
                                     device=device, dtype=dtype)

    def save_pretrained(self, directory: str | Path, *, model_card_kwargs: dict | None = None,
                        config: dict | None = None) -> None:
        """Write `config.json` + `model.safetensors` (trainable tensors only) + `README.md` (model card).

        Each file is written atomically; the card is rewritten on every save, to describe these weights.
        `model_card_kwargs` go to `generate_model_card` (license, metrics, dataset). The trunk and the
        text encoder are never written: a saved folder or hub repo holds the adapter only. (`config` is
        the mixin's way to pass a config dict; a SteerViT writes its own `model.config`.)
        """
        from .hub import write_model_card

        if config is not None:
            raise ValueError("SteerViT.save_pretrained writes model.config to config.json; pass no config=")
        directory = Path(directory)
        self._save_pretrained(directory)
        write_model_card(self.generate_model_card(**(model_card_kwargs or {})), directory)

    def _save_pretrained(self, save_directory: Path) -> None:
        """`ModelHubMixin`'s saving hook: config.json + model.safetensors, the adapter only."""
        from .checkpoint import save_model

        save_model(self, save_directory)

    def generate_model_card(self, *, license: str = "unknown", metrics: dict[str, float] | None = None,
                            dataset: str | None = None):
        """The hub model card (`huggingface_hub.ModelCard`) of these weights; see `steervit.hub.model_card`."""
        from .hub import model_card

        return model_card(self, license=license, metrics=metrics, dataset=dataset)
