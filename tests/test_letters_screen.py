"""The letter report pages (global settings, per report, live preview), keyboard only through Pilot against a
real config.toml; reached from the E-Mail form, the queue and the command line."""

from __future__ import annotations

import tomllib
from collections.abc import Callable

from textual.pilot import Pilot
from textual.widgets import Input, Select, TextArea

from opos_tui.app import OposApp
from opos_tui.cli import build_parser
from opos_tui.screens.letters import LettersScreen
from opos_tui.screens.queue import QueueScreen
from opos_tui.screens.settings import FormField, SettingsScreen
from opos_tui.screens.widgets import ConfirmScreen
from opos_tui.services import settings
from opos_tui.services.home import Home
from tests.conftest import file_bytes


def letters_screen(app: OposApp) -> LettersScreen:
    screen = app.screen
    assert isinstance(screen, LettersScreen)
    return screen


def preview_text(screen: LettersScreen) -> str:
    return str(screen.query_one("#preview-mail").render())


async def choose_report(pilot: Pilot[None], screen: LettersScreen, downs: int) -> None:
    """Open the report choice with Enter, move down ``downs`` times, take it with Enter."""
    screen.query_one("#report", Select).focus()
    await pilot.press("enter", *["down"] * downs, "enter")
    await pilot.pause()


async def test_dunning_2_subject_previewed_and_saved(home: Home) -> None:
    app = OposApp(home, start="reports")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = letters_screen(app)
        assert app.focused is screen.query_one("#report", Select)
        await choose_report(pilot, screen, 2)  # payment advice, level 1, [level 2]
        assert screen.report == "dunning_2"
        assert "Preview: Dunning letter, level 2" in str(screen.query_one("#preview").border_title)
        assert "Subject: 2. Mahnung RE-2025-0815" in preview_text(screen)  # the shipped text, German by default
        await pilot.press("tab")
        assert app.focused is screen.query_one("#dunning-2-subject", Input)
        await pilot.press(*"Zweite Mahnung ${document_number}: ${amount} ${currency}")
        await pilot.pause()
        assert "Subject: Zweite Mahnung RE-2025-0815: 1.234,56 EUR" in preview_text(screen)
        assert screen.dirty
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not screen.dirty
    saved = tomllib.loads(home.config_file.read_text("utf-8"))
    assert saved["dunning_2"]["subject"] == "Zweite Mahnung ${document_number}: ${amount} ${currency}"
    assert saved["dunning_3"]["subject"] == ""


async def test_every_letter_report_key_has_its_field(home: Home) -> None:
    sections = ("letters", "retry", "payment_advice", *(f"dunning_{level}" for level in range(1, 10)))
    wanted = {key for key in settings.KEYS if key.partition(".")[0] in sections}
    wanted |= {"smtp.connections", "smtp.max_per_minute"}
    app = OposApp(home, start="letters")
    async with app.run_test(size=(80, 24)):
        shown = {field.key for field in letters_screen(app).query(FormField)} - {"report"}
    assert shown == wanted


async def test_invalid_placeholder_named_and_nothing_saved(home: Home) -> None:
    app = OposApp(home, start="reports")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = letters_screen(app)
        await choose_report(pilot, screen, 2)
        await pilot.press("tab", *"Mahnung ${customr_name}")
        await pilot.pause()
        subject = screen.query_one("#field-dunning-2-subject", FormField)
        assert subject.has_class("-invalid")
        assert "unknown placeholder ${customr_name}" in str(subject.query_one(".field-error").render())
        assert "${customr_name}" in app.export_screenshot()
        assert "No preview until this is fixed: 'Subject'" in preview_text(screen)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert screen.valid is None
        assert not home.config_file.exists()
        assert app.focused is screen.query_one("#dunning-2-subject", Input)  # the refusal shows the field
        # a bad $ is quoted as typed
        await pilot.press("end", *["backspace"] * len("${customr_name}"), *"$5")
        await pilot.pause()
        assert "bad placeholder at '$5'" in str(subject.query_one(".field-error").render())
        await pilot.press("backspace", "backspace", *"$$5")
        await pilot.pause()
        assert not subject.has_class("-invalid")
        assert "Subject: Mahnung $5" in preview_text(screen)


