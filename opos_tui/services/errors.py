"""Errors a user can act on: one small hierarchy of data-only errors.

Every error carries its category (what the caller should do next), a message in German and English worded
for an admin or operator (saying what to change), the technical detail for the log and, when the error *is*
the other side's answer, that reply (``451 4.3.0 try again later``) and the recipients it refused. Callers
decide by ``category`` only, never by class: the dispatcher defers, fails, records as uncertain or stops the
run; the command line derives its exit code from it (``cli.exit_code``).

The hierarchy, and where the specific errors live::

    OposError
    ├── BadInput            input          what was typed or handed in is wrong; nothing was done (exit 2)
    │   ├── ConfigError                    a setting's value is invalid or missing (settings, config set)
    │   ├── AddressError                   not a usable e-mail address (services.addresses)
    │   ├── BadLetter                      a mail that cannot be queued as given (services.compose)
    │   ├── UnknownItems                   item numbers that do not exist (services.queue)
    │   └── UsageError                     a bad command line (cli)
    ├── TransientError      transient      try this mail again later
    ├── PermanentError      permanent      this mail cannot go as it is
    ├── DeliveryUncertain   uncertain      the data went out, no confirmation came: never resent by itself
    ├── ConfigurationFault  configuration  the settings or the server's set-up are wrong: stop the run (exit 1)
    │   ├── SecretStoreError, TransportUnavailable
    │   └── NoSender                       (services.compose)
    └── InteractionNeeded   interaction    a person must sign in before sending can go on

Each transport keeps its own errors, subclasses of these, beside it (``transports/smtp/errors.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar

from opos_tui.i18n import Lang, current_lang


class Category(StrEnum):
    INPUT = "input"
    """The input is wrong (a value typed, a letter handed in, a command line): nothing was done; fix it and
    run again."""
    TRANSIENT = "transient"
    """Try again later: the same mail may go through then."""
    PERMANENT = "permanent"
    """This mail cannot go as it is; others may."""
    UNCERTAIN = "uncertain"
    """The mail's data went out but no confirmation came: it may have arrived, so it is never resent by itself."""
    CONFIGURATION = "configuration"
    """The settings are wrong: stop the whole run, nothing will go until an admin fixes them."""
    INTERACTION = "interaction"
    """A person must act (sign in) before sending can go on."""


class Bilingual:
    """A message in English and German; ``str()`` gives the one of the current language."""

    en: str
    de: str

    def message(self, lang: Lang | None = None) -> str:
        return self.de if (lang or current_lang()) == "de" else self.en

    def __str__(self) -> str:
        return self.message()


class OposError(Bilingual, Exception):
    category: ClassVar[Category] = Category.PERMANENT
    reply: str | None = None
    """The other side's own answer, code and text (``550 5.1.1 no such user``), when the error is one."""
    refused: Mapping[str, str] = MappingProxyType({})
    """Recipients the other side refused: address -> reply. Empty unless the error says so."""

    def __init__(self, en: str, de: str, detail: str = "") -> None:
        super().__init__(en)
        self.en = en
        self.de = de
        self.detail = detail


class InvalidValue(Bilingual, ValueError):
    """A value that does not fit. A ValueError, so that a pydantic validator can raise it;
    ``settings.field_errors`` finds it again in the validation error."""

    def __init__(self, en: str, de: str) -> None:
        super().__init__(en)
        self.en = en
        self.de = de


class BadInput(OposError):
    """What was typed or handed in is wrong; nothing was changed (exit 2 on the command line)."""

    category = Category.INPUT


class ConfigError(BadInput):
    """A setting is invalid or missing; also raised for bad values typed at the command line."""


class TransientError(OposError):
    """Try this mail again later (server busy, connection lost before the data went out, 4xx replies)."""

    category = Category.TRANSIENT


class PermanentError(OposError):
    """This mail cannot go as it is (5xx reply to it, all recipients refused, too large)."""

    category = Category.PERMANENT


class DeliveryUncertain(OposError):
    """The message data was handed over, but no final reply came: it may have arrived. Never resent by itself."""

    category = Category.UNCERTAIN


class ConfigurationFault(OposError):
    """The settings or the server's set-up are wrong (login refused, TLS not possible, certificate not
    trusted): stop the whole run and leave the rest pending. Exits 1, unlike ``ConfigError`` (bad input, 2)."""

    category = Category.CONFIGURATION


class SecretStoreError(ConfigurationFault):
    """The secret store cannot be read or written."""


class TransportUnavailable(ConfigurationFault):
    """The chosen connection type or login cannot work in this installation (e.g. MAPI off Windows)."""


class InteractionNeeded(OposError):
    """A person must act (an OAuth sign-in) before sending can go on."""

    category = Category.INTERACTION
