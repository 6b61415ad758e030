"""Errors a user can act on.

Every error carries its category (what the caller should do next), a message in German and English worded
for an admin or operator, and the technical detail for the log. The hierarchy lets a caller catch at the
level it cares about: a dispatcher catches ``OposError`` and looks at ``category``; a form catches
``ConfigError``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from opos_tui.i18n import Lang, current_lang


class Category(StrEnum):
    TRANSIENT = "transient"
    """Try again later: the same mail may go through then."""
    PERMANENT = "permanent"
    """This mail cannot go as it is; others may."""
    CONFIGURATION = "configuration"
    """The settings are wrong: stop the whole run, nothing will go until an admin fixes them."""
    INTERACTION = "interaction"
    """A person must act (sign in) before sending can go on."""


class OposError(Exception):
    category: ClassVar[Category] = Category.PERMANENT

    def __init__(self, en: str, de: str, detail: str = "") -> None:
        super().__init__(en)
        self.en = en
        self.de = de
        self.detail = detail

    def message(self, lang: Lang | None = None) -> str:
        return self.de if (lang or current_lang()) == "de" else self.en

    def __str__(self) -> str:
        return self.message()


class ConfigError(OposError):
    """A setting is invalid or missing; also raised for bad values typed at the command line."""

    category = Category.CONFIGURATION


class SecretStoreError(OposError):
    """The secret store cannot be read or written."""

    category = Category.CONFIGURATION


class TransientError(OposError):
    """Try this mail again later (server busy, connection lost before the data went out, 4xx replies)."""

    category = Category.TRANSIENT


class PermanentError(OposError):
    """This mail cannot go as it is (5xx reply to it, all recipients refused, too large)."""

    category = Category.PERMANENT


class ConfigurationFault(OposError):
    """The settings or the server's set-up are wrong (login refused, TLS not possible, certificate not
    trusted): stop the whole run and leave the rest pending. Exits 1, unlike ``ConfigError`` (bad input, 2)."""

    category = Category.CONFIGURATION


class InteractionNeeded(OposError):
    """A person must act (an OAuth sign-in) before sending can go on."""

    category = Category.INTERACTION