async def test_leaving_with_unsaved_changes_asks(home: Home) -> None:
    app = OposApp(home, start="letters")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = letters_screen(app)
        screen.query_one("#letters-subject", Input).focus()
        await pilot.press(*"Ihr Beleg ${document_number}")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")  # cancel: back on the page, nothing lost
        await pilot.pause()
        assert app.screen is screen
        assert screen.query_one("#letters-subject", Input).value == "Ihr Beleg ${document_number}"
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("right", "enter")  # Save | [Discard] | Cancel
        await pilot.pause()
    assert app.return_code == 0
    assert not home.config_file.exists()


async def test_body_takes_lines_and_tab_moves_on(home: Home) -> None:
    app = OposApp(home, start="letters")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = letters_screen(app)
        body = screen.query_one("#letters-body", TextArea)
        body.focus()
        await pilot.press(*"Guten Tag ${customer_name},", "enter", "enter", *"anbei ${document_number}.")
        await pilot.press("tab")
        await pilot.pause()
        assert app.focused is screen.query_one("#letters-signature", TextArea)
        await pilot.press(*"Buchhaltung", "tab")
        await pilot.pause()
        assert app.focused is screen.query_one("#letters-attachment-name", Input)
        text = preview_text(screen)
        assert "Guten Tag Hartmann Stahlbau GmbH,\n\nanbei RE-2025-0815.\n\n-- \nBuchhaltung" in text
        await pilot.press("ctrl+s")
        await pilot.pause()
    saved = settings.load(home)
    assert saved.letters.body == "Guten Tag ${customer_name},\n\nanbei ${document_number}."
    assert saved.letters.signature == "Buchhaltung"


async def test_retry_and_send_limits_on_the_global_page(home: Home) -> None:
    settings.set_value(home, "smtp.host", "mail.example.com")
    app = OposApp(home, start="letters")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = letters_screen(app)
        for key, value in [("retry.give_up_days", "3"), ("smtp.max_per_minute", "30"), ("smtp.connections", "21")]:
            editor = screen.query_one(f"#field-{key.replace('.', '-').replace('_', '-')}", FormField).editor
            assert isinstance(editor, Input)
            editor.focus()
            await pilot.press("ctrl+a", "ctrl+k", *value)
        await pilot.pause()
        assert screen.query_one("#field-smtp-connections", FormField).has_class("-invalid")
        await pilot.press("ctrl+a", "ctrl+k", "3", "ctrl+s")
        await pilot.pause()
    saved = settings.load(home)
    assert (saved.retry.give_up_days, saved.smtp.max_per_minute, saved.smtp.connections) == (3, 30, 3)
    assert saved.smtp.host == "mail.example.com"  # a key this page does not show is kept


async def test_refused_save_shows_the_invalid_field(home: Home) -> None:
    # An older config.toml with a placeholder no mail can fill still loads, but is not saved again as it is.
    home.ensure()
    home.config_file.write_text('[dunning_5]\nsubject = "Mahnung ${kunde}"\n', "utf-8")
    before = file_bytes(home.config_file)
    app = OposApp(home, start="letters")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = letters_screen(app)
        assert screen.page == "letters"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert screen.page == "reports" and screen.report == "dunning_5"
        assert app.focused is screen.query_one("#dunning-5-subject", Input)
        assert "${kunde}" in app.export_screenshot()
    assert file_bytes(home.config_file) == before


async def test_pages_switch_and_keep_what_was_typed(home: Home) -> None:
    app = OposApp(home, start="letters")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = letters_screen(app)
        screen.query_one("#letters-subject", Input).focus()
        await pilot.press(*"Beleg ${document_number}", "ctrl+r")
        await pilot.pause()
        assert screen.page == "reports"
        assert app.focused is screen.query_one("#report", Select)
        assert "Subject: Beleg RE-2025-0815" in preview_text(screen)  # the global subject, as no own is set
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert screen.query_one("#letters-subject", Input).value == "Beleg ${document_number}"
        assert screen.dirty


