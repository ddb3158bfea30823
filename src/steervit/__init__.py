"""steervit: make pretrained Vision Transformers steerable with natural language."""
from .config import SteerViTConfig
from .model import SteerViT
from .text import TextEmbedding, TextEncoder

__all__ = ["SteerViT", "SteerViTConfig", "TextEmbedding", "TextEncoder"]
__version__ = "0.1.0"
