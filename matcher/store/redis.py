"""The shared store: Redis, for several server replicas serving the same galleries.

Layout (``P`` is the key prefix, default ``shanakht``):
- ``P:galleries`` hash name → gallery JSON; ``P:subjects:G`` set of subject ids;
- ``P:subject:G:S`` hash (metadata, enrolled_at, sequence, template_ids);
- ``P:template:ID`` hash (gallery, subject_id, modality, model_id, finger_position, vector, quality);
- ``P:templates:G:M`` sorted set of template ids (rebuild in id order);
- ``P:changes`` stream: the change log; entry id ``<sequence>-1``, so sequences are stream ids.

Every write is one Lua script, so a template, its subject record and its change-log entry appear
together or not at all.  What an acknowledgement guarantees depends on Redis's own persistence
(AOF and ``appendfsync``), which ``persistence()`` reports.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import redis
from redis.exceptions import BusyLoadingError, ConnectionError, ResponseError, TimeoutError, WatchError

from matcher.errors import AlreadyExists, NotFound, ShanakhtError, StoreUnavailable
from matcher.store.audit import GENESIS, AuditRecord, chain
from matcher.modalities import matcher_for, template_payload
from matcher.store.base import Change, EnrollmentResult, GalleryRecord, ModalitySpec, NewEnrollment, Principal, SessionRecord, SignInState, Store, StoredTemplate, SubjectRecord, TemplateInfo  # noqa: E501
from matcher.templates import Modality
from matcher.store.base import StoredSearch
from matcher.store.base import DedupJobRecord, DedupPairRecord

T = TypeVar("T")
_OUTAGE = (ConnectionError, TimeoutError, BusyLoadingError, OSError)

_CREATE_GALLERY = """
local p = ARGV[1]
if redis.call('HSETNX', p .. ':galleries', ARGV[2], ARGV[3]) == 0 then return {'EXISTS'} end
local seq = redis.call('INCR', p .. ':sequence')
redis.call('XADD', p .. ':changes', seq .. '-1', 'gallery', ARGV[2], 'subject_id', '', 'op', 'gallery', 'template_ids', '')
return {'OK', seq}
"""

# ARGV: prefix, gallery, subject, metadata, replace, now, n, then 5 per template.
_ENROLL = """
local p, gallery, subject = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HEXISTS', p .. ':galleries', gallery) == 0 then return {'NOT_FOUND'} end
local skey = p .. ':subject:' .. gallery .. ':' .. subject
local replaced = ''
if redis.call('EXISTS', skey) == 1 then
  if ARGV[5] ~= '1' then return {'EXISTS'} end
  replaced = redis.call('HGET', skey, 'template_ids')
  for id in string.gmatch(replaced, '[^,]+') do
    local tkey = p .. ':template:' .. id
    redis.call('ZREM', p .. ':templates:' .. gallery .. ':' .. redis.call('HGET', tkey, 'modality'), id)
    redis.call('DEL', tkey, p .. ':image:' .. id)
  end
end
local n = tonumber(ARGV[7])
local first = redis.call('INCRBY', p .. ':template_id', n) - n
local ids = {}
for i = 1, n do
  local id = string.format('%d', first + i)
  local b = 7 + (i - 1) * 5
  redis.call('HSET', p .. ':template:' .. id, 'gallery', gallery, 'subject_id', subject, 'modality', ARGV[b + 1],
             'model_id', ARGV[b + 2], 'finger_position', ARGV[b + 3], 'vector', ARGV[b + 4], 'quality', ARGV[b + 5])
  redis.call('ZADD', p .. ':templates:' .. gallery .. ':' .. ARGV[b + 1], id, id)
  ids[i] = id
end
local joined = table.concat(ids, ',')
local seq = redis.call('INCR', p .. ':sequence')
redis.call('XADD', p .. ':changes', seq .. '-1', 'gallery', gallery, 'subject_id', subject, 'op', 'upsert', 'template_ids', joined)
redis.call('HSET', skey, 'metadata', ARGV[4], 'enrolled_at', ARGV[6], 'sequence', seq, 'template_ids', joined)
redis.call('SADD', p .. ':subjects:' .. gallery, subject)
return {'OK', seq, joined, replaced}
"""

_DELETE = """
local p, gallery, subject = ARGV[1], ARGV[2], ARGV[3]
local skey = p .. ':subject:' .. gallery .. ':' .. subject
if redis.call('EXISTS', skey) == 0 then return {'NOT_FOUND'} end
local removed = redis.call('HGET', skey, 'template_ids')
for id in string.gmatch(removed, '[^,]+') do
  local tkey = p .. ':template:' .. id
  redis.call('ZREM', p .. ':templates:' .. gallery .. ':' .. redis.call('HGET', tkey, 'modality'), id)
  redis.call('DEL', tkey, p .. ':image:' .. id)
