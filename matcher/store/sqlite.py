"""The embedded default store: one SQLite file in WAL mode with ``synchronous=FULL``.

Why these settings: WAL lets readers proceed while a writer commits, and FULL makes every
commit fsync the log, so an enrolment that was acknowledged is on disk before the RPC returns.
Writes are serialised by SQLite itself; a lock keeps the one connection safe across threads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from matcher.errors import AlreadyExists, NotFound, ShanakhtError
from matcher.store.audit import GENESIS, AuditRecord, chain
from matcher.modalities import matcher_for, template_payload
from matcher.store.base import Change, EnrollmentResult, GalleryRecord, ModalitySpec, NewEnrollment, Principal, Store, StoredTemplate, SubjectRecord, TemplateInfo  # noqa: E501
from matcher.templates import Modality

_SCHEMA = """
CREATE TABLE IF NOT EXISTS galleries (
    name          TEXT PRIMARY KEY,
    threshold_fmr REAL NOT NULL,
    modalities    TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    created_at    REAL NOT NULL,
    quality_policy TEXT NOT NULL DEFAULT 'warn',
    threshold_fpir REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS subjects (
    gallery     TEXT NOT NULL REFERENCES galleries(name),
    subject_id  TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    enrolled_at REAL NOT NULL,
    sequence    INTEGER NOT NULL,
    PRIMARY KEY (gallery, subject_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS templates (
    template_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    gallery         TEXT NOT NULL,
    subject_id      TEXT NOT NULL,
    modality        INTEGER NOT NULL,
    model_id        TEXT NOT NULL,
    finger_position INTEGER NOT NULL,
    vector          BLOB NOT NULL,
    quality         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS templates_by_subject ON templates (gallery, subject_id);
CREATE INDEX IF NOT EXISTS templates_by_gallery ON templates (gallery, modality, template_id);
CREATE TABLE IF NOT EXISTS principals (
    key_id       TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    galleries    TEXT NOT NULL,
    created_at   REAL NOT NULL,
    key_salt     BLOB NOT NULL,
    key_hash     BLOB NOT NULL,
    cert_subject TEXT NOT NULL,
    revoked_at   REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
    sequence  INTEGER PRIMARY KEY,
    prev_hash TEXT NOT NULL,
    payload   TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    sequence INTEGER NOT NULL,
    hash     TEXT NOT NULL
);
-- The head follows each record appended after it, inside the statement that appends it.
CREATE TRIGGER IF NOT EXISTS audit_head_follows AFTER INSERT ON audit
WHEN NEW.sequence > COALESCE((SELECT sequence FROM audit_head WHERE id = 1), 0)
BEGIN
    INSERT OR REPLACE INTO audit_head (id, sequence, hash) VALUES (1, NEW.sequence, NEW.hash);
END;
CREATE TABLE IF NOT EXISTS changes (
    sequence     INTEGER PRIMARY KEY AUTOINCREMENT,
    gallery      TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    op           TEXT NOT NULL,
    template_ids TEXT NOT NULL,
    at           REAL NOT NULL
);
"""


def _specs_to_json(specs: Sequence[ModalitySpec]) -> str:
    return json.dumps([s.as_row() for s in specs])


def _specs_from_json(text: str) -> tuple[ModalitySpec, ...]:
    return tuple(ModalitySpec.from_row(row) for row in json.loads(text))


class SQLiteStore(Store):
    """``Store`` on one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so a batch is one transaction.
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(galleries)")}
        if "quality_policy" not in columns:  # stores created before per-gallery quality policies
            self._db.execute("ALTER TABLE galleries ADD COLUMN quality_policy TEXT NOT NULL DEFAULT 'warn'")
        if "threshold_fpir" not in columns:  # stores created before FPIR thresholds
            self._db.execute("ALTER TABLE galleries ADD COLUMN threshold_fpir REAL NOT NULL DEFAULT 0")
        self._audit_head: tuple[int, str] | None = None  # (sequence, hash) of the last record we know of
        # Reads on the request path (candidate metadata) get a connection per thread: in WAL mode
        # they see every committed write and never wait for a writer's commit (an audit group
        # commit held the one connection's lock for 36% of Identify's time under 8 clients).
        self._readers = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []

    def _reader(self) -> sqlite3.Connection:
        connection = getattr(self._readers, "connection", None)
        if connection is None:
            connection = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA query_only=ON")
            self._readers.connection = connection
            with self._lock:
                self._reader_connections.append(connection)
        return connection

    def durability(self) -> str:
        return f"SQLite at {self.path} (WAL, synchronous=FULL) fsyncs every commit before acknowledging"

    # -- writes ---------------------------------------------------------------------------
    def _append_change(self, gallery: str, subject_id: str, op: str, template_ids: Sequence[int]) -> int:
        cursor = self._db.execute(
            "INSERT INTO changes (gallery, subject_id, op, template_ids, at) VALUES (?, ?, ?, ?, ?)",
            (gallery, subject_id, op, json.dumps(list(template_ids)), time.time()),
        )
        return int(cursor.lastrowid)

    def create_gallery(self, gallery: GalleryRecord) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                exists = self._db.execute("SELECT 1 FROM galleries WHERE name = ?", (gallery.name,)).fetchone()
                if exists:
                    raise AlreadyExists(f"gallery {gallery.name!r} already exists")
                self._db.execute(
                    "INSERT INTO galleries (name, threshold_fmr, modalities, description, created_at, quality_policy, threshold_fpir)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (gallery.name, gallery.threshold_fmr, _specs_to_json(gallery.modalities), gallery.description, time.time(),
                     gallery.quality_policy, gallery.threshold_fpir),
                )
                sequence = self._append_change(gallery.name, "", "gallery", [])
                self._db.execute("COMMIT")
                return sequence
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def enroll(self, enrollments: Sequence[NewEnrollment]) -> list[EnrollmentResult | ShanakhtError]:
        results: list[EnrollmentResult | ShanakhtError] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for item in enrollments:
                    self._db.execute("SAVEPOINT item")
                    try:
                        results.append(self._enroll_one(item))
                        self._db.execute("RELEASE item")
                    except ShanakhtError as error:
                        self._db.execute("ROLLBACK TO item")
                        self._db.execute("RELEASE item")
                        results.append(error)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return results

    def _enroll_one(self, item: NewEnrollment) -> EnrollmentResult:
        if not self._db.execute("SELECT 1 FROM galleries WHERE name = ?", (item.gallery,)).fetchone():
            raise NotFound(f"gallery {item.gallery!r} does not exist")
        existing = self._db.execute(
            "SELECT 1 FROM subjects WHERE gallery = ? AND subject_id = ?", (item.gallery, item.subject_id)
        ).fetchone()
        replaced: tuple[int, ...] = ()
        if existing:
            if not item.replace:
                raise AlreadyExists(
                    f"subject {item.subject_id!r} is already enrolled in gallery {item.gallery!r}; set replace to overwrite"
                )
            replaced = tuple(
                row[0]
                for row in self._db.execute(
                    "SELECT template_id FROM templates WHERE gallery = ? AND subject_id = ?", (item.gallery, item.subject_id)
                )
            )
            self._db.execute("DELETE FROM templates WHERE gallery = ? AND subject_id = ?", (item.gallery, item.subject_id))
        template_ids = []
        for template in item.templates:
            cursor = self._db.execute(
                "INSERT INTO templates (gallery, subject_id, modality, model_id, finger_position, vector, quality)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    item.gallery,
                    item.subject_id,
                    template.modality.value,
                    template.model_id,
                    template.finger_position,
                    template_payload(template),
                    json.dumps(template.quality),
                ),
            )
            template_ids.append(int(cursor.lastrowid))
        sequence = self._append_change(item.gallery, item.subject_id, "upsert", template_ids)
        self._db.execute(
            "INSERT OR REPLACE INTO subjects (gallery, subject_id, metadata, enrolled_at, sequence) VALUES (?, ?, ?, ?, ?)",
            (item.gallery, item.subject_id, json.dumps(item.metadata, sort_keys=True), time.time(), sequence),
        )
        return EnrollmentResult(item.subject_id, tuple(template_ids), sequence, replaced)

    def delete_subject(self, gallery: str, subject_id: str) -> tuple[int, tuple[int, ...]]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if not self._db.execute(
                    "SELECT 1 FROM subjects WHERE gallery = ? AND subject_id = ?", (gallery, subject_id)
                ).fetchone():
                    raise NotFound(f"subject {subject_id!r} is not enrolled in gallery {gallery!r}")
                removed = tuple(
                    row[0]
                    for row in self._db.execute(
                        "SELECT template_id FROM templates WHERE gallery = ? AND subject_id = ?", (gallery, subject_id)
                    )
                )
                self._db.execute("DELETE FROM templates WHERE gallery = ? AND subject_id = ?", (gallery, subject_id))
                self._db.execute("DELETE FROM subjects WHERE gallery = ? AND subject_id = ?", (gallery, subject_id))
                sequence = self._append_change(gallery, subject_id, "delete", removed)
                self._db.execute("COMMIT")
                return sequence, removed
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- reads ----------------------------------------------------------------------------
    def galleries(self) -> list[GalleryRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, threshold_fmr, modalities, description, quality_policy, threshold_fpir FROM galleries ORDER BY name"
            ).fetchall()
        return [
            GalleryRecord(name, fmr, _specs_from_json(specs), description, policy, fpir)
            for name, fmr, specs, description, policy, fpir in rows
        ]

    def get_subject(self, gallery: str, subject_id: str) -> SubjectRecord:
        with self._lock:
            row = self._db.execute(
                "SELECT metadata, enrolled_at, sequence FROM subjects WHERE gallery = ? AND subject_id = ?",
                (gallery, subject_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"subject {subject_id!r} is not enrolled in gallery {gallery!r}")
            templates = self._db.execute(
                "SELECT template_id, modality, model_id, finger_position FROM templates"
                " WHERE gallery = ? AND subject_id = ? ORDER BY template_id",
                (gallery, subject_id),
            ).fetchall()
        return SubjectRecord(
            gallery=gallery,
            subject_id=subject_id,
            metadata=json.loads(row[0]),
            templates=tuple(TemplateInfo(t, Modality(m), model, pos) for t, m, model, pos in templates),
            enrolled_at=row[1],
            sequence=row[2],
        )

    def subject_metadata(self, gallery: str, subject_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        if not subject_ids:
            return {}
        marks = ",".join("?" * len(subject_ids))
        rows = self._reader().execute(
            f"SELECT subject_id, metadata FROM subjects WHERE gallery = ? AND subject_id IN ({marks})",
            (gallery, *subject_ids),
        ).fetchall()
        return {subject: json.loads(metadata) for subject, metadata in rows}

    def count_subjects(self, gallery: str) -> int:
        return int(self._reader().execute("SELECT COUNT(*) FROM subjects WHERE gallery = ?", (gallery,)).fetchone()[0])

    @staticmethod
    def _template_from_row(row: tuple) -> StoredTemplate:
        template_id, subject_id, modality, model_id, position, blob = row
        modality = Modality(modality)
        return StoredTemplate(template_id, subject_id, modality, model_id, position, matcher_for(modality).from_payload(blob))

    def iter_templates(self, gallery: str, modality: Modality, batch: int = 10_000) -> Iterator[list[StoredTemplate]]:
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT template_id, subject_id, modality, model_id, finger_position, vector FROM templates"
                    " WHERE gallery = ? AND modality = ? AND template_id > ? ORDER BY template_id LIMIT ?",
                    (gallery, modality.value, last, batch),
                ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [self._template_from_row(row) for row in rows]

    def templates_by_id(self, template_ids: Sequence[int]) -> list[StoredTemplate]:
        found: list[StoredTemplate] = []
        ids = list(template_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    "SELECT template_id, subject_id, modality, model_id, finger_position, vector FROM templates"
                    f" WHERE template_id IN ({marks}) ORDER BY template_id",
                    chunk,
                ).fetchall()
            found.extend(self._template_from_row(row) for row in rows)
        return found

    def changes_since(self, sequence: int, limit: int = 10_000) -> list[Change]:
        with self._lock:
            rows = self._db.execute(
                "SELECT sequence, gallery, subject_id, op, template_ids FROM changes WHERE sequence > ? ORDER BY sequence LIMIT ?",
                (sequence, limit),
            ).fetchall()
        return [Change(seq, gallery, subject, op, tuple(json.loads(ids))) for seq, gallery, subject, op, ids in rows]

    def last_sequence(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(sequence) FROM changes").fetchone()
        return int(row[0] or 0)

    # -- principals and audit --------------------------------------------------------------
    _PRINCIPAL_COLUMNS = "key_id, name, role, galleries, created_at, key_salt, key_hash, cert_subject, revoked_at"

    @staticmethod
    def _principal(row: tuple) -> Principal:
        key_id, name, role, galleries, created, salt, digest, subject, revoked = row
        return Principal(key_id, name, role, tuple(json.loads(galleries)), created, bytes(salt), bytes(digest), subject, revoked)

    def put_principal(self, principal: Principal) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                taken = self._db.execute(
                    "SELECT 1 FROM principals WHERE key_id = ? OR (cert_subject != '' AND cert_subject = ? AND revoked_at = 0)",
                    (principal.key_id, principal.cert_subject),
                ).fetchone()
                if taken:
                    raise AlreadyExists(f"principal {principal.key_id!r} or certificate subject {principal.cert_subject!r} exists")
                self._db.execute(
                    f"INSERT INTO principals ({self._PRINCIPAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (principal.key_id, principal.name, principal.role, json.dumps(list(principal.galleries)), principal.created_at,
                     principal.key_salt, principal.key_hash, principal.cert_subject, principal.revoked_at),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def principals(self) -> list[Principal]:
        with self._lock:
            rows = self._db.execute(f"SELECT {self._PRINCIPAL_COLUMNS} FROM principals ORDER BY created_at").fetchall()
        return [self._principal(row) for row in rows]

    def get_principal(self, key_id: str) -> Principal | None:
        with self._lock:
            row = self._db.execute(f"SELECT {self._PRINCIPAL_COLUMNS} FROM principals WHERE key_id = ?", (key_id,)).fetchone()
        return self._principal(row) if row else None

    def principal_for_cert(self, subject: str) -> Principal | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._PRINCIPAL_COLUMNS} FROM principals WHERE cert_subject = ? AND revoked_at = 0", (subject,)
            ).fetchone()
        return self._principal(row) if row else None

    def revoke_principal(self, key_id: str, at: float) -> None:
        with self._lock:
            cursor = self._db.execute("UPDATE principals SET revoked_at = ? WHERE key_id = ? AND revoked_at = 0", (at, key_id))
        if cursor.rowcount == 0:
            raise NotFound(f"no active key {key_id!r}")

    def append_audit(self, payloads: Sequence[dict]) -> list[AuditRecord]:
        """Append linked records; in the common case one statement: one implicit transaction, one fsync.

        One statement also means one release of the GIL.  Each SQLite call returns only once its
        thread gets the GIL back, and under 8 concurrent Identify calls on 2 cores the five calls
        of an explicit transaction (BEGIN, read the head, insert, move the head, COMMIT) made a
        0.13 ms group commit take 2.9 ms.  So the head is cached.  When another process has
        appended since (the CLI's key commands do), the insert collides on ``sequence`` and
        changes nothing; the records are then linked to the head read in a write transaction.
        """
        if not payloads:
            return []
        with self._lock:
            if self._audit_head is not None:
                records = chain(payloads, *self._audit_head)
                try:
                    self._insert_audit(records)
                except sqlite3.IntegrityError:
                    self._audit_head = None  # another process appended since: relink below
                except BaseException:
                    self._audit_head = None
                    raise
                else:
                    self._audit_head = (records[-1].sequence, records[-1].hash)
                    return records
            self._db.execute("BEGIN IMMEDIATE")
            try:
                head = self._db.execute("SELECT sequence, hash FROM audit_head WHERE id = 1").fetchone() or (0, GENESIS)
                records = chain(payloads, int(head[0]), str(head[1]))
                self._insert_audit(records)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._audit_head = (records[-1].sequence, records[-1].hash)
            return records

    def _insert_audit(self, records: list[AuditRecord]) -> None:
        """One INSERT for the batch; the trigger moves the head."""
        self._db.execute(
            f"INSERT INTO audit (sequence, prev_hash, payload, hash) VALUES {','.join(['(?, ?, ?, ?)'] * len(records))}",
            [field for r in records for field in (r.sequence, r.prev_hash, r.payload, r.hash)],
        )

    def audit_records(self, after: int = 0, limit: int = 10_000) -> list[AuditRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT sequence, prev_hash, payload, hash FROM audit WHERE sequence > ? ORDER BY sequence LIMIT ?", (after, limit)
            ).fetchall()
        return [AuditRecord(*row) for row in rows]

    def audit_head(self) -> tuple[int, str]:
        with self._lock:
            row = self._db.execute("SELECT sequence, hash FROM audit_head WHERE id = 1").fetchone()
        return (int(row[0]), row[1]) if row else (0, GENESIS)

    def close(self) -> None:
        with self._lock:
            for connection in self._reader_connections:
                connection.close()
            self._reader_connections.clear()
            self._db.close()
