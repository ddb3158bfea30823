"""The golden files kept in tests/golden are byte copies of the project's shared ones."""
from __future__ import annotations

import hashlib

import pytest

from support import GOLDEN, SHARED


def _digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_golden_files_are_in_the_repository():
    for name in ("official-tiny/steervit_official.pth", "official-tiny/trunk.safetensors",
                 "official-tiny/expected.safetensors", "official-tiny/inputs.json",
                 "tiny-roberta/model.safetensors", "tiny-roberta/tokenizer.json", "README.md"):
        assert (GOLDEN / name).is_file(), name


@pytest.mark.skipif(not (SHARED / "golden").is_dir(), reason="no shared folder beside the checkout (a plain clone)")
def test_golden_copies_match_the_shared_files():
    assert _digests(GOLDEN) == _digests(SHARED / "golden")
