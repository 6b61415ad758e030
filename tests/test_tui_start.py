"""The TUI's start pays for the screen it shows: the others are imported when they are first opened."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from opos_tui.services import settings
from opos_tui.services.home import Home

PROBE = """
import asyncio, sys
from pathlib import Path
from opos_tui.app import OposApp
from opos_tui.services.home import Home

async def main() -> None:
    app = OposApp(Home(Path(sys.argv[1])), sys.argv[2])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        print(type(app.screen).__name__)
        if sys.argv[3:]:
            await pilot.press(sys.argv[3])
            await pilot.pause()
            print(type(app.screen).__name__)

asyncio.run(main())
shown = (m for m in sys.modules if m.startswith("opos_tui.screens.") or m == "textual.widgets._text_area")
print(" ".join(sorted(shown)))
"""

TEXT_AREA = "textual.widgets._text_area"
"""Textual's text area (about 8 ms of imports), which only the letters form has."""

SCREENS = {
    "queue": "opos_tui.screens.queue",
    "settings": "opos_tui.screens.settings",
    "letters": "opos_tui.screens.letters",
    "message": "opos_tui.screens.message",
}


def start(home: Home, screen: str, *keys: str) -> tuple[list[str], set[str]]:
    env = {"OPOS_TUI_SECRETS": "file", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    shown = subprocess.run(
        [sys.executable, "-c", PROBE, str(home.root), screen, *keys],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    *screens, imported = shown.stdout.splitlines()
    return screens, set(imported.split())


@pytest.fixture
def configured(home: Home) -> Home:
    home.ensure()
    settings.save(home, settings.validate({"sender": {"address": "buchhaltung@example.test"}}))
    return home


@pytest.mark.parametrize(
    ("screen", "shown", "module"),
    [
        ("main", "QueueScreen", "queue"),
        ("settings", "SettingsScreen", "settings"),
        ("letters", "LettersScreen", "letters"),
    ],
)
def test_the_start_imports_only_the_screen_it_shows(configured: Home, screen: str, shown: str, module: str) -> None:
    screens, imported = start(configured, screen)
    assert screens == [shown]
    assert SCREENS[module] in imported
    assert not imported & {m for name, m in SCREENS.items() if name != module}


@pytest.mark.parametrize(("screen", "has_text_areas"), [("main", False), ("settings", False), ("letters", True)])
def test_only_a_form_with_text_areas_imports_them(configured: Home, screen: str, has_text_areas: bool) -> None:
    _, imported = start(configured, screen)
    assert (TEXT_AREA in imported) is has_text_areas


def test_a_screen_opened_from_the_queue_is_imported_then(configured: Home) -> None:
    screens, imported = start(configured, "main", "c")
    assert screens == ["QueueScreen", "SettingsScreen"]
    assert {SCREENS["queue"], SCREENS["settings"]} <= imported


def in_terminal(*args: str) -> tuple[subprocess.Popen[bytes], int]:
    """``python args`` started in an 80x24 pseudo-terminal, and the terminal's side to read what it writes."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {"OPOS_TUI_SECRETS": "file", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "xterm-256color"}
    process = subprocess.Popen(
        [sys.executable, *args], stdin=follower, stdout=follower, stderr=follower, env=env, start_new_session=True
    )
    os.close(follower)
    return process, leader


def probed(probe: str, home: Home) -> list[str]:
    """What a probe script (run in a Python of its own, with the home as its argument) printed."""
    env = {"OPOS_TUI_SECRETS": "file", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    shown = subprocess.run(
        [sys.executable, "-c", probe, str(home.root)], capture_output=True, text=True, env=env, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.splitlines()


FIRST_PAINT_PROBE = """
import asyncio, sys
from pathlib import Path
from opos_tui import app as opos_app
from opos_tui.app import OposApp
from opos_tui.services.home import Home


class Probe(OposApp):
    CSS_PATH = str(Path(opos_app.__file__).with_name("app.tcss"))

    def on_page_shown(self) -> None:
        print("at the first page:", "pydantic" in sys.modules)
        super().on_page_shown()


async def main() -> None:
    app = Probe(Home(Path(sys.argv[1])), check_config=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        while "opos_tui.services.settings" not in sys.modules or app.workers:
            await pilot.pause()
            await app.workers.wait_for_complete()
        print("then:", "pydantic" in sys.modules, app.config_error)

asyncio.run(main())
"""


def test_the_queue_is_on_the_screen_before_the_settings_model_is_built(configured: Home) -> None:
    """pydantic and the settings model cost as much as the rest of the start: the queue screen (on SQLite) is
    painted without them, and config.toml is checked afterwards."""
    assert probed(FIRST_PAINT_PROBE, configured) == ["at the first page: False", "then: True None"]


ROWS_PAINT_PROBE = """
import sys
from pathlib import Path
from textual.drivers.linux_driver import LinuxDriver
from opos_tui import cli
from opos_tui.screens import queue as screen

said, home = Path(sys.argv[1]), sys.argv[2]
painted = []
write = LinuxDriver.write


def written(self, data):
    if "kunde@example.test" in data:
        painted.append(True)
    return write(self, data)


LinuxDriver.write = written


class Screen(screen.QueueScreen):
    def check_rows(self, ids):
        state = "painted" if painted else "not painted"
        said.write_text(f"{state}, pypdf imported before: {'pypdf' in sys.modules}")
        return super().check_rows(ids)


screen.QueueScreen = Screen
sys.argv = ["opos-tui", "--home", home]
cli.run()
"""


def test_the_rows_shown_first_are_checked_for_plausibility_once_they_are_painted(
    configured: Home, tmp_path: Path
) -> None:
    """Checking the attachments of the rows shown (pypdf, in a thread sharing the interpreter with the screen)
    would hold up their first paint: it starts once they are written to the terminal."""
    from opos_tui.services.queue import open_queue
    from tests.test_send import advice

    with open_queue(configured) as queue:
        queue.enqueue_many([advice(settings.load(configured), tmp_path, 1, "kunde@example.test")])
    said = tmp_path / "said.txt"
    process, leader = in_terminal("-c", ROWS_PAINT_PROBE, str(said), str(configured.root))
    try:
        while not said.exists() and select.select([leader], [], [], 120)[0]:
            os.read(leader, 65536)  # the terminal takes what the app writes
    finally:
        process.kill()
        process.wait(timeout=120)
        os.close(leader)
    assert said.read_text() == "painted, pypdf imported before: False"


SETTINGS_PAINT_PROBE = """
import asyncio, sys
from pathlib import Path
from opos_tui.app import OposApp
from opos_tui.screens import settings as screen
from opos_tui.services.home import Home


class Probe(screen.SettingsScreen):
    def check_file(self):  # once the form is on the screen
        print("on the screen:", "pydantic" in sys.modules, self.checked)
        return super().check_file()


screen.SettingsScreen = Probe


async def main() -> None:
    app = OposApp(Home(Path(sys.argv[1])), "settings")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        form = app.screen
        print("then:", "pydantic" in sys.modules, form.checked, form.saved.smtp.port, form.dirty)

asyncio.run(main())
"""


def test_the_settings_form_is_on_the_screen_before_the_settings_model_is_built(configured: Home) -> None:
    """The E-mail settings form shows config.toml's values without pydantic and the settings model, which cost
    as much as the rest of its start; the model checks them once the form is on the screen."""
    settings.set_value(configured, "smtp.port", "2525")
    assert probed(SETTINGS_PAINT_PROBE, configured) == ["on the screen: False False", "then: True True 2525 False"]


def test_the_defaults_the_form_shows_first_are_the_models() -> None:
    """The plain defaults (services/setting_defaults.py) are generated from the model: one source of truth."""
    from opos_tui.services.setting_defaults import DEFAULTS

    assert settings.Settings().data() == DEFAULTS


@pytest.mark.parametrize("argv", [[], ["settings"]], ids=["queue", "settings"])
def test_a_broken_config_toml_ends_the_tui_with_its_message(configured: Home, argv: list[str]) -> None:
    """`opos-tui` (and `opos-tui settings`) in a terminal with a config.toml whose value is invalid: one plain
    line and exit 2, as before the first page painted first, never a traceback."""
    configured.config_file.write_text('[smtp]\nport = "many"\n')
    process, leader = in_terminal("-m", "opos_tui", "--home", str(configured.root), *argv)
    seen = b""
    try:
        while select.select([leader], [], [], 120)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the program ended (EIO)
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
        code = process.wait(timeout=120)
    said = seen.decode(errors="replace")
    assert code == 2, said
    assert f"opos-tui: {configured.config_file}: " in said and "smtp.port" in said
    assert "Traceback" not in said
