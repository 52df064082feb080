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


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle that asks for something other than plain data; the message names the file and what it asked for."""


class UnreadablePickleError(pickle.UnpicklingError, ValueError):
    """A file that is not a whole pickle (truncated, corrupt, or something else); the message names it."""


REFUSAL = (
    "(only dicts, lists, tuples, strings, numbers and numpy arrays are loaded, because anything else can run code "
    "while loading). If you made this file yourself, re-save it with plain types only."
)


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
                + REFUSAL
            )
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")  # numpy 1 pickles, read by numpy 2
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        """A persistent id is an object the pickle expects the loader to supply: a hook for code, refused."""
        raise UnsafePickleError(
            f"{self.source}: refusing to load: the pickle asks for the persistent object {pid!r:.80} "
            "(an object its writer kept outside the file) " + REFUSAL
        )


def safe_load(path: str | Path) -> Any:
    """Unpickle ``path`` allowing numpy arrays and builtin types only (UnsafePickleError otherwise; a file that is
    no whole pickle raises UnreadablePickleError)."""
    with open(path, "rb") as fh:
        try:
            return _RestrictedUnpickler(fh, str(path)).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, IndexError, KeyError, TypeError) as err:
            # e.g. "pickle data was truncated", an unregistered extension code, a stack the opcodes misuse
            raise UnreadablePickleError(
                f"{path}: not a readable pickle ({type(err).__name__}: {err}); the file is truncated, corrupt or "
                "not a pickle: write it again"
            ) from err
