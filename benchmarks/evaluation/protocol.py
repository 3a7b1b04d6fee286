"""The declared tune/report protocol (``benchmarks/protocol.toml``): which identities a figure may come from.

Every parameter, threshold and calibration table is fitted on *tune* identities; every figure in
RESULTS is measured on *report* identities.  The split is by identity (a person's images, or a
person's fingers, all land on one side), decided by a hash of the protocol's seed, so it is the
same on every machine and needs no list of identities in the repository.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, TypeVar

PROTOCOL = Path(__file__).resolve().parent.parent / "protocol.toml"
ROLES = ("tune", "report", "split")

Role = Literal["tune", "report"]
Labelled = TypeVar("Labelled")  # anything with a ``label`` (a data set's Sample)


@dataclass(frozen=True)
class SetProtocol:
    """One data set's entry of the protocol."""

    modality: str
    name: str
    role: str
    report_fraction: float = 0.5
    identity: str = ""  # regex; its first group is the identity (default: the whole label)
    namespace: str = ""  # sets sharing identities share this (default: the set's name)
    tune_prefixes: tuple[str, ...] = ()
    reason: str = ""

    def identity_of(self, label: str) -> str:
        """The identity a label belongs to: the unit that is never split."""
        if not self.identity:
            return label
        found = re.match(self.identity, label)
        if found is None:
            raise ValueError(f"{self.modality}/{self.name}: label {label!r} does not match identity pattern {self.identity!r}")
        return found.group(1)


@dataclass(frozen=True)
class SyntheticSeeds:
    """Seeds of the synthetic Scale population: one to tune the index settings on, one to report on."""

    tune_seed: int
    report_seed: int

    def seed(self, role: Role) -> int:
        return self.tune_seed if role == "tune" else self.report_seed


@dataclass(frozen=True)
class Protocol:
    seed: int
    sets: dict[tuple[str, str], SetProtocol]
    synthetic: SyntheticSeeds | None = None

    def set(self, modality: str, name: str) -> SetProtocol:
        try:
            return self.sets[(modality, name)]
        except KeyError:
            raise KeyError(f"{modality}/{name} is not declared in {PROTOCOL.name}: declare its tune/report role first") from None

    def role(self, modality: str, name: str, label: str) -> Role:
        """Whether the identity of ``label`` in that set is for tuning or for reporting."""
        entry = self.set(modality, name)
        if entry.role in ("tune", "report"):
            return entry.role  # type: ignore[return-value]
        identity = entry.identity_of(label)
        if any(identity.startswith(prefix) for prefix in entry.tune_prefixes):
            return "tune"
        digest = hashlib.sha256(f"{self.seed}:{entry.namespace or entry.name}:{identity}".encode()).digest()
        return "report" if int.from_bytes(digest[:8], "big") / 2**64 < entry.report_fraction else "tune"

    def select(self, modality: str, name: str, samples: Iterable[Labelled], role: Role) -> list[Labelled]:
        """The samples whose identity has ``role`` (samples need a ``label``)."""
        return [s for s in samples if self.role(modality, name, s.label) == role]  # type: ignore[attr-defined]

    def identities(self, modality: str, name: str, labels: Iterable[str], role: Role) -> list[str]:
        """The distinct identities among ``labels`` that have ``role``, sorted."""
        entry = self.set(modality, name)
        return sorted({entry.identity_of(label) for label in labels if self.role(modality, name, label) == role})


@lru_cache(maxsize=4)
def load_protocol(path: Path = PROTOCOL) -> Protocol:
    """Read and check the protocol file (unknown roles, fractions outside [0, 1] and unknown keys are errors).

    Every table is a modality of data sets except ``[synthetic]``, the seeds of the synthetic population.
    """
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    seed = data.pop("seed")
    synthetic = SyntheticSeeds(**data.pop("synthetic")) if "synthetic" in data else None
    if synthetic is not None and synthetic.tune_seed == synthetic.report_seed:
        raise ValueError("synthetic: tune_seed and report_seed must differ (the report population must be unseen)")
    sets: dict[tuple[str, str], SetProtocol] = {}
    for modality, entries in data.items():
        for name, fields in entries.items():
            entry = SetProtocol(modality, name, **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
            if entry.role not in ROLES:
                raise ValueError(f"{modality}/{name}: role must be one of {', '.join(ROLES)}, not {entry.role!r}")
            if not 0.0 <= entry.report_fraction <= 1.0:
                raise ValueError(f"{modality}/{name}: report_fraction must be in [0, 1]")
            sets[(modality, name)] = entry
    return Protocol(int(seed), sets, synthetic)

