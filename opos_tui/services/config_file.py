"""config.toml as TOML, before the settings model checks any of it: enough to find the queue at every start
without checking the settings (pydantic costs as much as the rest of the TUI's start), and to know whether the
checks accepted the file as it is now (``config.checked``), so that reading it again needs no checks."""

from __future__ import annotations

import contextlib
import tomllib
from pathlib import Path
from typing import Any

from opos_tui import __version__
from opos_tui.services.errors import ConfigError
from opos_tui.services.files import write_atomic


def parse(path: Path) -> tuple[str, dict[str, Any]] | None:
    """The text of config.toml and its TOML data; None if there is no file yet; ConfigError if unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", f"{path} nicht lesbar: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
        return text, tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", f"{path} ist kein gültiges TOML: {exc}") from None


def checked(path: Path, record: Path) -> bool:
    """Whether the settings model accepted the config.toml at ``path`` as it is now (noted in ``record`` by
    :func:`remember_checked`, by this version of opos-tui), or there is none (the defaults); False when that
    is not known."""
    try:
        return was_checked(record, path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return True
    except (OSError, UnicodeDecodeError):
        return False


def was_checked(record: Path, text: str) -> bool:
    """Whether ``record`` notes that the settings model accepted a config.toml of ``text``."""
    try:
        return record.read_bytes().decode("utf-8") == _record(text)
    except (OSError, UnicodeDecodeError):
        return False


def remember_checked(record: Path, text: str) -> None:
    """Note in ``record`` that the settings model accepted a config.toml of ``text``. Best effort: a folder that
    cannot be written to only means that the next start checks the file again."""
    if not was_checked(record, text):
        with contextlib.suppress(OSError):
            write_atomic(record, _record(text).encode("utf-8"))


def _record(text: str) -> str:
    # The version too: another version's model may judge the same file otherwise. The whole text rather than a
    # hash of it: as exact, and no hash function to import (OpenSSL's, 2 ms of a start).
    return f"opos-tui {__version__} accepted this config.toml:\n{text}"
