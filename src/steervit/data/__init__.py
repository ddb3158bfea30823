"""Training data for referential segmentation: records, source readers, mixture, torch dataset.

Readers need only the standard library and numpy until a format needs more: COCO polygon/RLE masks
need `pycocotools`, the Hugging Face parquet/arrow files need `pyarrow`; both are imported lazily.
"""
from .augment import DIRECTIONAL_WORDS, AugmentConfig, augment_pair, has_directional_word, resize_pair
from .dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ReferringSegmentationDataset,
    SkipCounter,
    Skipped,
    collate,
)
from .hf_steervit import read_steervit_hf, records_from_rows
from .lvis import read_lvis
from .manifest import read_manifest, write_manifest
from .mapillary import read_mapillary
from .mixture import Mixture, WeightedSourceSampler
from .records import (
    BoxMask,
    ImageMask,
    MaskSpec,
    PngBytesMask,
    PngMask,
    PolygonMask,
    Record,
    RleMask,
    decode_mask,
    encode_rle,
)
from .refer import read_refer
from .safe_pickle import RestrictedUnpickler, safe_load_pickle
from .sources import READERS, load_mixture, read_source
from .visual_genome import read_visual_genome

__all__ = [
    "DIRECTIONAL_WORDS", "AugmentConfig", "augment_pair", "has_directional_word", "resize_pair",
    "IMAGENET_MEAN", "IMAGENET_STD", "ReferringSegmentationDataset", "SkipCounter", "Skipped", "collate",
    "read_steervit_hf", "records_from_rows", "read_lvis", "read_manifest", "write_manifest",
    "read_mapillary", "Mixture", "WeightedSourceSampler", "BoxMask", "ImageMask", "MaskSpec",
    "PngBytesMask", "PngMask", "PolygonMask", "Record", "RleMask", "decode_mask", "encode_rle",
    "read_refer", "RestrictedUnpickler", "safe_load_pickle", "READERS", "load_mixture", "read_source",
    "read_visual_genome",
]
