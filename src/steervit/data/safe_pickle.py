"""Load the refer toolkit's `refs(*).p` pickles without letting them run code.

Those files come from the internet. Plain `pickle.load` would call any global the file names (e.g.
`os.system`); this unpickler resolves only plain builtin containers and scalars, and refuses the rest
before anything is called.
"""
from __future__ import annotations

import io
import os
import pickle
from typing import Any

# Plain data only. (Containers and scalars pickled by value never reach find_class at all; these
# names appear only when a pickle refers to the type itself.)
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    ("builtins", name)
    for name in ("dict", "list", "str", "int", "float", "bool", "tuple", "set", "frozenset", "NoneType")
)


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that only resolves `ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name!s} from an untrusted pickle")


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Read a pickle of plain data (dict/list/str/int/float/bool/None/tuple).

    Python 2 byte strings (the refer toolkit's pickles were written by Python 2) are decoded as
    UTF-8, falling back to Latin-1 so no file is rejected for its text encoding.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="utf-8").load()
    except UnicodeDecodeError:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
