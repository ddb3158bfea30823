"""Appearance changes keep the image's shape and type, change it, and are reproducible."""
from __future__ import annotations

import numpy as np
import pytest

from steervit.offline import appearance


def _image():
    rng = np.random.default_rng(0)
    return (rng.random((64, 64, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("change", appearance.CHANGES)
def test_each_change_keeps_shape_and_changes_pixels(change):
    image = _image()
    out = change(image, np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)


def test_random_appearance_is_reproducible_and_names_what_it_did():
    a, names_a = appearance.random_appearance(_image(), np.random.default_rng(4), probability=0.5)
    b, names_b = appearance.random_appearance(_image(), np.random.default_rng(4), probability=0.5)
    assert np.array_equal(a, b) and names_a == names_b
    assert set(names_a) <= {c.__name__ for c in appearance.CHANGES}
    untouched, none = appearance.random_appearance(_image(), np.random.default_rng(4), probability=0.0)
    assert none == [] and np.array_equal(untouched, _image())
