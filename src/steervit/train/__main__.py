"""`python -m steervit.train` (what `torchrun ... -m steervit.train` runs)."""
import sys

from ..cli.train import main

sys.exit(main())
