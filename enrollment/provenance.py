"""Score provenance: a plain description of everything that changes a modality's raw scores, and its hash.

A calibration table maps raw scores to ``-log10(FMR)`` for one exact pipeline.  Instead of an id
somebody must remember to bump, each modality describes that pipeline as a plain dict (model
file hashes, the constants of extraction and matching), a table stores the dict and its SHA-256,
and loading the table recomputes both: a changed constant or model makes the table refuse to load,
naming what changed.  The per-modality descriptions are in ``enrollment.face.provenance`` and
``enrollment.finger.provenance``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from types import ModuleType

import numpy as np

Provenance = dict[str, object]
_SCALARS = (bool, int, float, str)


def plain(value: object) -> object:
    """``value`` as JSON/TOML-representable data (tuples → lists, arrays → lists, slices → their indices).

    Canonicalising before hashing makes a tuple and the list a TOML file reads back hash alike.
    Raises ``TypeError`` for anything else (``None`` included: TOML cannot hold it).
    """
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, slice):
        return list(range(value.start or 0, value.stop, value.step or 1))
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} is not plain data")


def module_constants(module: ModuleType) -> Provenance:
    """Every module-level UPPERCASE constant of ``module`` that is plain data, by name.

    Read at call time (so a monkeypatched constant is seen) and all of them, so that a constant
    added later cannot be forgotten.  Values that are not data (classes, structs, compiled
    patterns, byte strings) are left out.
    """
    found: Provenance = {}
    for name, value in sorted(vars(module).items()):
        if not name.isupper() or name.startswith("_"):
            continue
        try:
            found[name] = plain(value)
        except TypeError:
            continue
    return found


def digest(provenance: Mapping[str, object]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of ``provenance``."""
    text = json.dumps(plain(provenance), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def differences(recorded: Mapping[str, object], current: Mapping[str, object], path: tuple[str, ...] = ()) -> list[str]:
    """Readable ``"<group> <key> <recorded> → <current>"`` lines, one per leaf that differs."""
    lines: list[str] = []
    for key in sorted(set(recorded) | set(current)):
        where = (*path, str(key))
        old, new = recorded.get(key, _ABSENT), current.get(key, _ABSENT)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            lines += differences(old, new, where)
        elif _comparable(old) != _comparable(new):
            lines.append(f"{' '.join(where)} {_show(old)} → {_show(new)}")
    return lines


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


def _comparable(value: object) -> object:
    return value if value is _ABSENT else plain(value)


def _show(value: object) -> str:
    if isinstance(value, str) and len(value) == 64:  # a SHA-256: its head is enough to tell two apart
        return value[:12] + "…"
    text = repr(value) if value is _ABSENT or not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "…"
