"""The TUI's start pays for the screen it shows: the others are imported when they are first opened."""

from __future__ import annotations

import subprocess
import sys

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
print(" ".join(sorted(m for m in sys.modules if m.startswith("opos_tui.screens."))))
"""

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


def test_a_screen_opened_from_the_queue_is_imported_then(configured: Home) -> None:
    screens, imported = start(configured, "main", "c")
    assert screens == ["QueueScreen", "SettingsScreen"]
    assert {SCREENS["queue"], SCREENS["settings"]} <= imported
