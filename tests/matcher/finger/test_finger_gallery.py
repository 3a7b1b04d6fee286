"""Finger galleries as a plain library: ISO records in the store, 1:N, 1:1, fusion, restart."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from matcher.calibration import Calibration
from matcher.errors import FailedPrecondition, InvalidArgument
from matcher.finger.iso19794 import FORMAT_ID, to_iso
from matcher.galleries import EnrollItem, Galleries
from matcher.store.base import GalleryRecord, ModalitySpec
from matcher.store.sqlite import SQLiteStore
from matcher.templates import Modality, Template

SPEC = ModalitySpec(Modality.FINGER, FORMAT_ID, 0)
# A stand-in table (raw score 0 → 0, 100 → 10): these tests check plumbing, not calibration.
LINEAR = Calibration("test", (0.0, 100.0), (0.0, 10.0))


def finger(template, position: int = 0) -> Template:
    record = to_iso(dataclasses.replace(template, position=position))
    return Template(Modality.FINGER, FORMAT_ID, np.frombuffer(record, np.uint8), position)


def open_galleries(path, snapshots: bool = True) -> Galleries:
    return Galleries(SQLiteStore(path / "s.sqlite3"), path / "snapshots" if snapshots else None, lambda spec: LINEAR)


def test_finger_gallery_round_trip_fusion_and_restart(tmp_path, db1_templates):
    t = db1_templates
    galleries = open_galleries(tmp_path)
    galleries.create(GalleryRecord("g", 1e-4, (SPEC,)))
    galleries.enroll([EnrollItem("g", "A", (finger(t[(101, 1)], 2),)), EnrollItem("g", "B", (finger(t[(102, 1)], 3),))])
    (best, *_) = galleries.identify([finger(t[(101, 2)])], ["g"], top=2)
    assert best.subject_id == "A" and best.modality_scores["finger"] > 0

    # Two probe fingers of one subject: their calibrated scores add.
    galleries.enroll([EnrollItem("g", "AB", (finger(t[(101, 1)], 2), finger(t[(102, 1)], 3)))])
    one = galleries.verify("g", "AB", [finger(t[(101, 3)])]).score
    two = galleries.verify("g", "AB", [finger(t[(101, 3)]), finger(t[(102, 3)])]).score
    assert two > one > 0
    assert galleries.identify([finger(t[(101, 3)]), finger(t[(102, 3)])], ["g"], top=1)[0].subject_id == "AB"

    galleries.remove("g", "A")
    assert "A" not in {c.subject_id for c in galleries.identify([finger(t[(101, 2)])], ["g"], top=3)}
    before = [(c.subject_id, c.score) for c in galleries.identify([finger(t[(102, 2)])], ["g"], top=3)]
    galleries.snapshot()
    galleries.store.close()
    for snapshots in (True, False):  # from the snapshot, and rebuilt from the store's ISO records
        reopened = open_galleries(tmp_path, snapshots)
        after = [(c.subject_id, c.score) for c in reopened.identify([finger(t[(102, 2)])], ["g"], top=3)]
        assert after == before
        assert reopened.statistics(["g"])[0].indexes[0].index_type.startswith("MCC-")
        reopened.store.close()


def test_malformed_records_are_refused_by_field(tmp_path, db1_templates):
    galleries = open_galleries(tmp_path)
    galleries.create(GalleryRecord("g", 1e-4, (SPEC,)))
    record = bytearray(to_iso(db1_templates[(101, 1)]))
    record[11] ^= 0x01  # length field
    bad = Template(Modality.FINGER, FORMAT_ID, np.frombuffer(bytes(record), np.uint8))
    (outcome,) = galleries.enroll([EnrollItem("g", "X", (bad,))])
    assert isinstance(outcome, InvalidArgument) and outcome.field == "samples[0].template.vector" and "length field" in str(outcome)
    assert galleries.statistics(["g"])[0].subjects == 0
    with pytest.raises(InvalidArgument):
        galleries.create(GalleryRecord("h", 1e-4, (ModalitySpec(Modality.FINGER, FORMAT_ID, 512),)))


def test_finger_galleries_need_a_measured_calibration(tmp_path):
    galleries = Galleries(SQLiteStore(tmp_path / "s.sqlite3"), None)
    with pytest.raises(FailedPrecondition):
        galleries.create(GalleryRecord("g", 1e-4, (SPEC,)))


def test_a_known_finger_is_compared_with_the_same_finger_only(tmp_path, db1_templates):
    t = db1_templates
    galleries = open_galleries(tmp_path)
    galleries.create(GalleryRecord("g", 1e-4, (SPEC,)))
    galleries.enroll([EnrollItem("g", "A", (finger(t[(101, 1)], 2),))])  # right index finger
    assert galleries.verify("g", "A", [finger(t[(101, 2)], 2)]).score > 0
    assert galleries.verify("g", "A", [finger(t[(101, 2)], 0)]).score > 0  # position unknown: compared
    assert galleries.verify("g", "A", [finger(t[(101, 2)], 7)]).score == 0  # labelled another finger
    assert galleries.identify([finger(t[(101, 2)], 7)], ["g"], top=1) == []
    contradicted = dataclasses.replace(finger(t[(101, 2)], 2), finger_position=7)
    with pytest.raises(InvalidArgument, match="finger_position"):
        galleries.verify("g", "A", [contradicted])
