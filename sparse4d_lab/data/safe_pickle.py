"""Load user pickles (OVPKL) without letting them run code.

A pickle can name any importable callable and have it called while loading, so an untrusted ``.pkl`` can do
anything ``pickle.load`` can. OVPKL files only need builtin containers, strings, numbers and numpy arrays, so the
unpickler resolves exactly the globals those need and refuses every other one, naming it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

# (module, name) pairs the unpickler may resolve: numpy's array, dtype and scalar reconstructors (both the numpy 2
# ``numpy._core`` and the numpy 1 ``numpy.core`` spellings), the byte-string codec protocol 2 uses, and a few
# builtin containers that pickle by name.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        *((f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("_reconstruct", "scalar")),
        *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
        ("_codecs", "encode"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "bytearray"),
        ("collections", "OrderedDict"),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that asks for something other than plain data; the message names it."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol 0-2 pickles name builtins the Python 2 way
            module = "builtins"
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.source}: refusing to load: the pickle asks for '{module}.{name}', which is not plain data "
                "(only dicts, lists, tuples, strings, numbers and numpy arrays are loaded, because anything else "
                "can run code while loading). If you made this file yourself, re-save it with plain types only."
            )
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")  # numpy 1 pickles, read by numpy 2
        return super().find_class(module, name)


def safe_load(path: str | Path) -> Any:
    """Unpickle ``path`` allowing numpy arrays and builtin types only (UnsafePickleError otherwise)."""
    with open(path, "rb") as fh:
        return _RestrictedUnpickler(fh, str(path)).load()
