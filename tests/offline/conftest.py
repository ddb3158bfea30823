"""One tiny offline build shared by the tests (a few seconds; the full build takes ~1.5 min)."""
from __future__ import annotations

import pytest

from steervit.offline import eval_sets
from steervit.offline.build import BuildSizes, build_offline
from steervit.offline.fashion_mnist import require_fashion_mnist

TINY = BuildSizes(
    train=40, validation=8, test=20, expressions=3,
    core=eval_sets.CoreSizes(scenes=2, bases=3),
    anomaly=eval_sets.AnomalySizes(train=2, good=1, per_defect=2),
    pods=eval_sets.PodsSizes(products=2, reference=1, positive=2, negative=2),
    mosaic=eval_sets.MosaicSizes(images=8),
)
SEED = 3


def tiny_build(out, seed: int = SEED) -> dict:
    return build_offline(out, seed=seed, sizes=TINY, progress=False)


@pytest.fixture(scope="session")
def fashion_mnist_installed():
    """Fails (does not skip) without the Debian package: `make test` installs it."""
    return require_fashion_mnist()


@pytest.fixture(scope="session")
def built(fashion_mnist_installed, tmp_path_factory):
    out = tmp_path_factory.mktemp("offline") / "data"
    summary = tiny_build(out)
    return out, summary
