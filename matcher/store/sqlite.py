"""The embedded default store: one SQLite file in WAL mode with ``synchronous=FULL``.

Why these settings: WAL lets readers proceed while a writer commits, and FULL makes every
commit fsync the log, so an enrolment that was acknowledged is on disk before the RPC returns.
Writes are serialised by SQLite itself; a lock keeps the one connection safe across threads.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from matcher.errors import AlreadyExists, NotFound, ShanakhtError
from matcher.store.audit import GENESIS, AuditRecord, chain
from matcher.modalities import matcher_for, template_payload
from matcher.store.base import Change, EnrollmentResult, GalleryRecord, ModalitySpec, NewEnrollment, Principal, SessionRecord, SignInState, Store, StoredTemplate, SubjectRecord, TemplateInfo  # noqa: E501
from matcher.templates import Modality
from matcher.store.base import StoredSearch
from matcher.store.base import DedupJobRecord, DedupPairRecord

T = TypeVar("T")

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
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL,
    token_hash BLOB NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sign_in_failures (
    user         TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    locked_until REAL NOT NULL
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

# Evidence images and search records.  Images are sealed (``matcher.evidence``) before they get here;
# ``secure_delete`` zeroes what a delete frees, and deletes that erase images checkpoint the WAL
# with TRUNCATE, so an erased image's ciphertext is left neither in the database file nor in its WAL.
_EVIDENCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS sample_images (
    template_id INTEGER PRIMARY KEY,
    gallery     TEXT NOT NULL,
    subject_id  TEXT NOT NULL,
    sealed      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sample_images_by_subject ON sample_images (gallery, subject_id);
CREATE TABLE IF NOT EXISTS searches (
    search_id   TEXT PRIMARY KEY,
    created_at  REAL NOT NULL,
    examiner_id TEXT NOT NULL,
    disputed    INTEGER NOT NULL,
    awaiting    INTEGER NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS searches_by_time ON searches (created_at);
CREATE INDEX IF NOT EXISTS searches_by_examiner ON searches (examiner_id, created_at);
CREATE TABLE IF NOT EXISTS search_probes (
    search_id    TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    sealed       BLOB NOT NULL,
    PRIMARY KEY (search_id, sample_index)
);
"""


# De-duplication runs (``matcher.deduplication``): a run's pairs and its cursor move in one transaction.
_DEDUP_SCHEMA = """
CREATE TABLE IF NOT EXISTS dedup_jobs (
    job_id TEXT PRIMARY KEY, gallery TEXT NOT NULL, against TEXT NOT NULL, min_score REAL NOT NULL, purpose TEXT NOT NULL,
    started_by TEXT NOT NULL, started_by_name TEXT NOT NULL, state INTEGER NOT NULL, started_at REAL NOT NULL,
    subjects_total INTEGER NOT NULL, subjects_done INTEGER NOT NULL, pairs_found INTEGER NOT NULL, cursor TEXT NOT NULL,
    finished_at REAL NOT NULL, error TEXT NOT NULL, runner TEXT NOT NULL, lease_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dedup_pairs (
    job_id TEXT NOT NULL, gallery_a TEXT NOT NULL, subject_a TEXT NOT NULL, gallery_b TEXT NOT NULL, subject_b TEXT NOT NULL,
    score REAL NOT NULL, modality_scores TEXT NOT NULL,
    PRIMARY KEY (job_id, gallery_a, subject_a, gallery_b, subject_b)
) WITHOUT ROWID;
"""
_DEDUP_COLUMNS = ("job_id, gallery, against, min_score, purpose, started_by, started_by_name, state, started_at, subjects_total, "
                  "subjects_done, pairs_found, cursor, finished_at, error, runner, lease_until")
