"""English and Urdu through gettext catalogues: ``locale/<lang>/LC_MESSAGES/console.po`` (Babel).

The ``.po`` files are the source; they are compiled in memory when the console starts, so there is
no ``.mo`` to forget to rebuild.  Regenerate the template after changing strings:
``pybabel extract -F console/babel.cfg -o console/locale/console.pot console`` and
``pybabel update -i console/locale/console.pot -d console/locale -D console``.
"""

from __future__ import annotations

import gettext
import io
from dataclasses import dataclass
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "console"


@dataclass(frozen=True)
class Language:
    """A language the console speaks."""

    code: str
    name: str  # in the language itself
    direction: str  # "ltr" or "rtl"


LANGUAGES: dict[str, Language] = {
    "en": Language("en", "English", "ltr"),
    "ur": Language("ur", "اردو", "rtl"),
}
DEFAULT_LANGUAGE = "en"


def load_translations(code: str) -> gettext.NullTranslations:
    """The compiled catalogue of ``code`` (English is the source language: no catalogue)."""
    path = LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"
    if code == DEFAULT_LANGUAGE or not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=code, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def language(code: str | None) -> Language:
    """The language for ``code``, English for anything unknown."""
    return LANGUAGES.get(code or "", LANGUAGES[DEFAULT_LANGUAGE])
