"""Every constant that shapes a score, an acquisition or a search declares where it comes from, and nothing tuned comes from a report set.

``benchmarks/constants.toml`` declares, per group, whether its constants are *given* (a model's
contract, a standard, a paper) or *tuned* on named sets.  The groups of the face and finger score
provenance are enumerated from the provenance itself, so a constant added to those modules fails
here until someone says where its value came from.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from benchmarks.evaluation.datasets import default_data_dir
from benchmarks.evaluation.protocol import Protocol, load_protocol
from enrollment.face import provenance as face_provenance
from enrollment.finger import provenance as finger_provenance
from enrollment.provenance import module_constants, plain

DECLARATIONS = Path(__file__).resolve().parents[2] / "benchmarks" / "constants.toml"
SYNTHETIC = "synthetic"  # the synthetic population's tune seed (protocol.toml [synthetic])


def load_declarations(path: Path = DECLARATIONS) -> dict[str, object]:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def provenance_groups() -> dict[str, Mapping[str, object]]:
    """``"<modality>.<group>"`` → that group's constants, from each modality's score provenance (model hashes left out)."""
    groups: dict[str, Mapping[str, object]] = {}
    for modality, provenance in (("face", face_provenance.score_provenance()), ("finger", finger_provenance.score_provenance())):
        for group, constants in provenance.items():
            if group != "models":
                groups[f"{modality}.{group}"] = constants  # type: ignore[assignment]
    return groups


def extra_constants(path: str) -> dict[str, object]:
    """A module's UPPERCASE constants, or a dataclass's field defaults when ``path`` ends in a class name."""
    try:
        return module_constants(importlib.import_module(path))
    except ModuleNotFoundError:
        module, name = path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        return {
            f.name: plain(f.default)
            for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING and f.default is not None and not hasattr(f.default, "value")
        }


def declared_groups(declarations: Mapping[str, object]) -> Iterator[tuple[str, Mapping[str, object], Mapping[str, object]]]:
    """(name, declaration, constants) for every provenance group and every [extra] module."""
    actual = provenance_groups()
    for modality in ("face", "finger"):
        for group, declaration in declarations.get(modality, {}).items():  # type: ignore[union-attr]
            name = f"{modality}.{group}"
            if name in actual:
                yield name, declaration, actual[name]
    for path, declaration in declarations.get("extra", {}).items():  # type: ignore[union-attr]
        yield path, declaration, extra_constants(path)


def origin_problems(where: str, origin: Mapping[str, object], protocol: Protocol) -> list[str]:
    """What is wrong with one origin: neither or both of given/tuned_on, or a tuned_on set that is not tuning data."""
    if ("given" in origin) == ("tuned_on" in origin):
        return [f"{where}: say either `given` or `tuned_on`"]
    problems = []
    for source in origin.get("tuned_on", ()):  # type: ignore[union-attr]
        if source == SYNTHETIC:
            if protocol.synthetic is None:
                problems.append(f"{where}: tuned on the synthetic population, but protocol.toml declares no [synthetic] seeds")
            continue
        modality, _, name = str(source).partition(".")
        try:
            role = protocol.set(modality, name).role
        except KeyError:
            problems.append(f"{where}: {source} is not a set of the protocol")
            continue
        if role == "report":
            problems.append(f"{where}: tuned on {source}, a report set")
        elif role == "split" and "command" not in origin:
            problems.append(f"{where}: tuned on the split set {source} with no `command` that reads its tune side only")
    return problems


def declaration_problems(declarations: Mapping[str, object], protocol: Protocol) -> list[str]:
    actual = provenance_groups()
    declared = {modality: set(declarations.get(modality, {})) for modality in ("face", "finger")}
    problems = [f"{name}: a provenance group with no declaration" for name in actual if name.split(".")[1] not in declared[name.split(".")[0]]]
    problems += [f"{m}.{g}: declared, but the score provenance has no such group" for m, gs in declared.items() for g in gs if f"{m}.{g}" not in actual]
    for name, declaration, constants in declared_groups(declarations):
        overrides: Mapping[str, Mapping[str, object]] = declaration.get("constants", {})  # type: ignore[assignment]
        default = {k: v for k, v in declaration.items() if k != "constants"}
        if default:
            problems += origin_problems(name, default, protocol)
        for constant, origin in overrides.items():
            where = f"{name}.{constant}"
            if constant not in constants:
                problems.append(f"{where}: declared, but there is no such constant")
                continue
            problems += origin_problems(where, origin, protocol)
            if "value" in origin and not _same(origin["value"], constants[constant]):
                problems.append(f"{where}: declared {origin['value']!r}, the code has {constants[constant]!r} (re-tune: {origin.get('command')})")
        if not default:
            problems += [f"{name}.{c}: no origin declared" for c in constants if c not in overrides]
    return problems


def _same(a: object, b: object) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return plain(a) == plain(b)


def test_every_constant_declares_its_origin_and_no_tuned_one_comes_from_a_report_set() -> None:
    assert declaration_problems(load_declarations(), load_protocol()) == []


def test_an_undeclared_constant_a_report_set_or_a_changed_value_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from enrollment.face import detector

    declarations = load_declarations()
    protocol = load_protocol()
    monkeypatch.setattr(detector, "NEW_THRESHOLD", 0.3, raising=False)
    declared_pad = declarations["face"]["detector"]["constants"]["PAD_FRACTION"]["value"]  # type: ignore[index]
    monkeypatch.setattr(detector, "PAD_FRACTION", declared_pad + 0.05)
    declarations["face"]["detector"].pop("given")  # type: ignore[index]
    declarations["finger"]["matcher"]["tuned_on"] = ["face.five_celebrities"]  # type: ignore[index]
    del declarations["finger"]["template"]  # type: ignore[attr-defined]
    problems = declaration_problems(declarations, protocol)
    assert "face.detector.NEW_THRESHOLD: no origin declared" in problems
    assert any(p.startswith(f"face.detector.PAD_FRACTION: declared {declared_pad!r}, the code has") for p in problems)
    assert "finger.matcher: tuned on face.five_celebrities, a report set" in problems
    assert "finger.template: a provenance group with no declaration" in problems


@pytest.mark.skipif(not (default_data_dir() / "face").is_dir(), reason="evaluation data absent (SHANAKHT_DATA)")
def test_the_face_tuning_script_runs_on_tune_photos(capsys: pytest.CaptureFixture[str]) -> None:
    """Smoke: the script that re-derives PAD_FRACTION and SECONDARY_FACE_* runs (no value asserted on six photos)."""
    from benchmarks import tune_face

    assert tune_face.main(["--smoke"]) == 0
    assert "`enrollment.face.detector.PAD_FRACTION`: the rule gives" in capsys.readouterr().out


@pytest.mark.skipif(not (default_data_dir() / "finger").is_dir(), reason="evaluation data absent (SHANAKHT_DATA)")
def test_the_finger_gate_tuning_script_runs_on_tune_images(capsys: pytest.CaptureFixture[str]) -> None:
    """Smoke: the script that re-derives CONFIDENT_RIDGE_AREA_PX runs (no value asserted on a few images)."""
    from benchmarks import tune_finger_gate

    assert tune_finger_gate.main(["--smoke"]) == 0
    assert "`enrollment.finger.quality.CONFIDENT_RIDGE_AREA_PX`: the rule gives" in capsys.readouterr().out


@pytest.mark.skipif(not (default_data_dir() / "finger").is_dir(), reason="evaluation data absent (SHANAKHT_DATA)")
def test_the_finger_resolution_tuning_script_runs_on_tune_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """Smoke: the script that re-derives SOCOFing's resolution runs (no value asserted on a few prints)."""
    from benchmarks import tune_finger_dpi

    assert tune_finger_dpi.main(["--smoke"]) == 0
    assert "`benchmarks.evaluation.finger.SET_DPI` for socofing_real_distractors, socofing_altered: the rule gives" in capsys.readouterr().out
