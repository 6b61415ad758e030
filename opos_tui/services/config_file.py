"""config.toml as TOML, before the settings model checks any of it: enough to find the queue at every start
without building the model (pydantic and the model cost as much as the rest of the TUI's start)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from opos_tui.services.errors import ConfigError


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
