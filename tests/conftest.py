from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from textual.app import App
from textual.pilot import Pilot

from opos_tui.app import OposApp
from opos_tui.cli import main
from opos_tui.i18n import set_lang
from opos_tui.screens.typeahead import TypeAheadApp
from opos_tui.services.home import Home

# The real local servers (tests/servers/) as fixtures for every test.
pytest_plugins = ["tests.servers.smtp", "tests.servers.oauth", "tests.servers.postgresql"]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The user's real environment must never leak into a test: theme, colour, language, keyring.
    for var in ("TEXTUAL_THEME", "NO_COLOR", "OPOS_TUI_LANG", "LC_ALL", "LC_MESSAGES", "LANGUAGE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    # A 256-colour terminal, whatever the one running the tests: with 16 colours the app takes the ANSI theme.
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("COLORTERM", raising=False)
    monkeypatch.setenv("OPOS_TUI_SECRETS", "file")
    set_lang(None)
    yield
    set_lang(None)


@pytest.fixture(autouse=True)
def _steady_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    # A blinking cursor is caught on or off by chance: snapshots and Pilot tests see it always on.
    monkeypatch.setattr(OposApp, "cursor_blink", False)


def working(app: App[Any]) -> bool:
    """Whether a screen of the app still reads or writes in the background what a key or its opening asked for
    (the screens' ``working``): its outcome is not shown yet."""
    return app.is_running and any(getattr(screen, "working", False) for screen in app.screen_stack)


@pytest.fixture(autouse=True)
def _keys_take_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pilot.press returns once its keys are posted, but the app may still hold some of them back until the
    # keys before them took effect (TypeAheadApp), and a screen may still be reading what a key asked for in
    # a worker. Each key and the test's next line see what every key before did, as a person at the keyboard
    # would; so does the next line after a pause. (A test of a screen that a lock keeps waiting uses
    # tests/keys.py, which waits for none of this.)
    press, pause = Pilot.press, Pilot.pause

    async def until_done(self: Pilot[Any]) -> None:
        while working(self.app):
            await pause(self)

    async def pause_and_wait(self: Pilot[Any], delay: float | None = None) -> None:
        await pause(self, delay)
        await until_done(self)

    async def press_and_wait(self: Pilot[Any], *keys: str) -> None:
        for key in keys:
            await until_done(self)
            await press(self, key)
            app = self.app
            while isinstance(app, TypeAheadApp) and app.holding_keys:
                await pause(self)
            await pause_and_wait(self)

    monkeypatch.setattr(Pilot, "pause", pause_and_wait)
    monkeypatch.setattr(Pilot, "press", press_and_wait)


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


def run_cli(*argv: str) -> CliResult:
    """The command line in a process of its own (with this test's environment): a test of something that used
    to hang cannot hang the suite."""
    done = subprocess.run(
        [sys.executable, "-m", "opos_tui", *argv], capture_output=True, text=True, timeout=120, env=os.environ
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def file_bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def mode_of(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def in_a_process(home: Home, argv: list[str], report: str, *, secrets: str | None = "file") -> tuple[str, str]:
    """The command line in a process of its own, as cron or an accounting system runs it: what it wrote, and on
    stderr what it said there followed by ``report`` (a Python expression; ``code`` is the exit code).
    ``secrets``: its OPOS_TUI_SECRETS, None for the default secret store."""
    env = {"OPOS_TUI_HOME": str(home.root), "PATH": "/usr/bin:/bin"}
    if secrets is not None:
        env["OPOS_TUI_SECRETS"] = secrets
    probe = f"import sys\nfrom opos_tui.cli import main\ncode = main({argv!r})\nsys.stderr.write({report})"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    return done.stdout, done.stderr


def send_process(home: Home, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """A real ``opos-tui send`` process on ``home``; its output in pipes unless ``popen`` says otherwise."""
    env = {
        **os.environ,
        "OPOS_TUI_HOME": str(home.root),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen([sys.executable, "-m", "opos_tui", "send", *args], text=True, env=env, cwd=ROOT, **options)
