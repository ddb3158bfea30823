"""`python -m steervit ...`: the same as the `steervit` command."""
import sys

from .cli import main

sys.exit(main())
