"""German and English: which language to speak, chosen from --lang, OPOS_TUI_LANG or the locale."""

from __future__ import annotations

import os
from typing import Literal

Lang = Literal["de", "en"]
LANGS: tuple[Lang, ...] = ("de", "en")

_lang: Lang | None = None


def detect_lang() -> Lang:
    for var in ("OPOS_TUI_LANG", "LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = os.environ.get(var, "")
        if value:
            return "de" if value.lower().startswith("de") else "en"
    return "en"


def set_lang(lang: Lang | None) -> None:
    global _lang
    _lang = lang


def current_lang() -> Lang:
    return _lang or detect_lang()


def tr(en: str, de: str, lang: Lang | None = None) -> str:
    """The text in the current language (or ``lang``); both versions stand side by side where they are used."""
    return de if (lang or current_lang()) == "de" else en
