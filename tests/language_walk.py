"""Walk the settings form and the letter report pages in one language and print every text they show:
``python -m tests.language_walk de HOME PORT``.

A separate process per language, as the command line runs it: the language is chosen before the screens are
imported, so that their key bindings are named in it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
from pathlib import Path

from rich.console import Console

from opos_tui.i18n import LANGS, set_lang


def screen_text(app: object) -> str:
    """What the terminal shows, as plain text (every screen on the stack, notifications included)."""
    from textual.app import App

    assert isinstance(app, App)
    console = Console(width=app.size.width, file=io.StringIO(), record=True, legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


async def walk(lang: str, home_dir: Path, port: int) -> list[str]:
    from textual.widgets import Checkbox, Input
    from textual.worker import WorkerCancelled

    from opos_tui.app import OposApp
    from opos_tui.screens.letters import LettersScreen
    from opos_tui.screens.settings import SettingsScreen, widget_id
    from opos_tui.screens.widgets import Choice
    from opos_tui.services.home import Home
    from opos_tui.services.settings import AUTH_METHODS_FOR

    seen: list[str] = []
    app = OposApp(Home(home_dir), start="settings")
    # Tall enough for the whole form at once: what scrolls out of view at 80x24 is read too.
    async with app.run_test(size=(80, 160), notifications=True) as pilot:
        screen = app.screen
        assert isinstance(screen, SettingsScreen)

        async def pick(key: str, value: str) -> None:
            screen.query_one(f"#{widget_id(key)}-{value}", Choice).value = True
            await pilot.pause()
            await pilot.pause()

        async def type_into(key: str, text: str) -> None:
            screen.query_one(f"#{widget_id(key)}", Input).value = text
            await pilot.pause()

        for connection, methods in AUTH_METHODS_FOR.items():
            await pick("connection", connection)
            for method in methods:
                await pick("auth.method", method)
                for provider in ("microsoft", "google"):
                    await pick("oauth.provider", provider)
                    seen.append(screen_text(app))
        await pick("connection", "smtp")
        await pick("auth.method", "password")
        screen.query_one("#smtp-allow-plain-auth", Checkbox).value = True
        await pilot.pause()
        invalid = {
            "auth.profile": "a\nb",
            "smtp.host": "mail example",
            "smtp.port": "0",
            "smtp.timeout": "soon",
            "smtp.ca_file": str(home_dir / "missing.pem"),
            "smtp.max_message_mb": "-1",
            "smtp.connections": "99",
            "smtp.max_per_minute": "x",
            "sender.address": "archiv@",
            "sender.name": "a\nb",
            "sender.reply_to": "nobody",
            "sender.bcc": "archiv@",
        }
        valid = {key: screen.query_one(f"#{widget_id(key)}", Input).value for key in invalid}
        for key, text in invalid.items():
            await type_into(key, text)
        seen.append(screen_text(app))
        for refused in ("ctrl+s", "ctrl+t"):  # neither saved nor tested: the fields marked ⚠
            await pilot.press(refused)
            await pilot.pause()
            await pilot.pause()
            seen.append(screen_text(app))
            app.clear_notifications()

        for key, text in valid.items():
            await type_into(key, text)
        await type_into("auth.profile", "buchhaltung")
        await type_into("auth.password", "geheim123")
        await type_into("smtp.host", "127.0.0.1")
        await type_into("smtp.port", str(port))  # nothing listens there: the test fails at connect
        await pilot.press("ctrl+t")
        with contextlib.suppress(WorkerCancelled):
            await app.workers.wait_for_complete()
        await pilot.pause()
        seen.append(screen_text(app))
        await pilot.press("escape")  # close the panel
        await pilot.pause()

        # The letter report pages: the preview (in the walked language's shipped texts), an unknown
        # placeholder refused, the page of each report, the question when leaving.
        await pilot.press("ctrl+l")
        await pilot.pause()
        letters = app.screen
        assert isinstance(letters, LettersScreen)
        letters.query_one(f"#letters-language-{lang}", Choice).value = True
        await pilot.pause()
        seen.append(screen_text(app))
        letters.query_one("#letters-subject", Input).value = "Beleg ${customr_name}"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        seen.append(screen_text(app))
        await pilot.press("ctrl+r")
        await pilot.pause()
        seen.append(screen_text(app))
        await pilot.press("escape")
        await pilot.pause()
        seen.append(screen_text(app))
        await pilot.click("#answer-discard")
        await pilot.pause()
        assert app.screen is screen

        await pilot.press("escape")  # leave the form: asks about the unsaved changes
        await pilot.pause()
        seen.append(screen_text(app))
    return seen


def main() -> None:
    lang, home_dir, port = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    assert lang in LANGS
    set_lang(lang)  # type: ignore[arg-type]
    for text in asyncio.run(walk(lang, home_dir, port)):
        print(text)
        print("\f")


if __name__ == "__main__":
    main()
