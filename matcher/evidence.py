"""Evidence images sealed at rest: AES-256-GCM records and the key file they are sealed under.

Why a record of its own: an enrolled photo or a search's probe is the most sensitive thing the
service holds (a template cannot be turned back into a face; a photo is the face).  Each image
is sealed before it reaches a store, with associated data naming where it belongs (gallery,
subject and template id, or search id and probe index), so a sealed image copied to another
subject's row fails to open instead of showing the wrong person.  The key never enters a store:
it lives in a file in the data directory, mode 0600, and a looser mode stops the server.

A sealed record is ``MAGIC · key id (8) · nonce (12) · AES-GCM(header JSON length (4) · header · image)``;
the key id (the first 8 bytes of the key's SHA-256) lets a keyring holding the old and the new
key open records sealed under either, which is what makes ``shanakht evidence rotate-key`` restartable.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from matcher.errors import FailedPrecondition
from matcher.modality import Modality

MAGIC = b"SHKE1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_BYTES = 8


@dataclass(frozen=True)
class EvidenceImage:
    """An image normalised for keeping (``enrollment.evidence`` makes them): encoded bytes and what they show."""

    data: bytes
    media_type: str  # "image/jpeg" or "image/png"
    modality: Modality
    width: int
    height: int
    finger_position: int = 0


class EvidenceKeyError(SystemExit):
    """The key file is missing where it must exist, unreadable, the wrong size, or readable by others."""


def sample_aad(gallery: str, subject_id: str, template_id: int) -> bytes:
    """Associated data of an enrolled sample's image: it opens only where it was sealed."""
    return json.dumps(["sample", gallery, subject_id, int(template_id)]).encode()


def probe_aad(search_id: str, sample_index: int) -> bytes:
    """Associated data of a search probe's image."""
    return json.dumps(["probe", search_id, int(sample_index)]).encode()


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:KEY_ID_BYTES]


def _read_key(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise EvidenceKeyError(
            f"refusing to start: the evidence key {path} has mode {mode:04o}; other users could read it "
            f"(run `chmod 600 {path}`)"
        )
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise EvidenceKeyError(f"refusing to start: the evidence key {path} is {len(key)} bytes, not {KEY_BYTES}")
    return key


def write_new_key(path: Path) -> bytes:
    """Create a fresh random key file, mode 0600 from its first byte (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, key)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return key


def next_key_path(path: Path) -> Path:
    """Where a rotation keeps the new key until every record is sealed under it."""
    return path.with_name(path.name + ".next")


class Keyring:
    """The key images are sealed under, and any key a rotation in progress still needs to open them."""

    def __init__(self, primary: bytes, others: tuple[bytes, ...] = ()) -> None:
        self.primary = primary
        self._keys = {key_id(k): AESGCM(k) for k in (primary, *others)}
        self._primary_id = key_id(primary)

    @classmethod
    def open(cls, path: Path, create: bool = True) -> "Keyring":
        """The key file at ``path`` (created on first start); a rotation's ``.next`` key, if present, is primary."""
        if not path.exists():
            if not create:
                raise EvidenceKeyError(f"no evidence key at {path}")
            write_new_key(path)
        current = _read_key(path)
        pending = next_key_path(path)
        if pending.exists():  # a rotation was interrupted: seal under the new key, open under both
            return cls(_read_key(pending), (current,))
        return cls(current)

    def seal(self, image: EvidenceImage, aad: bytes) -> bytes:
        header = json.dumps(
            {"media_type": image.media_type, "modality": image.modality.value, "width": image.width, "height": image.height,
             "finger_position": image.finger_position}
        ).encode()
        nonce = secrets.token_bytes(NONCE_BYTES)
        body = struct.pack(">I", len(header)) + header + image.data
        return MAGIC + self._primary_id + nonce + self._keys[self._primary_id].encrypt(nonce, body, aad)

    def open_sealed(self, sealed: bytes, aad: bytes) -> EvidenceImage:
        """Decrypt and authenticate; a record under an unknown key, or moved or altered, is refused."""
        if not sealed.startswith(MAGIC):
            raise FailedPrecondition("the stored evidence image is not a sealed record")
        start = len(MAGIC)
        kid, nonce = sealed[start : start + KEY_ID_BYTES], sealed[start + KEY_ID_BYTES : start + KEY_ID_BYTES + NONCE_BYTES]
        cipher = self._keys.get(kid)
        if cipher is None:
            raise FailedPrecondition("the evidence image was sealed under a key this server does not hold (see `evidence rotate-key`)")
        try:
            body = cipher.decrypt(nonce, sealed[start + KEY_ID_BYTES + NONCE_BYTES :], aad)
        except InvalidTag:
            raise FailedPrecondition("the evidence image failed authentication: altered, or not this record's") from None
        (length,) = struct.unpack(">I", body[:4])
        header = json.loads(body[4 : 4 + length])
        return EvidenceImage(
            data=body[4 + length :], media_type=header["media_type"], modality=Modality(header["modality"]),
            width=int(header["width"]), height=int(header["height"]), finger_position=int(header["finger_position"]),
        )

    def sealed_under_primary(self, sealed: bytes) -> bool:
        return sealed[len(MAGIC) : len(MAGIC) + KEY_ID_BYTES] == self._primary_id


def aad_of(reference: tuple) -> bytes:
    """The associated data of a stored image, from the reference a store lists it under (``Store.sealed_images``)."""
    if reference[0] == "sample":
        return sample_aad(reference[1], reference[2], reference[3])
    return probe_aad(reference[1], reference[2])


def rotate_key(store, path: Path) -> int:
    """Re-seal every stored image under a new key, then retire the old one; returns how many were re-sealed.

    Restartable: the new key waits in ``<key>.next`` until every image is sealed under it, and a
    run that stopped half-way (records under either key) is finished by running it again.  Run it
    with every server of the store stopped: a running server holds the old key and would seal
    new images under it.  ``store`` is a ``matcher.store.base.Store``.
    """
    pending = next_key_path(path)
    if not pending.exists():
        write_new_key(pending)
    keyring = Keyring.open(path, create=False)
    resealed = 0
    for reference, sealed in store.sealed_images():
        if keyring.sealed_under_primary(sealed):
            continue
        aad = aad_of(reference)
        store.reseal_image(reference, keyring.seal(keyring.open_sealed(sealed, aad), aad))
        resealed += 1
    os.replace(pending, path)  # the old key is gone: what it sealed no longer exists either
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return resealed
