"""The ACE-V rules on their own: every transition, every refusal, and the oversight aggregates over them."""

from __future__ import annotations

import datetime as dt

import pytest

from matcher.adjudication import (
    CandidateRecord, Kind, SearchRecord, Status, awaiting_for, from_stored, may_read, purpose_kind, record_decision, to_stored,
    visible_decisions,
)
from matcher.errors import FailedPrecondition, InvalidArgument, NotFound, NotPermitted
from matcher.oversight import aggregate, week_of


def a_search(candidates=(("G", "S1", 5.0, True), ("G", "S2", 2.0, False)), created_at: float = 1_780_000_000.0) -> SearchRecord:
    return SearchRecord("s1", created_at, "kA", "A", "investigator", "FIR 1/2026", ("G",), {"G": 10}, 10,
                        tuple(CandidateRecord(s, g, score, 10 ** -score, hit) for g, s, score, hit in candidates), (1,), (True,))


def by(search, who: str, role: str, kind: Kind, subject: str = "S1", reason: str = "compared"):
    return record_decision(search, "G", subject, int(kind), reason, who, who.upper(), role)


def test_two_different_examiners_confirm_and_the_same_one_cannot():
    search, c = by(a_search(), "kA", "investigator", Kind.IDENTIFICATION)
    assert c.status is Status.AWAITING_VERIFICATION and search.awaiting
    with pytest.raises(NotPermitted):
        by(search, "kA", "investigator", Kind.IDENTIFICATION)
    assert [x.subject_id for x in awaiting_for(search, "kB")] == ["S1"] and awaiting_for(search, "kA") == []
    assert visible_decisions(search.candidate("G", "S1"), "kB", "investigator") == ()  # blind
    search, c = by(search, "kB", "investigator", Kind.IDENTIFICATION)
    assert c.status is Status.CONFIRMED and len(visible_decisions(c, "kB", "investigator")) == 2
    with pytest.raises(FailedPrecondition):
        by(search, "kS", "supervisor", Kind.EXCLUSION)


@pytest.mark.parametrize("second", [Kind.EXCLUSION, Kind.INCONCLUSIVE])
def test_disagreement_is_disputed_and_only_a_supervisor_resolves_it(second):
    search, _ = by(a_search(), "kA", "investigator", Kind.IDENTIFICATION)
    search, c = by(search, "kB", "investigator", second)
    assert c.status is Status.DISPUTED and search.disputed
    with pytest.raises(NotPermitted):
        by(search, "kC", "investigator", Kind.IDENTIFICATION)
    search, c = by(search, "kS", "supervisor", Kind.EXCLUSION)
    assert c.status is Status.EXCLUDED and not search.disputed


def test_first_exclusion_or_inconclusive_is_final():
    assert by(a_search(), "kA", "investigator", Kind.EXCLUSION)[1].status is Status.EXCLUDED
    assert by(a_search(), "kA", "investigator", Kind.INCONCLUSIVE)[1].status is Status.INCONCLUSIVE


def test_bad_decisions_name_their_field():
    with pytest.raises(InvalidArgument) as error:
        record_decision(a_search(), "G", "S1", 0, "x", "kA", "A", "investigator")
    assert error.value.field == "kind"
    with pytest.raises(InvalidArgument) as error:
        by(a_search(), "kA", "investigator", Kind.IDENTIFICATION, reason=" \n")
    assert error.value.field == "reason"
    with pytest.raises(NotFound):
        by(a_search(), "kA", "investigator", Kind.IDENTIFICATION, subject="S9")


def test_who_may_read():
    search = a_search()
    assert may_read(search, "kA", "investigator") and may_read(search, "kS", "supervisor")
    assert not may_read(search, "kB", "investigator")
    search, _ = by(search, "kA", "investigator", Kind.IDENTIFICATION)
    assert may_read(search, "kB", "investigator")


def test_the_stored_form_round_trips():
    search, _ = by(a_search(), "kA", "investigator", Kind.IDENTIFICATION)
    stored = to_stored(search)
    assert from_stored(stored) == search and stored.awaiting and not stored.disputed


def test_purpose_kind_never_keeps_the_reference():
    assert [purpose_kind(p) for p in ("FIR 123/2026", "case-42 theft", "  intake INM-1", "123", "")] == ["FIR", "case", "intake", "other", "other"]


def test_oversight_aggregates_weeks_outcomes_and_nominal_fmr():
    monday = dt.datetime(2026, 11, 30, 9, tzinfo=dt.timezone.utc).timestamp()
    sunday = dt.datetime(2026, 12, 6, 23, tzinfo=dt.timezone.utc).timestamp()
    assert week_of(monday) == week_of(sunday) == "2026-11-30" and week_of(sunday + 7200) == "2026-12-07"
    confirmed, _ = by(a_search(created_at=monday), "kA", "investigator", Kind.IDENTIFICATION)
    confirmed, _ = by(confirmed, "kB", "investigator", Kind.IDENTIFICATION)
    excluded, _ = by(a_search(candidates=(("G", "S1", 4.0, True),), created_at=sunday + 7200), "kA", "investigator", Kind.EXCLUSION)
    report = aggregate([confirmed, excluded])
    assert [(r.week, r.searches, r.searches_with_hits, r.identifications, r.exclusions) for r in report.rows] == [
        ("2026-11-30", 1, 1, 1, 0), ("2026-12-07", 1, 1, 0, 1)]
    assert (report.adjudicated_hits, report.excluded_hits) == (2, 1)
    assert report.nominal_fmr == pytest.approx((1e-5 + 1e-4) / 2)
    assert sum(report.confirmed_scores.counts) == 1 and sum(report.excluded_scores.counts) == 1
