"""The audit log's hash chain: each record carries the SHA-256 of the one before it.

Why a chain: an oversight body must be able to tell that no search was hidden.  Editing a
record changes its hash; deleting or inserting one breaks the link of the next; the head (last
sequence and hash, kept beside the log) catches a removed tail.  The chain cannot stop someone
who rewrites the whole log *and* the head: export it regularly to the oversight body.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry as stored: its place in the chain, its content, and the hashes that bind them."""

    sequence: int
    prev_hash: str
    payload: str  # canonical JSON
    hash: str

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.payload)


def canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(sequence: int, prev_hash: str, payload: str) -> str:
    return hashlib.sha256(f"{sequence}\n{prev_hash}\n{payload}".encode()).hexdigest()


def chain(payloads: Iterable[dict[str, Any]], last_sequence: int, last_hash: str) -> list[AuditRecord]:
    """Link new payloads after the current head."""
    records = []
    for payload in payloads:
        last_sequence += 1
        text = canonical(payload)
        digest = chain_hash(last_sequence, last_hash, text)
        records.append(AuditRecord(last_sequence, last_hash, text, digest))
        last_hash = digest
    return records


def verify(records: Iterable[AuditRecord], head: tuple[int, str]) -> list[str]:
    """Every break in the chain, each naming the record; an empty list means the log is intact."""
    problems: list[str] = []
    expected_sequence, expected_prev = 1, GENESIS
    last_sequence, last_hash = 0, GENESIS
    for record in records:
        if record.sequence != expected_sequence:
            if record.sequence > expected_sequence:
                missing = ", ".join(str(s) for s in range(expected_sequence, min(record.sequence, expected_sequence + 10)))
                problems.append(f"record {missing} missing (deleted) before record {record.sequence}")
            else:
                problems.append(f"record {record.sequence} is out of order or duplicated (expected {expected_sequence})")
        if record.prev_hash != expected_prev:
            problems.append(f"record {record.sequence} does not link to the record before it (inserted, or its predecessor was edited or deleted)")
        if chain_hash(record.sequence, record.prev_hash, record.payload) != record.hash:
            problems.append(f"record {record.sequence} was edited: its content does not match its hash")
        expected_sequence, expected_prev = record.sequence + 1, record.hash
        last_sequence, last_hash = record.sequence, record.hash
    head_sequence, head_hash = head
    if head_sequence > last_sequence:
        problems.append(f"records {last_sequence + 1}–{head_sequence} missing (deleted from the end of the log)")
    elif head_sequence == last_sequence and head_hash != last_hash:
        problems.append(f"record {last_sequence} (the last) does not match the recorded head: edited or replaced")
    elif head_sequence < last_sequence:
        problems.append(f"records {head_sequence + 1}–{last_sequence} were appended outside the service (not in the head)")
    return problems
