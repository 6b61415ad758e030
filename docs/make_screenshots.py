"""Regenerate the README's screenshots, made by the app itself: ``python docs/make_screenshots.py``.

Fills a throw-away home with the demo's letters and settings (the same as ``opos-tui demo``, without its
server: nothing is sent), opens the real app headless at 80x24 and saves the queue screen and the E-Mail
settings form as SVG into this folder.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

os.environ["OPOS_TUI_SECRETS"] = "file"  # the throw-away home's own store, never the keyring
os.environ["OPOS_TUI_LANG"] = "en"

from textual.pilot import Pilot

from opos_tui.app import OposApp, StartScreen
from opos_tui.screens.queue import QueueScreen
from opos_tui.services import demo, settings
from opos_tui.services.home import Home

DOCS = Path(__file__).resolve().parent
SIZE = (80, 24)


async def queue_checked(pilot: Pilot[None]) -> None:
    """Wait until the plausibility check has marked every row shown."""
    while not (
        isinstance(pilot.app.screen, QueueScreen)
        and pilot.app.screen.rows
        and all(r.plausible is not None for r in pilot.app.screen.rows)
    ):
        await pilot.pause(0.05)


async def screenshot(home: Home, start: StartScreen, name: str) -> Path:
    app = OposApp(home, start)
    async with app.run_test(size=SIZE) as pilot:
        if start == "main":
            await queue_checked(pilot)
        await pilot.pause()
        return Path(app.save_screenshot(filename=name, path=str(DOCS)))


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        home = Home(Path(folder) / "home")
        demo.demo_dir(home).mkdir(parents=True)
        current = demo.configure(home, 587, "only-for-the-screenshot")
        # Paths and ports of a throw-away home would change every time: show what an admin would type.
        data = current.data()
        data["smtp"].update(host="mail.nordlicht-handel.example", ca_file="")
        current = settings.validate(data)
        settings.save(home, current)
        demo.fill_queue(home, current)
        shots: tuple[tuple[StartScreen, str], ...] = (("main", "queue.svg"), ("settings", "settings.svg"))
        for start, name in shots:
            print(asyncio.run(screenshot(home, start, name)))


if __name__ == "__main__":
    main()
