"""The text cursor in the tests: steady in every field of every screen, so no snapshot depends on when it
is taken; for real users it blinks as Textual's does."""

from __future__ import annotations

from textual.widgets import Input, TextArea

from opos_tui.app import OposApp
from opos_tui.screens.message import RecipientsScreen
from opos_tui.screens.settings import SettingsScreen
from opos_tui.services.home import Home
from tests.test_queue_screen import configure, letter, open_detail, queue_screen


async def test_no_field_blinks_on_any_screen(home: Home) -> None:
    configure(home)
    letter(home, 1)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        seen: list[Input | TextArea] = []

        async def focus_each(screen: object) -> None:
            assert screen is app.screen
            fields = [*app.screen.query(Input), *app.screen.query(TextArea)]
            assert fields
            for field in fields:
                field.focus()
                await pilot.pause()
                assert app.focused is field
                seen.append(field)

        await focus_each(queue_screen(app))  # the search field
        await pilot.press("enter", "c")
        assert isinstance(app.screen, SettingsScreen)
        await focus_each(app.screen)
        await pilot.press("escape")
        await open_detail(pilot)
        await pilot.press("e")
        assert isinstance(app.screen, RecipientsScreen)
        await focus_each(app.screen)
        await pilot.press("escape", "escape", "l")  # the letter pages: texts in TextAreas too
        await focus_each(app.screen)
        assert any(isinstance(field, TextArea) for field in seen)
        assert [field for field in seen if field.cursor_blink] == []


async def test_the_cursor_blinks_for_real_users(home: Home) -> None:
    app = OposApp(home, start="settings")
    app.cursor_blink = True  # what every user gets: the tests switch it off in conftest
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.screen.query_one("#smtp-port", Input)
        field.focus()
        await pilot.pause()
        assert field.cursor_blink