end
redis.call('DEL', skey)
redis.call('SREM', p .. ':subjects:' .. gallery, subject)
local seq = redis.call('INCR', p .. ':sequence')
redis.call('XADD', p .. ':changes', seq .. '-1', 'gallery', gallery, 'subject_id', subject, 'op', 'delete', 'template_ids', removed)
return {'OK', seq, removed}
"""

_PUT_PRINCIPAL = """
local p = ARGV[1]
if redis.call('HEXISTS', p .. ':principals', ARGV[2]) == 1 then return 'EXISTS' end
if ARGV[3] ~= '' and redis.call('HEXISTS', p .. ':principal_cert', ARGV[3]) == 1 then return 'EXISTS' end
if ARGV[5] ~= '' and redis.call('HEXISTS', p .. ':principal_user', ARGV[5]) == 1 then return 'EXISTS' end
redis.call('HSET', p .. ':principals', ARGV[2], ARGV[4])
if ARGV[3] ~= '' then redis.call('HSET', p .. ':principal_cert', ARGV[3], ARGV[2]) end
if ARGV[5] ~= '' then redis.call('HSET', p .. ':principal_user', ARGV[5], ARGV[2]) end
return 'OK'
"""

# ARGV: prefix, user, max_failures, lock_until.  One failed sign-in, counted atomically across replicas.
_SIGN_IN_FAILURE = """
local key = ARGV[1] .. ':sign_in:' .. ARGV[2]
local failures = redis.call('HINCRBY', key, 'failures', 1)
if failures >= tonumber(ARGV[3]) then
  redis.call('HSET', key, 'failures', 0, 'locked_until', ARGV[4])
  return {0, ARGV[4]}
end
return {failures, redis.call('HGET', key, 'locked_until') or '0'}
"""

# ARGV: prefix, gallery, subject, then (template id, sealed image) pairs: kept only for the subject's own templates.
_PUT_IMAGES = """
local p, gallery, subject = ARGV[1], ARGV[2], ARGV[3]
local kept = 0
for i = 4, #ARGV, 2 do
  local tkey = p .. ':template:' .. ARGV[i]
  if redis.call('HGET', tkey, 'gallery') == gallery and redis.call('HGET', tkey, 'subject_id') == subject then
    redis.call('SET', p .. ':image:' .. ARGV[i], ARGV[i + 1])
    kept = kept + 1
  end
end
return kept
"""

# De-duplication runs: P:dedup_job:ID hash of the record's fields, P:dedup_jobs sorted set by start time,
# P:dedup_pairs:ID hash "ga\x1fsa\x1fgb\x1fsb" → pair JSON, P:dedup_scores:ID the same keys → score.
# ARGV: prefix, job, runner, lease_until, now, steal.
_DEDUP_CLAIM = """
local key = ARGV[1] .. ':dedup_job:' .. ARGV[2]
local job = redis.call('HMGET', key, 'state', 'runner', 'lease_until')
if job[1] ~= '1' then return 0 end
if ARGV[6] ~= '1' and job[2] ~= ARGV[3] and tonumber(job[3]) > tonumber(ARGV[5]) then return 0 end
redis.call('HSET', key, 'runner', ARGV[3], 'lease_until', ARGV[4])
return 1
"""
# ARGV: prefix, job, runner, cursor, done, total, lease_until, then (key, score, json) per pair.
_DEDUP_CHECKPOINT = """
local key = ARGV[1] .. ':dedup_job:' .. ARGV[2]
local job = redis.call('HMGET', key, 'state', 'runner')
if job[1] ~= '1' or job[2] ~= ARGV[3] then return 0 end
local pairs_key, scores_key = ARGV[1] .. ':dedup_pairs:' .. ARGV[2], ARGV[1] .. ':dedup_scores:' .. ARGV[2]
local new = 0
for i = 8, #ARGV, 3 do
  local old = redis.call('HGET', scores_key, ARGV[i])
  if not old then new = new + 1 end
  if (not old) or tonumber(ARGV[i + 1]) > tonumber(old) then
    redis.call('HSET', scores_key, ARGV[i], ARGV[i + 1])
    redis.call('HSET', pairs_key, ARGV[i], ARGV[i + 2])
  end
