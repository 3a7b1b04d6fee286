"""Settings: defaults, env vars and flags in that order, and values out of range refused by name."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from cli import commands as cli
from transport.settings import Settings, SettingsError, add_arguments, load


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(flags))


def test_flags_override_env_override_defaults():
    settings = load(parse("--workers", "3"), {"SHANAKHT_WORKERS": "5", "SHANAKHT_PROBE_FRACTION": "0.5"})
    assert settings.workers == 3 and settings.probe_fraction == 0.5
    assert settings.min_probes == Settings().min_probes


@pytest.mark.parametrize("name, value", [
    ("workers", 0), ("probe_fraction", 0.0), ("probe_fraction", float("nan")), ("rescore_factor", 0.5),
    ("port", 70_000), ("default_threshold_fmr", 1.0), ("stream_batch", 0),
    ("store", "redsi"), ("auth", "of"), ("log_format", "xml"),
])
def test_out_of_range_values_are_refused_by_flag_name(name, value):
    with pytest.raises(SettingsError, match=f"--{name.replace('_', '-')} "):
        Settings(**{name: value})


def test_the_cli_reports_a_bad_setting_without_a_traceback(capsys):
    assert cli.main(["serve", "--probe-fraction", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --probe-fraction must be in (0, 1]")


def test_a_non_number_in_the_environment_is_named(monkeypatch, capsys):
    monkeypatch.setenv("SHANAKHT_WORKERS", "many")
    assert cli.main(["serve"]) == 2
    assert "SHANAKHT_WORKERS: 'many' is not a whole number" in capsys.readouterr().err


TYPED_FIELDS = [f for f in dataclasses.fields(Settings) if f.type in ("bool", "int", "float")]


@pytest.mark.parametrize("field", TYPED_FIELDS, ids=lambda f: f.name)
def test_a_misspelt_value_in_any_variable_stops_the_start_naming_it(field, monkeypatch, capsys):
    variable = f"SHANAKHT_{field.name.upper()}"
    monkeypatch.setenv(variable, {"bool": "ture", "int": "1O", "float": "0,5"}[field.type])
    assert cli.main(["serve"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {variable}: ")


@pytest.mark.parametrize("text, expected", [("1", True), ("TRUE", True), ("on", True), ("no", False), ("0", False), ("off", False)])
def test_booleans_read_every_usual_spelling(text, expected):
    assert load(None, {"SHANAKHT_REQUIRE_DURABLE": text}).require_durable is expected


def test_a_misspelt_variable_name_stops_the_start_and_suggests_the_setting(monkeypatch, capsys):
    monkeypatch.setenv("SHANAKHT_WORKRES", "3")
    assert cli.main(["serve"]) == 2
    assert "SHANAKHT_WORKRES is not a setting (did you mean SHANAKHT_WORKERS?)" in capsys.readouterr().err


def test_variables_of_the_cli_and_the_benchmarks_are_not_settings_but_are_known():
    assert load(None, {"SHANAKHT_DATA": "/data", "SHANAKHT_API_KEY": "k", "SHANAKHT_FINGER_CACHE": "/tmp/c"}) == Settings()