_RUNNING = 1  # DeduplicationState.DEDUPLICATION_RUNNING


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
        self._db.execute("PRAGMA secure_delete=ON")  # freed pages are zeroed: erased evidence leaves no ciphertext behind
        self._db.executescript(_SCHEMA)
        self._db.executescript(_EVIDENCE_SCHEMA)
        self._db.executescript(_DEDUP_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(galleries)")}
        if "quality_policy" not in columns:  # stores created before per-gallery quality policies
            self._db.execute("ALTER TABLE galleries ADD COLUMN quality_policy TEXT NOT NULL DEFAULT 'warn'")
        if "threshold_fpir" not in columns:  # stores created before FPIR thresholds
            self._db.execute("ALTER TABLE galleries ADD COLUMN threshold_fpir REAL NOT NULL DEFAULT 0")
        if "retain_images" not in columns:  # stores created before evidence images
            self._db.execute("ALTER TABLE galleries ADD COLUMN retain_images INTEGER NOT NULL DEFAULT 0")
        principal_columns = {row[1] for row in self._db.execute("PRAGMA table_info(principals)")}
        if "user" not in principal_columns:  # stores created before console users
            self._db.execute("ALTER TABLE principals ADD COLUMN user TEXT NOT NULL DEFAULT ''")
            self._db.execute("ALTER TABLE principals ADD COLUMN password_hash TEXT NOT NULL DEFAULT ''")
        self._audit_head: tuple[int, str] | None = None  # (sequence, hash) of the last record we know of
        self._erased = False  # this transaction deleted evidence images (checkpoint the WAL after it)
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
                    "INSERT INTO galleries (name, threshold_fmr, modalities, description, created_at, quality_policy, threshold_fpir,"
                    " retain_images) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (gallery.name, gallery.threshold_fmr, _specs_to_json(gallery.modalities), gallery.description, time.time(),
                     gallery.quality_policy, gallery.threshold_fpir, int(gallery.retain_images)),
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
            if self._erased:  # a replacement erased images: leave no ciphertext in the WAL either
                self._erased = False
                self._truncate_wal()
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
            if self._db.execute(
                "DELETE FROM sample_images WHERE gallery = ? AND subject_id = ?", (item.gallery, item.subject_id)
            ).rowcount:
                self._erased = True
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
                erased = self._db.execute(
                    "DELETE FROM sample_images WHERE gallery = ? AND subject_id = ?", (gallery, subject_id)
                ).rowcount
                sequence = self._append_change(gallery, subject_id, "delete", removed)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if erased:
                self._truncate_wal()
            return sequence, removed

    # -- reads ----------------------------------------------------------------------------
    def galleries(self) -> list[GalleryRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, threshold_fmr, modalities, description, quality_policy, threshold_fpir, retain_images FROM galleries"
                " ORDER BY name"
            ).fetchall()
        return [
            GalleryRecord(name, fmr, _specs_from_json(specs), description, policy, fpir, bool(retain))
            for name, fmr, specs, description, policy, fpir, retain in rows
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
                "SELECT t.template_id, t.modality, t.model_id, t.finger_position, i.template_id IS NOT NULL FROM templates t"
                " LEFT JOIN sample_images i ON i.template_id = t.template_id"
                " WHERE t.gallery = ? AND t.subject_id = ? ORDER BY t.template_id",
                (gallery, subject_id),
            ).fetchall()
        return SubjectRecord(
            gallery=gallery,
            subject_id=subject_id,
            metadata=json.loads(row[0]),
            templates=tuple(TemplateInfo(t, Modality(m), model, pos, bool(image)) for t, m, model, pos, image in templates),
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
    _PRINCIPAL_COLUMNS = "key_id, name, role, galleries, created_at, key_salt, key_hash, cert_subject, revoked_at, user, password_hash"

    @staticmethod
    def _principal(row: tuple) -> Principal:
        key_id, name, role, galleries, created, salt, digest, subject, revoked, user, password_hash = row
        return Principal(key_id, name, role, tuple(json.loads(galleries)), created, bytes(salt), bytes(digest), subject, revoked,
                         user, password_hash)

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
                if principal.user and self._db.execute(
                    "SELECT 1 FROM principals WHERE user = ? AND revoked_at = 0", (principal.user,)
                ).fetchone():
                    raise AlreadyExists(f"user {principal.user!r} exists")
                self._db.execute(
                    f"INSERT INTO principals ({self._PRINCIPAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (principal.key_id, principal.name, principal.role, json.dumps(list(principal.galleries)), principal.created_at,
                     principal.key_salt, principal.key_hash, principal.cert_subject, principal.revoked_at,
                     principal.user, principal.password_hash),
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

    def principal_for_user(self, user: str) -> Principal | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._PRINCIPAL_COLUMNS} FROM principals WHERE user = ? AND user != '' AND revoked_at = 0", (user,)
            ).fetchone()
        return self._principal(row) if row else None

    # -- console sessions and failed sign-ins ----------------------------------------------
    def put_session(self, session: SessionRecord) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO sessions (session_id, key_id, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (session.session_id, session.key_id, session.token_hash, session.created_at, session.expires_at),
            )
            # Sessions that ran out long ago are of no use to anyone: drop them as new ones arrive.
            self._db.execute("DELETE FROM sessions WHERE expires_at < ?", (time.time() - 86_400,))

    def get_session(self, session_id: str) -> SessionRecord | None:
        row = self._reader().execute(
            "SELECT session_id, key_id, token_hash, created_at, expires_at FROM sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        return SessionRecord(row[0], row[1], bytes(row[2]), row[3], row[4]) if row else None

    def touch_session(self, session_id: str, expires_at: float) -> None:
        with self._lock:
            self._db.execute("UPDATE sessions SET expires_at = MAX(expires_at, ?) WHERE session_id = ?", (expires_at, session_id))

    def delete_session(self, session_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))

    def sign_in_state(self, user: str) -> SignInState:
        with self._lock:
            row = self._db.execute("SELECT failures, locked_until FROM sign_in_failures WHERE user = ?", (user,)).fetchone()
        return SignInState(user, int(row[0]), float(row[1])) if row else SignInState(user)

    def count_sign_in_failure(self, user: str, max_failures: int, lock_until: float) -> SignInState:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT failures FROM sign_in_failures WHERE user = ?", (user,)).fetchone()
                failures = (int(row[0]) if row else 0) + 1
                locked = lock_until if failures >= max_failures else 0.0
                state = SignInState(user, 0 if locked else failures, locked)
                self._db.execute(
                    "INSERT OR REPLACE INTO sign_in_failures (user, failures, locked_until) VALUES (?, ?, ?)",
                    (user, state.failures, state.locked_until),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return state

    def clear_sign_in_failures(self, user: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sign_in_failures WHERE user = ?", (user,))

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

    # -- evidence images and search records -------------------------------------------------
    def _truncate_wal(self) -> None:
        """Copy the WAL into the database and empty it: erased pages' old versions leave the WAL file."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def put_sample_images(self, gallery: str, subject_id: str, sealed: dict[int, bytes]) -> int:
        kept = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for template_id, blob in sealed.items():
                    cursor = self._db.execute(
                        "INSERT OR REPLACE INTO sample_images (template_id, gallery, subject_id, sealed)"
                        " SELECT template_id, gallery, subject_id, ? FROM templates"
                        " WHERE template_id = ? AND gallery = ? AND subject_id = ?",
                        (blob, template_id, gallery, subject_id),
                    )
                    kept += cursor.rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return kept

    def sample_image(self, gallery: str, subject_id: str, template_id: int) -> bytes | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sealed FROM sample_images WHERE template_id = ? AND gallery = ? AND subject_id = ?",
                (template_id, gallery, subject_id),
            ).fetchone()
        return bytes(row[0]) if row else None

    _SEARCH_COLUMNS = "search_id, created_at, examiner_id, disputed, awaiting, body"

    @staticmethod
    def _search(row: tuple) -> StoredSearch:
        search_id, created_at, examiner_id, disputed, awaiting, body = row
        return StoredSearch(search_id, created_at, examiner_id, bool(disputed), bool(awaiting), body)

    def put_search(self, search: StoredSearch, probes: dict[int, bytes]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    f"INSERT INTO searches ({self._SEARCH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (search.search_id, search.created_at, search.examiner_id, int(search.disputed), int(search.awaiting), search.body),
                )
                self._db.executemany(
                    "INSERT INTO search_probes (search_id, sample_index, sealed) VALUES (?, ?, ?)",
                    [(search.search_id, index, blob) for index, blob in probes.items()],
                )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                raise AlreadyExists(f"search {search.search_id!r} exists") from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def get_search(self, search_id: str) -> StoredSearch | None:
        with self._lock:
            row = self._db.execute(f"SELECT {self._SEARCH_COLUMNS} FROM searches WHERE search_id = ?", (search_id,)).fetchone()
        return self._search(row) if row else None

    def update_search(self, search_id: str, change: Callable[[StoredSearch], StoredSearch]) -> StoredSearch:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(f"SELECT {self._SEARCH_COLUMNS} FROM searches WHERE search_id = ?", (search_id,)).fetchone()
                if row is None:
                    raise NotFound(f"search {search_id!r} does not exist")
                updated = change(self._search(row))
                self._db.execute(
                    "UPDATE searches SET disputed = ?, awaiting = ?, body = ? WHERE search_id = ?",
                    (int(updated.disputed), int(updated.awaiting), updated.body, search_id),
                )
                self._db.execute("COMMIT")
                return updated
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def list_searches(
        self, examiner_id: str | None = None, only: str = "", offset: int = 0, limit: int = 50, oldest_first: bool = False
    ) -> list[StoredSearch]:
        conditions, values = [], []
        if examiner_id is not None:
            conditions.append("examiner_id = ?")
            values.append(examiner_id)
        if only in ("disputed", "awaiting"):
            conditions.append(f"{only} = 1")
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        order = "ASC" if oldest_first else "DESC"
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._SEARCH_COLUMNS} FROM searches {where} ORDER BY created_at {order}, search_id {order} LIMIT ? OFFSET ?",
                (*values, limit, offset),
            ).fetchall()
        return [self._search(row) for row in rows]

    def searches_between(self, since: float, until: float) -> Iterator[StoredSearch]:
        last_time, last_id = since, ""
        while True:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT {self._SEARCH_COLUMNS} FROM searches WHERE (created_at > ? OR (created_at = ? AND search_id > ?))"
                    " AND created_at < ? ORDER BY created_at, search_id LIMIT 1000",
                    (last_time, last_time, last_id, until),
                ).fetchall()
            if not rows:
                return
            last_time, last_id = rows[-1][1], rows[-1][0]
            yield from (self._search(row) for row in rows)

    def probe_image(self, search_id: str, sample_index: int) -> bytes | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sealed FROM search_probes WHERE search_id = ? AND sample_index = ?", (search_id, sample_index)
            ).fetchone()
        return bytes(row[0]) if row else None

    def sealed_images(self) -> Iterator[tuple[tuple, bytes]]:
        last = -1
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT template_id, gallery, subject_id, sealed FROM sample_images WHERE template_id > ? ORDER BY template_id LIMIT 500",
                    (last,),
                ).fetchall()
            if not rows:
                break
            last = rows[-1][0]
            yield from ((("sample", gallery, subject, template_id), bytes(blob)) for template_id, gallery, subject, blob in rows)
        after = ("", -1)
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT search_id, sample_index, sealed FROM search_probes WHERE (search_id, sample_index) > (?, ?)"
                    " ORDER BY search_id, sample_index LIMIT 500",
                    after,
                ).fetchall()
            if not rows:
                return
            after = (rows[-1][0], rows[-1][1])
            yield from ((("probe", search_id, index), bytes(blob)) for search_id, index, blob in rows)

    def reseal_image(self, reference: tuple, sealed: bytes) -> None:
        with self._lock:
            if reference[0] == "sample":
                _, gallery, subject, template_id = reference
                self._db.execute(
                    "UPDATE sample_images SET sealed = ? WHERE template_id = ? AND gallery = ? AND subject_id = ?",
                    (sealed, template_id, gallery, subject),
                )
            else:
                _, search_id, index = reference
                self._db.execute("UPDATE search_probes SET sealed = ? WHERE search_id = ? AND sample_index = ?", (sealed, search_id, index))

    # -- de-duplication runs ----------------------------------------------------------------
    def _job(self, job_id: str) -> DedupJobRecord | None:
        row = self._db.execute(f"SELECT {_DEDUP_COLUMNS} FROM dedup_jobs WHERE job_id = ?", (job_id,)).fetchone()
        return DedupJobRecord(*row) if row else None

    def _transaction(self, work: Callable[[], T]) -> T:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work()
                self._db.execute("COMMIT")
                return result
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def put_dedup_job(self, job: DedupJobRecord) -> None:
        values = dataclasses.astuple(job)
        self._transaction(lambda: self._db.execute(
            f"INSERT INTO dedup_jobs ({_DEDUP_COLUMNS}) VALUES ({', '.join('?' * len(values))})", values))

    def get_dedup_job(self, job_id: str) -> DedupJobRecord | None:
        with self._lock:
            return self._job(job_id)

    def dedup_jobs(self) -> list[DedupJobRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_DEDUP_COLUMNS} FROM dedup_jobs ORDER BY started_at DESC, job_id DESC").fetchall()
        return [DedupJobRecord(*row) for row in rows]

    def claim_dedup_job(self, job_id: str, runner: str, lease_until: float, now: float, steal: bool = False) -> DedupJobRecord | None:
        def claim() -> DedupJobRecord | None:
            cursor = self._db.execute(
                "UPDATE dedup_jobs SET runner = ?, lease_until = ? WHERE job_id = ? AND state = ? AND (? OR runner = ? OR lease_until <= ?)",
                (runner, lease_until, job_id, _RUNNING, int(steal), runner, now),
            )
            return self._job(job_id) if cursor.rowcount else None
        return self._transaction(claim)

    def checkpoint_dedup_job(
        self, job_id: str, runner: str, cursor: str, subjects_done: int, subjects_total: int,
        pairs: Sequence[DedupPairRecord], lease_until: float,
    ) -> DedupJobRecord | None:
        def checkpoint() -> DedupJobRecord | None:
            job = self._job(job_id)
            if job is None or job.state != _RUNNING or job.runner != runner:
                return None
            rows = [(job_id, *p.key, p.score, json.dumps(p.modality_scores, sort_keys=True)) for p in pairs]
            new = 0
            for row in rows:  # one pair at a time: rowcount of an executemany of INSERT OR IGNORE is not per row on every SQLite
                new += self._db.execute("INSERT OR IGNORE INTO dedup_pairs VALUES (?, ?, ?, ?, ?, ?, ?)", row).rowcount
            self._db.executemany(
                "UPDATE dedup_pairs SET score = ?, modality_scores = ? WHERE job_id = ? AND gallery_a = ? AND subject_a = ?"
                " AND gallery_b = ? AND subject_b = ? AND score < ?",
                [(r[5], r[6], *r[:5], r[5]) for r in rows],
            )
            self._db.execute(
                "UPDATE dedup_jobs SET cursor = ?, subjects_done = ?, subjects_total = ?, pairs_found = pairs_found + ?, lease_until = ?"
                " WHERE job_id = ?",
                (cursor, subjects_done, subjects_total, new, lease_until, job_id),
            )
            return self._job(job_id)
        return self._transaction(checkpoint)

    def finish_dedup_job(self, job_id: str, state: int, finished_at: float, error: str = "", runner: str | None = None) -> DedupJobRecord | None:
        def finish() -> DedupJobRecord | None:
            cursor = self._db.execute(
                "UPDATE dedup_jobs SET state = ?, finished_at = ?, error = ? WHERE job_id = ? AND state = ? AND (? IS NULL OR runner = ?)",
                (state, finished_at, error, job_id, _RUNNING, runner, runner),
            )
            return self._job(job_id) if cursor.rowcount else None
        return self._transaction(finish)

    def dedup_pairs(self, job_id: str) -> list[DedupPairRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT gallery_a, subject_a, gallery_b, subject_b, score, modality_scores FROM dedup_pairs WHERE job_id = ?", (job_id,)
            ).fetchall()
        return [DedupPairRecord(*row[:5], json.loads(row[5])) for row in rows]

    def close(self) -> None:
        with self._lock:
            try:  # empty the WAL even when another process keeps it open: rewritten evidence leaves no old frames
                self._truncate_wal()
            except sqlite3.Error:
                pass
            for connection in self._reader_connections:
                connection.close()
            self._reader_connections.clear()
            self._db.close()