end
redis.call('HSET', key, 'cursor', ARGV[4], 'subjects_done', ARGV[5], 'subjects_total', ARGV[6], 'lease_until', ARGV[7])
redis.call('HINCRBY', key, 'pairs_found', new)
return 1
"""
# ARGV: prefix, job, state, finished_at, error, runner ('' = anyone's).
_DEDUP_FINISH = """
local key = ARGV[1] .. ':dedup_job:' .. ARGV[2]
local job = redis.call('HMGET', key, 'state', 'runner')
if job[1] ~= '1' or (ARGV[6] ~= '' and job[2] ~= ARGV[6]) then return 0 end
redis.call('HSET', key, 'state', ARGV[3], 'finished_at', ARGV[4], 'error', ARGV[5])
return 1
"""
_PAIR_SEPARATOR = "\x1f"

_TEMPLATE_FIELDS = ("subject_id", "modality", "model_id", "finger_position", "vector")


def _ids(text: bytes | str | None) -> tuple[int, ...]:
    if not text:
        return ()
    text = text.decode() if isinstance(text, bytes) else text
    return tuple(int(part) for part in text.split(",") if part)


def _gallery_json(record: GalleryRecord) -> str:
    return json.dumps(
        {
            "threshold_fmr": record.threshold_fmr,
            "description": record.description,
            "quality_policy": record.quality_policy,
            "threshold_fpir": record.threshold_fpir,
            "retain_images": record.retain_images,
            "modalities": [s.as_row() for s in record.modalities],
        }
    )


def _outage_safe(method: Callable[..., T]) -> Callable[..., T]:
    """Turn a lost connection into ``StoreUnavailable``: the RPC fails fast with UNAVAILABLE."""

    @functools.wraps(method)
    def wrapper(self: "RedisStore", *args, **kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except _OUTAGE as error:
            raise StoreUnavailable(f"the Redis store at {self.location} is unavailable ({error}); nothing was written") from error

    return wrapper


class RedisStore(Store):
    """``Store`` on a Redis server (TLS and password through the URL: ``rediss://:pw@host:port/0``)."""

    single_writer = False

    def __init__(self, url: str, prefix: str = "shanakht") -> None:
        self.url = url
        self.prefix = prefix
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=10.0, health_check_interval=5)
        self.location = self._redis.connection_pool.connection_kwargs.get("host", "?") + ":" + str(
            self._redis.connection_pool.connection_kwargs.get("port", "?")
        )
        self._create_gallery = self._redis.register_script(_CREATE_GALLERY)
        self._enroll = self._redis.register_script(_ENROLL)
        self._delete = self._redis.register_script(_DELETE)
        self._put_principal = self._redis.register_script(_PUT_PRINCIPAL)
        self._put_images = self._redis.register_script(_PUT_IMAGES)
        self._sign_in_failure = self._redis.register_script(_SIGN_IN_FAILURE)
        self._dedup_claim = self._redis.register_script(_DEDUP_CLAIM)
        self._dedup_checkpoint = self._redis.register_script(_DEDUP_CHECKPOINT)
        self._dedup_finish = self._redis.register_script(_DEDUP_FINISH)

    def key(self, *parts: object) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    # -- persistence ----------------------------------------------------------------------
    @_outage_safe
    def persistence(self) -> dict[str, str]:
        """Redis's persistence settings, to say what an acknowledgement guarantees."""
        try:
            settings = {**self._redis.config_get("appendonly"), **self._redis.config_get("appendfsync")}
        except ResponseError:  # CONFIG disabled (managed Redis): we cannot know
            return {"appendonly": "unknown", "appendfsync": "unknown"}
        return {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v for k, v in settings.items()}

    def durability(self) -> str:
        settings = self.persistence()
        if settings.get("appendonly") != "yes":
            return (f"Redis at {self.location} has AOF off (appendonly={settings.get('appendonly')}): acknowledged writes live "
                    "in memory and RDB snapshots only, and a Redis restart can lose them")
        fsync = settings.get("appendfsync")
        if fsync == "always":
            return f"Redis at {self.location} fsyncs its AOF before acknowledging: an acknowledged write survives a crash"
        if fsync == "everysec":
            return f"Redis at {self.location} fsyncs its AOF every second: a host crash can lose the last second of acknowledged writes"
        return f"Redis at {self.location} leaves AOF fsync to the OS (appendfsync={fsync}): a host crash can lose acknowledged writes"

    def is_durable(self) -> bool:
        return self.persistence().get("appendonly") == "yes"

    # -- writes ---------------------------------------------------------------------------
    @_outage_safe
    def create_gallery(self, gallery: GalleryRecord) -> int:
        reply = self._create_gallery(args=[self.prefix, gallery.name, _gallery_json(gallery)])
        if reply[0] == b"EXISTS":
            raise AlreadyExists(f"gallery {gallery.name!r} already exists")
        return int(reply[1])

    @_outage_safe
    def enroll(self, enrollments: Sequence[NewEnrollment]) -> list[EnrollmentResult | ShanakhtError]:
        pipe = self._redis.pipeline(transaction=False)
        now = repr(time.time())
        for item in enrollments:
            args: list[object] = [self.prefix, item.gallery, item.subject_id, json.dumps(item.metadata, sort_keys=True),
                                  "1" if item.replace else "0", now, len(item.templates)]
            for t in item.templates:
                args += [t.modality.value, t.model_id, t.finger_position, template_payload(t), json.dumps(t.quality)]
            self._enroll(args=args, client=pipe)
        replies = pipe.execute(raise_on_error=False)
        results: list[EnrollmentResult | ShanakhtError] = []
        for item, reply in zip(enrollments, replies):
            if isinstance(reply, Exception):
                raise reply
            if reply[0] == b"NOT_FOUND":
                results.append(NotFound(f"gallery {item.gallery!r} does not exist"))
            elif reply[0] == b"EXISTS":
                results.append(
                    AlreadyExists(f"subject {item.subject_id!r} is already enrolled in gallery {item.gallery!r}; set replace to overwrite")
                )
            else:
                results.append(EnrollmentResult(item.subject_id, _ids(reply[2]), int(reply[1]), _ids(reply[3])))
        return results

    @_outage_safe
    def delete_subject(self, gallery: str, subject_id: str) -> tuple[int, tuple[int, ...]]:
        reply = self._delete(args=[self.prefix, gallery, subject_id])
        if reply[0] == b"NOT_FOUND":
            raise NotFound(f"subject {subject_id!r} is not enrolled in gallery {gallery!r}")
        return int(reply[1]), _ids(reply[2])

    # -- reads ----------------------------------------------------------------------------
    @_outage_safe
    def galleries(self) -> list[GalleryRecord]:
        records = []
        for name, raw in sorted(self._redis.hgetall(self.key("galleries")).items()):
            data = json.loads(raw)
            specs = tuple(ModalitySpec.from_row(row) for row in data["modalities"])
            records.append(
                GalleryRecord(
                    name.decode(), data["threshold_fmr"], specs, data["description"], data.get("quality_policy", "warn"),
                    data.get("threshold_fpir", 0.0), bool(data.get("retain_images", False)),
                )
            )
        return records

    @_outage_safe
    def get_subject(self, gallery: str, subject_id: str) -> SubjectRecord:
        raw = self._redis.hgetall(self.key("subject", gallery, subject_id))
        if not raw:
            raise NotFound(f"subject {subject_id!r} is not enrolled in gallery {gallery!r}")
        ids = _ids(raw[b"template_ids"])
        pipe = self._redis.pipeline(transaction=False)
        for template_id in ids:
            pipe.hmget(self.key("template", template_id), "modality", "model_id", "finger_position")
            pipe.exists(self.key("image", template_id))
        replies = pipe.execute()
        infos = [
            TemplateInfo(template_id, Modality(int(m)), model.decode(), int(position), bool(image))
            for template_id, (m, model, position), image in zip(ids, replies[0::2], replies[1::2])
            if m is not None
        ]
        return SubjectRecord(
            gallery=gallery,
            subject_id=subject_id,
            metadata=json.loads(raw[b"metadata"]),
            templates=tuple(infos),
            enrolled_at=float(raw[b"enrolled_at"]),
            sequence=int(raw[b"sequence"]),
        )

    @_outage_safe
    def subject_metadata(self, gallery: str, subject_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        pipe = self._redis.pipeline(transaction=False)
        for subject in subject_ids:
            pipe.hget(self.key("subject", gallery, subject), "metadata")
        return {s: json.loads(m) for s, m in zip(subject_ids, pipe.execute()) if m is not None}

    @_outage_safe
    def count_subjects(self, gallery: str) -> int:
        return int(self._redis.scard(self.key("subjects", gallery)))

    def _fetch_templates(self, ids: Sequence[int]) -> list[StoredTemplate]:
        pipe = self._redis.pipeline(transaction=False)
        for template_id in ids:
            pipe.hmget(self.key("template", template_id), *_TEMPLATE_FIELDS)
        found = []
        for template_id, (subject, modality, model, position, vector) in zip(ids, pipe.execute()):
            if subject is None:
                continue
            found.append(
                StoredTemplate(
                    template_id, subject.decode(), Modality(int(modality)), model.decode(), int(position),
                    matcher_for(Modality(int(modality))).from_payload(vector),
                )
            )
        return found

    @_outage_safe
    def iter_templates(self, gallery: str, modality: Modality, batch: int = 10_000) -> Iterator[list[StoredTemplate]]:
        last = 0
        key = self.key("templates", gallery, modality.value)
        while True:
            ids = [int(i) for i in self._redis.zrangebyscore(key, f"({last}", "+inf", start=0, num=batch)]
            if not ids:
                return
            last = ids[-1]
            yield self._fetch_templates(ids)

    @_outage_safe
    def templates_by_id(self, template_ids: Sequence[int]) -> list[StoredTemplate]:
        return self._fetch_templates(sorted(template_ids))

    @staticmethod
    def _change(entry_id: bytes, fields: dict[bytes, bytes]) -> Change:
        return Change(
            sequence=int(entry_id.split(b"-")[0]),
            gallery=fields[b"gallery"].decode(),
            subject_id=fields[b"subject_id"].decode(),
            op=fields[b"op"].decode(),
            template_ids=_ids(fields[b"template_ids"]),
        )

    @_outage_safe
    def changes_since(self, sequence: int, limit: int = 10_000) -> list[Change]:
        entries = self._redis.xrange(self.key("changes"), min=f"{sequence + 1}-0", max="+", count=limit)
        return [self._change(entry_id, fields) for entry_id, fields in entries]

    @_outage_safe
    def wait_for_changes(self, sequence: int, timeout: float) -> bool:
        """Block until the log holds an entry after ``sequence`` (XREAD BLOCK), or ``timeout`` passes."""
        reply = self._redis.xread({self.key("changes"): f"{sequence}-1"}, count=1, block=max(1, int(timeout * 1000)))
        return bool(reply)

    @_outage_safe
    def last_sequence(self) -> int:
        return int(self._redis.get(self.key("sequence")) or 0)

    # -- principals and audit --------------------------------------------------------------
    @staticmethod
    def _principal_json(p: Principal) -> str:
        return json.dumps({**dataclasses.asdict(p), "key_salt": p.key_salt.hex(), "key_hash": p.key_hash.hex()})

    @staticmethod
    def _principal_from(raw: bytes) -> Principal:
        data = json.loads(raw)
        data.update(galleries=tuple(data["galleries"]), key_salt=bytes.fromhex(data["key_salt"]), key_hash=bytes.fromhex(data["key_hash"]))
        return Principal(**data)

    @_outage_safe
    def put_principal(self, principal: Principal) -> None:
        reply = self._put_principal(
            args=[self.prefix, principal.key_id, principal.cert_subject, self._principal_json(principal), principal.user]
        )
        if reply != b"OK":
            raise AlreadyExists(
                f"principal {principal.key_id!r}, certificate subject {principal.cert_subject!r} or user {principal.user!r} exists"
            )

    @_outage_safe
    def principals(self) -> list[Principal]:
        found = [self._principal_from(raw) for raw in self._redis.hgetall(self.key("principals")).values()]
        return sorted(found, key=lambda p: p.created_at)

    @_outage_safe
    def get_principal(self, key_id: str) -> Principal | None:
        raw = self._redis.hget(self.key("principals"), key_id)
        return self._principal_from(raw) if raw else None

    @_outage_safe
    def principal_for_cert(self, subject: str) -> Principal | None:
        key_id = self._redis.hget(self.key("principal_cert"), subject)
        principal = self.get_principal(key_id.decode()) if key_id else None
        return principal if principal and not principal.revoked_at else None

    @_outage_safe
    def revoke_principal(self, key_id: str, at: float) -> None:
        principal = self.get_principal(key_id)
        if principal is None or principal.revoked_at:
            raise NotFound(f"no active key {key_id!r}")
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self.key("principals"), key_id, self._principal_json(dataclasses.replace(principal, revoked_at=at)))
        if principal.cert_subject:
            pipe.hdel(self.key("principal_cert"), principal.cert_subject)
        if principal.user:
            pipe.hdel(self.key("principal_user"), principal.user)
        pipe.execute()

    @_outage_safe
    def principal_for_user(self, user: str) -> Principal | None:
        key_id = self._redis.hget(self.key("principal_user"), user) if user else None
        principal = self.get_principal(key_id.decode()) if key_id else None
        return principal if principal and not principal.revoked_at else None

    # -- console sessions and failed sign-ins: P:session:ID hash (expires with Redis's own TTL too), P:sign_in:USER hash
    @_outage_safe
    def put_session(self, session: SessionRecord) -> None:
        key = self.key("session", session.session_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"key_id": session.key_id, "token_hash": session.token_hash.hex(),
                                "created_at": repr(session.created_at), "expires_at": repr(session.expires_at)})
        pipe.expireat(key, int(session.expires_at) + 86_400)
        pipe.execute()

    @_outage_safe
    def get_session(self, session_id: str) -> SessionRecord | None:
        raw = self._redis.hgetall(self.key("session", session_id))
        if not raw:
            return None
        return SessionRecord(session_id, raw[b"key_id"].decode(), bytes.fromhex(raw[b"token_hash"].decode()),
                             float(raw[b"created_at"]), float(raw[b"expires_at"]))

    @_outage_safe
    def touch_session(self, session_id: str, expires_at: float) -> None:
        key = self.key("session", session_id)
        current = self._redis.hget(key, "expires_at")
        if current is not None and float(current) < expires_at:  # gone, or already later: leave it
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(key, "expires_at", repr(expires_at))
            pipe.expireat(key, int(expires_at) + 86_400)
            pipe.execute()

    @_outage_safe
    def delete_session(self, session_id: str) -> None:
        self._redis.delete(self.key("session", session_id))

    @_outage_safe
    def sign_in_state(self, user: str) -> SignInState:
        raw = self._redis.hgetall(self.key("sign_in", user))
        return SignInState(user, int(raw.get(b"failures", 0)), float(raw.get(b"locked_until", 0))) if raw else SignInState(user)

    @_outage_safe
    def count_sign_in_failure(self, user: str, max_failures: int, lock_until: float) -> SignInState:
        failures, locked = self._sign_in_failure(args=[self.prefix, user, max_failures, repr(lock_until)])
        return SignInState(user, int(failures), float(locked))

    @_outage_safe
    def clear_sign_in_failures(self, user: str) -> None:
        self._redis.delete(self.key("sign_in", user))

    @_outage_safe
    def append_audit(self, payloads: Sequence[dict]) -> list[AuditRecord]:
        """Optimistic concurrency on the head: replicas append to one chain without a lock server."""
        head_key, log_key = self.key("audit_head"), self.key("audit")
        while True:
            with self._redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(head_key)
                    raw = pipe.get(head_key)
                    sequence, digest = (int(raw.split(b" ")[0]), raw.split(b" ")[1].decode()) if raw else (0, GENESIS)
                    records = chain(payloads, sequence, digest)
                    pipe.multi()
                    for r in records:
                        pipe.xadd(log_key, {"prev_hash": r.prev_hash, "payload": r.payload, "hash": r.hash}, id=f"{r.sequence}-1")
                    if records:
                        pipe.set(head_key, f"{records[-1].sequence} {records[-1].hash}")
                    pipe.execute()
                    return records
                except WatchError:
                    continue

    @_outage_safe
    def audit_records(self, after: int = 0, limit: int = 10_000) -> list[AuditRecord]:
        entries = self._redis.xrange(self.key("audit"), min=f"{after + 1}-0", max="+", count=limit)
        return [
            AuditRecord(int(entry_id.split(b"-")[0]), f[b"prev_hash"].decode(), f[b"payload"].decode(), f[b"hash"].decode())
            for entry_id, f in entries
        ]

    @_outage_safe
    def audit_head(self) -> tuple[int, str]:
        raw = self._redis.get(self.key("audit_head"))
        if not raw:
            return 0, GENESIS
        sequence, digest = raw.split(b" ")
        return int(sequence), digest.decode()

    # -- evidence images and search records ---------------------------------------------------
    # P:image:TID sealed image of a template (deleted with the template by the enroll and delete scripts);
    # P:search:ID hash; P:searches, P:searches_by:EXAMINER, P:searches_disputed, P:searches_awaiting sorted sets
    # by creation time; P:search_probes:ID hash sample index → sealed probe image.
    @_outage_safe
    def put_sample_images(self, gallery: str, subject_id: str, sealed: dict[int, bytes]) -> int:
        if not sealed:
            return 0
        args: list[object] = [self.prefix, gallery, subject_id]
        for template_id, blob in sealed.items():
            args += [template_id, blob]
        return int(self._put_images(args=args))

    @_outage_safe
    def sample_image(self, gallery: str, subject_id: str, template_id: int) -> bytes | None:
        owner = self._redis.hmget(self.key("template", template_id), "gallery", "subject_id")
        if owner != [gallery.encode(), subject_id.encode()]:
            return None
        return self._redis.get(self.key("image", template_id))

    @staticmethod
    def _search_from(search_id: str, raw: dict) -> StoredSearch:
        return StoredSearch(search_id, float(raw[b"created_at"]), raw[b"examiner_id"].decode(), raw[b"disputed"] == b"1",
                            raw[b"awaiting"] == b"1", raw[b"body"].decode())

    def _write_search(self, pipe, search: StoredSearch) -> None:
        pipe.hset(self.key("search", search.search_id), mapping={
            "created_at": repr(search.created_at), "examiner_id": search.examiner_id, "disputed": int(search.disputed),
            "awaiting": int(search.awaiting), "body": search.body})
        for flag, on in (("disputed", search.disputed), ("awaiting", search.awaiting)):
            if on:
                pipe.zadd(self.key("searches_" + flag), {search.search_id: search.created_at})
            else:
                pipe.zrem(self.key("searches_" + flag), search.search_id)

    @_outage_safe
    def put_search(self, search: StoredSearch, probes: dict[int, bytes]) -> None:
        if self._redis.exists(self.key("search", search.search_id)):
            raise AlreadyExists(f"search {search.search_id!r} exists")
        pipe = self._redis.pipeline(transaction=True)
        self._write_search(pipe, search)
        pipe.zadd(self.key("searches"), {search.search_id: search.created_at})
        pipe.zadd(self.key("searches_by", search.examiner_id), {search.search_id: search.created_at})
        if probes:
            pipe.hset(self.key("search_probes", search.search_id), mapping={str(i): blob for i, blob in probes.items()})
        pipe.execute()

    @_outage_safe
    def get_search(self, search_id: str) -> StoredSearch | None:
        raw = self._redis.hgetall(self.key("search", search_id))
        return self._search_from(search_id, raw) if raw else None

    @_outage_safe
    def update_search(self, search_id: str, change: Callable[[StoredSearch], StoredSearch]) -> StoredSearch:
        """Optimistic: WATCH the record, change it, write it back; a concurrent writer makes us redo it on theirs."""
        key = self.key("search", search_id)
        while True:
            with self._redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.hgetall(key)
                    if not raw:
                        raise NotFound(f"search {search_id!r} does not exist")
                    updated = change(self._search_from(search_id, raw))
                    pipe.multi()
                    self._write_search(pipe, updated)
                    pipe.execute()
                    return updated
                except WatchError:
                    continue

    @_outage_safe
    def list_searches(
        self, examiner_id: str | None = None, only: str = "", offset: int = 0, limit: int = 50, oldest_first: bool = False
    ) -> list[StoredSearch]:
        if examiner_id is not None:
            index = self.key("searches_by", examiner_id)
        elif only in ("disputed", "awaiting"):
            index = self.key("searches_" + only)
        else:
            index = self.key("searches")
        filtered = examiner_id is not None and only in ("disputed", "awaiting")
        found: list[StoredSearch] = []
        skipped, start = 0, 0
        while len(found) < limit:
            ids = (self._redis.zrange if oldest_first else self._redis.zrevrange)(index, start, start + 499)
            if not ids:
                break
            start += len(ids)
            pipe = self._redis.pipeline(transaction=False)
            for search_id in ids:
                pipe.hgetall(self.key("search", search_id.decode()))
            for search_id, raw in zip(ids, pipe.execute()):
                if not raw:
                    continue
                record = self._search_from(search_id.decode(), raw)
                if filtered and not getattr(record, only):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                found.append(record)
                if len(found) == limit:
                    break
        return found

    @_outage_safe
    def searches_between(self, since: float, until: float) -> Iterator[StoredSearch]:
        start = 0
        while True:
            ids = self._redis.zrangebyscore(self.key("searches"), since, f"({until}", start=start, num=1000)
            if not ids:
                return
            start += len(ids)
            pipe = self._redis.pipeline(transaction=False)
            for search_id in ids:
                pipe.hgetall(self.key("search", search_id.decode()))
            yield from (self._search_from(i.decode(), raw) for i, raw in zip(ids, pipe.execute()) if raw)

    @_outage_safe
    def probe_image(self, search_id: str, sample_index: int) -> bytes | None:
        return self._redis.hget(self.key("search_probes", search_id), str(sample_index))

    @_outage_safe
    def sealed_images(self) -> Iterator[tuple[tuple, bytes]]:
        for key in self._redis.scan_iter(match=self.key("image", "*"), count=500):
            template_id = int(key.rsplit(b":", 1)[1])
            owner = self._redis.hmget(self.key("template", template_id), "gallery", "subject_id")
            blob = self._redis.get(key)
            if blob is not None and owner[0] is not None:
                yield ("sample", owner[0].decode(), owner[1].decode(), template_id), blob
        for key in self._redis.scan_iter(match=self.key("search_probes", "*"), count=500):
            search_id = key.decode()[len(self.key("search_probes", "")):]
            for index, blob in self._redis.hgetall(key).items():
                yield ("probe", search_id, int(index)), blob

    @_outage_safe
    def reseal_image(self, reference: tuple, sealed: bytes) -> None:
        if reference[0] == "sample":
            self._redis.set(self.key("image", reference[3]), sealed, xx=True)
        else:
            key = self.key("search_probes", reference[1])
            if self._redis.hexists(key, str(reference[2])):
                self._redis.hset(key, str(reference[2]), sealed)

    # -- de-duplication runs ----------------------------------------------------------------
    @staticmethod
    def _job_from(raw: dict) -> DedupJobRecord:
        values = {k.decode(): v.decode() for k, v in raw.items()}
        kinds = {f.name: f.type for f in dataclasses.fields(DedupJobRecord)}
        return DedupJobRecord(**{
            name: (int(values[name]) if kind in (int, "int") else float(values[name]) if kind in (float, "float") else values[name])
            for name, kind in kinds.items()
        })

    @_outage_safe
    def put_dedup_job(self, job: DedupJobRecord) -> None:
        fields = {k: (repr(v) if isinstance(v, float) else str(v)) for k, v in dataclasses.asdict(job).items()}
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self.key("dedup_job", job.job_id), mapping=fields)
        pipe.zadd(self.key("dedup_jobs"), {job.job_id: job.started_at})
        pipe.execute()

    @_outage_safe
    def get_dedup_job(self, job_id: str) -> DedupJobRecord | None:
        raw = self._redis.hgetall(self.key("dedup_job", job_id))
        return self._job_from(raw) if raw else None

    @_outage_safe
    def dedup_jobs(self) -> list[DedupJobRecord]:
        ids = self._redis.zrevrange(self.key("dedup_jobs"), 0, -1)
        pipe = self._redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.key("dedup_job", job_id.decode()))
        return [self._job_from(raw) for raw in pipe.execute() if raw]

    @_outage_safe
    def claim_dedup_job(self, job_id: str, runner: str, lease_until: float, now: float, steal: bool = False) -> DedupJobRecord | None:
        claimed = self._dedup_claim(args=[self.prefix, job_id, runner, repr(lease_until), repr(now), "1" if steal else "0"])
        return self.get_dedup_job(job_id) if claimed else None

    @_outage_safe
    def checkpoint_dedup_job(
        self, job_id: str, runner: str, cursor: str, subjects_done: int, subjects_total: int,
        pairs: Sequence[DedupPairRecord], lease_until: float,
    ) -> DedupJobRecord | None:
        args: list[object] = [self.prefix, job_id, runner, cursor, subjects_done, subjects_total, repr(lease_until)]
        for pair in pairs:
            args += [_PAIR_SEPARATOR.join(pair.key), repr(float(pair.score)), json.dumps(dataclasses.asdict(pair), sort_keys=True)]
        return self.get_dedup_job(job_id) if self._dedup_checkpoint(args=args) else None

    @_outage_safe
    def finish_dedup_job(self, job_id: str, state: int, finished_at: float, error: str = "", runner: str | None = None) -> DedupJobRecord | None:
        done = self._dedup_finish(args=[self.prefix, job_id, state, repr(finished_at), error, runner or ""])
        return self.get_dedup_job(job_id) if done else None

    @_outage_safe
    def dedup_pairs(self, job_id: str) -> list[DedupPairRecord]:
        return [DedupPairRecord(**json.loads(raw)) for raw in self._redis.hvals(self.key("dedup_pairs", job_id))]

    def close(self) -> None:
        self._redis.close()