async def test_reached_from_the_email_form_and_back(home: Home) -> None:
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        form = app.screen
        assert isinstance(form, SettingsScreen)
        await pilot.press("ctrl+r")
        await pilot.pause()
        screen = letters_screen(app)
        assert screen.page == "reports"
        screen.query_one("#smtp-max-per-minute", Input).value = "30"
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is form
        # the E-Mail form shows what the letter pages saved
        assert form.query_one("#smtp-max-per-minute", Input).value == "30"
        assert not form.dirty
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert letters_screen(app).page == "letters"


async def test_reached_from_the_queue_and_listed_in_the_palette(home: Home) -> None:
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        queue = app.screen
        assert isinstance(queue, QueueScreen)
        titles = [command.title for command in app.get_system_commands(queue)]
        assert any(title.startswith("Letter reports") for title in titles)
        await pilot.press("l")
        await pilot.pause()
        screen = letters_screen(app)
        titles = [command.title for command in app.get_system_commands(screen)]
        assert any(title.startswith("Letter reports: global") for title in titles)
        assert any(title.startswith("Per report") for title in titles)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is queue


async def test_german(home: Home) -> None:
    from opos_tui.i18n import set_lang

    set_lang("de")
    app = OposApp(home, start="reports")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # the preview follows config.toml's check, after the first paint
        screen = letters_screen(app)
        labels = [str(label.render()) for label in screen.query(".field-label")]
        assert "Betreff" in labels and "Text" in labels
        assert "Vorschau: Zahlungsavis" in str(screen.query_one("#preview").border_title)
        assert "Betreff: Zahlungsavis RE-2025-0815" in preview_text(screen)


def test_command_line_page() -> None:
    assert build_parser().parse_args(["settings", "--page", "reports"]).page == "reports"
    assert build_parser().parse_args(["settings"]).page == "email"


def test_letters_page_snapshot(snap_compare: Callable[..., bool], home: Home) -> None:
    settings.set_value(home, "sender.address", "buchhaltung@example.com")
    settings.set_value(home, "sender.name", "Müller GmbH")
    assert snap_compare(OposApp(home, start="letters"), terminal_size=(80, 24))


def test_reports_page_snapshot(snap_compare: Callable[..., bool], home: Home) -> None:
    settings.set_value(home, "sender.address", "buchhaltung@example.com")

    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.pause()  # the first page is built once the app runs
        screen = letters_screen(pilot.app)  # type: ignore[arg-type]
        await choose_report(pilot, screen, 2)
        await pilot.press("tab", *"Zweite Mahnung ${document_number} über ${amount} ${currency}")
        await pilot.pause()

    assert snap_compare(OposApp(home, start="reports"), terminal_size=(80, 24), run_before=run_before)


def test_invalid_placeholder_snapshot_16_colours(snap_compare: Callable[..., bool], home: Home) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.pause()  # the first page is built once the app runs
        pilot.app.theme = "ansi-dark"
        pilot.app.ansi_color = True
        screen = letters_screen(pilot.app)  # type: ignore[arg-type]
        screen.query_one("#letters-subject", Input).focus()
        await pilot.press(*"Beleg ${customr_name}")
        await pilot.pause()

    assert snap_compare(OposApp(home, start="letters"), terminal_size=(80, 24), run_before=run_before)


async def test_tab_stops_only_at_what_takes_input(home: Home) -> None:
    """Tab walks the fields and the preview; the page itself is no stop (it showed as a focus that did nothing)."""
    app = OposApp(home, start="letters")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = letters_screen(app)
        for page in ("letters", "reports"):
            if page == "reports":
                await pilot.press("ctrl+r")
                await pilot.pause()
            stops: list[str] = []
            for _ in range(40):
                await pilot.press("tab")
                focused = app.focused
                assert focused is not None
                stops.append(focused.id or type(focused).__name__)
            assert page not in stops, stops
            assert "preview" in stops
            assert screen.page == page
