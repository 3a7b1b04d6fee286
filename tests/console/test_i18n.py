"""The Urdu catalogue covers every message of the console, keeps its placeholders, and renders right to left."""

from __future__ import annotations

import re

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from console.i18n import LOCALE_DIR, load_translations

PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def console_messages() -> set[str]:
    """Every message in the templates and code, as ``pybabel extract -F console/babel.cfg -k N_`` finds them."""
    method_map = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    keywords = {"_": None, "gettext": None, "N_": None}
    found = extract_from_dir(str(LOCALE_DIR.parent), method_map, options, keywords=keywords)
    return {message for _, _, message, _, _ in found if isinstance(message, str) and message}


def test_every_message_has_an_urdu_translation_with_the_same_placeholders():
    with (LOCALE_DIR / "ur" / "LC_MESSAGES" / "console.po").open("rb") as handle:
        catalog = read_po(handle)
    translated = {m.id: m.string for m in catalog if m.id}
    messages = console_messages()
    assert len(messages) > 100
    missing = sorted(m for m in messages if not translated.get(m))
    assert not missing, f"untranslated (run pybabel extract, then console/locale/make_ur.py): {missing}"
    for message in messages:
        assert sorted(PLACEHOLDER.findall(message)) == sorted(PLACEHOLDER.findall(translated[message])), message


def test_the_catalogue_is_compiled_at_start_without_a_mo_file():
    assert not list(LOCALE_DIR.rglob("*.mo"))
    assert load_translations("ur").gettext("Oversight") == "نگرانی"
    assert load_translations("en").gettext("Oversight") == "Oversight"
