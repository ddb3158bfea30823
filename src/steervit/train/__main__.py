"""`python -m steervit.train` (what `torchrun ... -m steervit.train` runs)."""
import sys

from .cli import main

sys.exit(main())
