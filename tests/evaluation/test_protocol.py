"""The declared tune/report protocol, and that every shipped calibration table was fitted on tune identities only.

A table lists, per set, the identities it was fitted on (``benchmarks/calibrate.py`` writes them);
each must be an identity of that set which the protocol puts on the tune side.  A table fitted on
a report identity would make every report figure that uses calibrated scores in-sample.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from benchmarks.evaluation.datasets import default_data_dir, load_face_set, load_finger_set
from benchmarks.evaluation.protocol import Protocol, load_protocol
from enrollment import calibration

SHIPPED_TABLES = (calibration.FACE_TABLE, calibration.FINGER_TABLE)
LOADERS = {"face": load_face_set, "finger": load_finger_set}


def _labels(modality: str, name: str, data: Path) -> list[str]:
    return [s.label for s in LOADERS[modality](name, data)]


def not_tune(table_path: Path, protocol: Protocol, data: Path) -> list[str]:
    """Every identity the table lists that is not a tune identity of its set (or no identity of it at all)."""
    with open(table_path, "rb") as fh:
        fitted = tomllib.load(fh)["fitted_on"]
    modality = fitted["modality"]
    problems = [] if fitted["seed"] == protocol.seed else [f"fitted under seed {fitted['seed']}, not {protocol.seed}"]
    for name, used in fitted.items():
        if not isinstance(used, dict):
            continue
        labels = _labels(modality, name, data)
        entry = protocol.set(modality, name)
        known = {entry.identity_of(label) for label in labels}
        tune = set(protocol.identities(modality, name, labels, "tune"))
        problems += [f"{name}: {i} is not an identity of the set" for i in used["identities"] if i not in known]
        problems += [f"{name}: {i} is a report identity" for i in used["identities"] if i in known and i not in tune]
        if used["identity_count"] != len(used["identities"]):
            problems.append(f"{name}: identity_count {used['identity_count']} ≠ {len(used['identities'])} listed")
    return problems


needs_data = pytest.mark.skipif(not (default_data_dir() / "face").is_dir(), reason="evaluation data absent (SHANAKHT_DATA)")


@needs_data
@pytest.mark.parametrize("table", SHIPPED_TABLES, ids=lambda p: p.name)
def test_every_identity_a_shipped_table_was_fitted_on_is_a_tune_identity(table: Path) -> None:
    with open(table, "rb") as fh:
        fitted = tomllib.load(fh)["fitted_on"]
    assert any(isinstance(v, dict) and v["identities"] for v in fitted.values()), "the table lists what it was fitted on"
    assert not_tune(table, load_protocol(), default_data_dir()) == []


def _with_att_orl_identities(table: Path, identities: list[str], out: Path) -> Path:
    """A copy of ``table`` that says it was fitted on ``identities`` of att_orl."""
    with open(table, "rb") as fh:
        fields = tomllib.load(fh)
    fields["fitted_on"]["att_orl"].update(identities=identities, identity_count=len(identities))
    calibration.write_table(out, ["fake"], fields)
    return out


@needs_data
def test_a_table_fitted_on_a_report_identity_is_caught(tmp_path: Path) -> None:
    protocol, data, table = load_protocol(), default_data_dir(), SHIPPED_TABLES[0]
    with open(table, "rb") as fh:
        listed = tomllib.load(fh)["fitted_on"]["att_orl"]["identities"]
    report = protocol.identities("face", "att_orl", _labels("face", "att_orl", data), "report")[0]
    fake = _with_att_orl_identities(table, sorted([*listed, report]), tmp_path / "report.toml")
    assert not_tune(fake, protocol, data) == [f"att_orl: {report} is a report identity"]
    fake = _with_att_orl_identities(table, [*listed, "att_s999"], tmp_path / "unknown.toml")
    assert not_tune(fake, protocol, data) == ["att_orl: att_s999 is not an identity of the set"]


def test_the_split_is_deterministic_disjoint_and_about_half() -> None:
    people = [f"person_{i}" for i in range(400)]
    first = {p: load_protocol().role("face", "att_orl", p) for p in people}
    load_protocol.cache_clear()
    again = {p: load_protocol().role("face", "att_orl", p) for p in people}
    assert first == again
    tune = set(load_protocol().identities("face", "att_orl", people, "tune"))
    report = set(load_protocol().identities("face", "att_orl", people, "report"))
    assert tune.isdisjoint(report) and tune | report == set(people)
    assert 0.4 < len(report) / len(people) < 0.6


def test_a_persons_fingers_share_one_side_in_both_socofing_sets() -> None:
    """socofing_altered and socofing_real_distractors share the namespace: a person is tune (or report) in both."""
    protocol = load_protocol()
    sides = {}
    for person in range(1, 301):
        roles = {
            protocol.role("finger", name, f"socofing_{person}_{finger}")
            for name in ("socofing_real_distractors", "socofing_altered")
            for finger in ("Left_thumb", "Right_index", "Left_little")
        }
        assert len(roles) == 1, f"socofing_{person} is split across fingers or sets: {roles}"
        sides[person] = roles.pop()
    assert set(sides.values()) == {"tune", "report"}


def test_tune_prefixes_and_whole_set_roles() -> None:
    protocol = load_protocol()
    clean_fvc = [f"FVC2002_DB1_B_{n}" for n in range(101, 111)]
    assert {protocol.role("finger", "latent_generated", label) for label in clean_fvc} == {"tune"}
    others = {protocol.role("finger", "latent_generated", f"FVC2000_DB2_A_{n}") for n in range(1, 101)}
    assert others == {"tune", "report"}, "the rest of latent_generated is split"
    assert {protocol.role("finger", "fvc2002_db1_b", label) for label in clean_fvc} == {"tune"}
    assert protocol.role("face", "five_celebrities", "ben_afflek") == "report"
    with pytest.raises(KeyError, match="not declared"):
        protocol.role("face", "lfw", "someone")


@needs_data
def test_every_set_in_the_data_is_declared() -> None:
    from benchmarks.evaluation.datasets import face_sets, finger_sets

    protocol = load_protocol()
    for modality, names in (("face", face_sets()), ("finger", finger_sets())):
        for name in names:
            protocol.set(modality, name)


def test_the_synthetic_population_has_distinct_tune_and_report_seeds() -> None:
    """The Scale benchmark reports on one synthetic population and the index settings are tuned on another."""
    from benchmarks.evaluation import synthetic

    seeds = load_protocol().synthetic
    assert seeds is not None and seeds.tune_seed != seeds.report_seed
    assert (synthetic.seed_for("tune"), synthetic.seed_for("report")) == (seeds.tune_seed, seeds.report_seed)
    tune, report = synthetic.population("tune", 200, probes=5), synthetic.population("report", 200, probes=5)
    assert tune.vectors.shape == report.vectors.shape and not np.allclose(tune.vectors, report.vectors)
