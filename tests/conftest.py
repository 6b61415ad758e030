from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from opos_tui.cli import main
from opos_tui.i18n import set_lang
from opos_tui.services.home import Home

# The real local servers (tests/servers/) as fixtures for every test.
pytest_plugins = ["tests.servers.smtp"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The user's real environment must never leak into a test: theme, colour, language, keyring.
    for var in ("TEXTUAL_THEME", "NO_COLOR", "OPOS_TUI_LANG", "LC_ALL", "LC_MESSAGES", "LANGUAGE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("COLORTERM", "truecolor")  # whatever terminal runs the tests; 16 colours only on purpose
    monkeypatch.setenv("OPOS_TUI_SECRETS", "file")
    set_lang(None)
    yield
    set_lang(None)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    root = tmp_path / "home"
    monkeypatch.setenv("OPOS_TUI_HOME", str(root))
    return Home(root)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


class Cli(Protocol):
    def __call__(self, *argv: str, stdin: str | None = None) -> CliResult: ...


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, home: Home) -> Cli:
    """Run the real command line in-process: exit code, stdout, stderr."""

    def run(*argv: str, stdin: str | None = None) -> CliResult:
        if stdin is not None:
            import io

            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's own usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def file_bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def mode_of(path: Path) -> int:
    return os.stat(path).st_mode & 0o777
