"""The queue and detail screens as a newcomer meets them: questions before mass or irreversible actions, dialogs
that say exactly what will happen, help and footer, search, the table's columns, German throughout, 16 colours.

Driven by keyboard through Pilot against real queue files (and a real aiosmtpd server where mails go out)."""

from __future__ import annotations

import html
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input, Static

from opos_tui.app import OposApp
from opos_tui.i18n import Lang, set_lang
from opos_tui.screens.message import MessageScreen, RecipientsScreen
from opos_tui.screens.queue import QueueScreen
from opos_tui.screens.status import arrive_twice
from opos_tui.screens.widgets import ConfirmScreen, KeysScreen
from opos_tui.services.home import Home
from opos_tui.services.queue import LetterType, NewAttachment, NewItem, Recipient, Status, open_queue
from tests.pdfs import make_pdf
from tests.test_queue_screen import (
    a_mixed_queue,
    answer,
    cells,
    checked,
    configure,
    confirm_sending,
    letter,
    open_detail,
    queue_screen,
    settle,
    shown_ids,
    statuses,
    text_of,
    until,
    utc,  # noqa: F401  (a fixture, used by name)
)


def set_status(home: Home, item: int, status: Status, error: str | None = None) -> None:
    """Bring a pending (or deferred) ``item`` to ``status`` as an operator (held) or one send (the rest) does,
    with ``error`` as the server's reply."""
    with open_queue(home) as queue:
        if status is Status.HELD:
            assert queue.hold([item]).changed == (item,)
            return
        assert queue.claim([item]) is not None
        if status is Status.SENT:
            queue.record_sent(item, error or "250 2.0.0 Ok")
        elif status is Status.FAILED:
            queue.record_failed(item, error or "550 5.0.0 refused")
        elif status is Status.DEFERRED:
            queue.record_deferred(item, error or "451 4.0.0 later", datetime.now(UTC) + timedelta(minutes=5))
        else:
            assert status is Status.UNCERTAIN
            queue.record_uncertain(item, error or "connection lost after the data was sent")


def notices(app: OposApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def screen_lines(app: OposApp) -> list[str]:
    """The text of the whole terminal as a person sees it (screen, dialog, notifications, footer), line by line."""
    svg = app.export_screenshot()
    rows: dict[int, list[tuple[float, str]]] = {}
    for x, line, text in re.findall(
        r'<text [^>]*x="([\d.]+)" [^>]*clip-path="url\(#[^)]*-line-(\d+)\)">(.*?)</text>', svg
    ):
        rows.setdefault(int(line), []).append((float(x), html.unescape(text)))
    result = []
    for line in sorted(rows):
        out = ""
        for x, text in sorted(rows[line]):
            out = out.ljust(round(x / 12.2)) + text
        result.append(out.replace("\xa0", " "))
    return result


def screen_text(app: OposApp) -> str:
    return "\n".join(screen_lines(app))


# --- 2. mass and irreversible actions ask first --------------------------------------------------------------


async def test_sending_more_than_one_mail_asks_first_and_enter_or_esc_send_nothing(
    home: Home, smtp_server: Any
) -> None:
    server = smtp_server("plain")
    configure(home, server)
    [letter(home, 1), letter(home, 2), letter(home, 3, customer=1)]  # the first customer's second letter
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        for key in ("enter", "escape"):
            await pilot.press("S")
            await settle(pilot)
            dialog = app.screen
            assert isinstance(dialog, ConfirmScreen)
            assert "Send 3 mails to 2 customers?" in text_of(dialog, ".question")
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, QueueScreen)
            assert not server.received
            assert set(statuses(home).values()) == {Status.PENDING}
        await pilot.press("space", "s")  # one mail: no question
        await settle(pilot)
        assert len(server.received) == 1
        await pilot.press("a", "s")
        await confirm_sending(pilot, 2, 2)
        await settle(pilot)
        assert len(server.received) == 3


async def test_retry_of_an_uncertain_mail_in_the_list_warns_as_its_detail_does(home: Home) -> None:
    configure(home)
    failed, uncertain = letter(home, 1), letter(home, 2)
    set_status(home, failed, Status.FAILED, "550 5.1.1 no such user")
    set_status(home, uncertain, Status.UNCERTAIN, "connection lost after the data")
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("r")  # the uncertain one, under the cursor
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        warning = arrive_twice([uncertain])
        assert warning in text_of(dialog, ".question")
        await pilot.press("enter")  # Cancel is the default
        await settle(pilot)
        assert statuses(home)[uncertain] is Status.UNCERTAIN

        await pilot.press("a", "r")  # both: only the other one, or both
        assert "Only the other 1" in screen_text(app)
        await answer(pilot, "others")
        await settle(pilot)
        assert statuses(home) == {failed: Status.PENDING, uncertain: Status.UNCERTAIN}
        assert screen.selected == {uncertain}
        await pilot.press("r")
        await answer(pilot, "all")
        await settle(pilot)
        assert statuses(home)[uncertain] is Status.PENDING

        set_status(home, uncertain, Status.UNCERTAIN)
        detail = await open_detail(pilot)
        await pilot.press("r")
        assert warning in text_of(app.screen, ".question")  # the same words in the detail
        await pilot.press("escape")
        assert app.screen is detail


# --- 3. dialogs count what will change -----------------------------------------------------------------------


async def test_delete_and_hold_count_what_they_change_before_asking(home: Home) -> None:
    configure(home)
    sent, first, second = letter(home, 1), letter(home, 2), letter(home, 3)
    set_status(home, sent, Status.SENT)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # the queue is read
        await until(pilot, lambda: cells(queue_screen(app), 2)["status"] == "✓ sent")
        await pilot.press("end", "d")  # the sent one: nothing to ask
        await pilot.pause()
        assert isinstance(app.screen, QueueScreen)
        assert notices(app)[-1] == f"Nothing to delete (#{sent} sent)."
        await pilot.press("h")
        assert notices(app)[-1] == f"Nothing to hold (#{sent} sent)."

        await pilot.press("a", "d")
        question = text_of(app.screen, ".question")
        assert question == f"Delete 2 unsent mails? Not deleted: #{sent} sent. This cannot be undone."
        assert "Delete 2" in screen_text(app)
        await answer(pilot, "delete")
        await settle(pilot)
        assert statuses(home) == {sent: Status.SENT}
        assert notices(app)[-1] == "2 deleted"
        assert first not in statuses(home) and second not in statuses(home)


# --- 4. help, footer, palette ----------------------------------------------------------------------------------


def help_text(app: OposApp) -> str:
    """The help screen's list as it shows, scrolled or not."""
    keys = app.screen.query_one("#help-keys", Static)
    console = Console(width=keys.size.width, file=io.StringIO(), record=True)
    console.print(keys.content)
    return console.export_text()


def help_entries(app: OposApp) -> dict[str, str]:
    """The help screen's lines: keys -> what they do."""
    entries: dict[str, str] = {}
    last = ""
    for line in help_text(app).splitlines():
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(parts) == 2:
            last, entries[parts[0]] = parts[0], parts[1]
        else:  # a long description wraps under itself
            entries[last] += " " + parts[0]
    return entries


def footer(app: OposApp) -> dict[str, Any]:
    """The footer's entries by action, as shown."""
    return {key.action: key for key in app.screen.query("FooterKey")}


async def test_help_lists_every_key_of_the_queue_and_the_detail(home: Home) -> None:
    configure(home)
    item = letter(home, 1)
    set_status(home, item, Status.UNCERTAIN)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        for key in ("question_mark", "f1"):
            await pilot.press(key)
            help_screen = app.screen
            assert isinstance(help_screen, KeysScreen)
            entries = help_entries(app)
            for keys, does in {
                "Enter": "Open the mail",
                "/": "Search recipient, customer, document, subject",
                "t": "Show or hide the sending transcript",
                "q, ^q": "Quit",
                "?, f1": "Every key of this screen",
                "^p": "Find a command by its name",
                "Space": "Select or unselect the mail",
                "d, Del": "Delete the selected unsent mails",
                "0": "Show all mails and clear the search",
                "2": "Show only held mails",
                "↓": "Next mail",
                "PgUp": "One page up",
                "Home, ^home": "First mail",
                "c": "E-mail settings",
            }.items():
                assert entries.get(keys) == does, (keys, entries)
            await pilot.press("escape")
            assert isinstance(app.screen, QueueScreen)

        detail = await open_detail(pilot)
        await pilot.press("question_mark")
        entries = help_entries(app)
        assert entries["esc, q"] == "Back to the queue"
        assert entries["r"] == "Send this uncertain mail again (it may arrive twice)"
        assert entries["m"] == "Mark this uncertain mail as sent (it arrived)"
        assert "h" not in entries  # hold is not for an uncertain mail
        await pilot.press("escape")
        assert app.screen is detail
        await pilot.press("q")  # q leaves the detail as Esc does; on the queue it quits
        assert isinstance(app.screen, QueueScreen)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


@pytest.mark.parametrize("lang", ["en", "de"])
async def test_the_footer_shows_the_important_keys_in_80_columns_idle_and_while_sending(
    home: Home, smtp_server: Any, lang: Lang
) -> None:
    set_lang(lang)
    server = smtp_server("plain")
    configure(home, server)
    letter(home, 1, to="Kunde 1 GmbH <slow@example.test>")  # its reply waits: the run stays in progress
    letter(home, 2)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # the first page is built once the app runs
        screen = queue_screen(app)
        shown = footer(app)
        assert {"open", "send_selected", "send_all", "search", "app.help", "app.quit"} <= set(shown)
        assert max(key.region.right for key in shown.values()) <= 80
        assert shown["open"].key_display == "Enter" and shown["search"].key_display == "/"

        await pilot.press("S")
        await settle(pilot)
        await answer(pilot, "all")
        await until(pilot, lambda: len(server.received) == 1)
        assert screen.sending
        shown = footer(app)
        assert {"stop", "transcript", "open", "app.help", "app.quit"} <= set(shown)
        assert "send_all" not in shown  # not possible meanwhile
        assert max(key.region.right for key in shown.values()) <= 80
        await pilot.press("escape")
        server.gate.set()
        await settle(pilot)
        assert "stop" not in footer(app)


async def test_the_palette_names_every_action_once_with_readable_keys(home: Home) -> None:
    configure(home)
    letter(home, 1)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        commands = list(app.get_system_commands(app.screen))
        titles = [c.title for c in commands]
        assert "Open the mail" in titles
        assert titles.count("Quit") == 1
        helps = {c.title: c.help for c in commands}
        assert helps["Search recipient, customer, document, subject"] == "key: /"
        assert helps["Select or unselect the mail"] == "key: Space"
        assert helps["Delete the selected unsent mails"] == "key: d, Del"

        await pilot.press("ctrl+p")
        await pilot.press(*"Keys")

        def hits() -> int:  # the palette searches in the background
            palette = app.screen
            return palette.query_one(CommandList).option_count if isinstance(palette, CommandPalette) else 0

        await until(pilot, lambda: hits() > 0)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, KeysScreen))
        await pilot.press("escape")  # the keys panel closes with Esc
        assert isinstance(app.screen, QueueScreen)


# --- 5. search clears as the screen says ----------------------------------------------------------------


async def test_zero_and_esc_in_the_search_field_clear_the_search(home: Home) -> None:
    configure(home)
    ids = [letter(home, n) for n in range(1, 4)]
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        search = screen.query_one("#search", Input)
        for clear in (["enter", "0"], ["escape"]):
            await pilot.press("slash", *"zzz")
            await settle(pilot)
            assert shown_ids(screen) == []
            assert "Nothing matches. 0 shows all mails and clears the search" in text_of(screen, "#empty-hint")
            await pilot.press(*clear)
            await settle(pilot)
            assert search.value == ""
            assert shown_ids(screen) == ids[::-1]
            assert app.focused is screen.table


# --- 6. the table shows what the dialogs name ----------------------------------------------------------------


LONG_ADDRESS = "buchhaltung@hartmann-stahl.example"  # the issue's, cut at 120 columns before


async def test_number_and_status_stay_at_the_left_and_the_address_has_room(home: Home) -> None:
    configure(home)
    first = letter(home, 1, to=f"Hartmann Stahl GmbH <{LONG_ADDRESS}>")
    set_status(home, first, Status.FAILED, f"550 5.1.1 <{LONG_ADDRESS}> unknown")
    app = OposApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = queue_screen(app)
        await pilot.pause()  # the queue is read
        table = screen.table
        assert [str(c.key.value) for c in table.ordered_columns][:3] == ["sel", "number", "status"]
        assert table.fixed_columns == 3
        row = cells(screen, 0)
        assert row["number"] == str(first)
        assert row["to"] == LONG_ADDRESS  # in full at 120 columns
        await pilot.press(*["right"] * 20)  # scrolled to the far right: number and status still show
        await pilot.pause()
        assert table.scroll_x > 0
        header, row_line = screen_lines(app)[3:5]  # title, counts and search above
        assert header.split()[:2] == ["#", "Status"]
        assert row_line.split()[:3] == [str(first), "✗", "failed"]
        assert "Dunning 2" not in row_line  # the type scrolled away, unlike number and status
    async with OposApp(home).run_test(size=(80, 24)) as pilot:  # at 80 columns the line under the table has it
        await pilot.pause()
        current = text_of(queue_screen(pilot.app), "#current")  # type: ignore[arg-type]
        assert current.startswith(f"#{first} {LONG_ADDRESS} · 550 5.1.1")


# --- 7. one language at a time -------------------------------------------------------------------------------

# Words of the other language that the screens' data in this walk never contains (its mails carry numbers only).
ENGLISH = {
    "the", "and", "of", "is", "Send", "Delete", "Cancel", "Quit", "Search", "Select", "Hold", "Release", "Retry",
    "Help", "Keys", "Back", "Open", "Close", "pending", "held", "failed", "deferred", "uncertain", "sent", "sending",
    "all", "Customer", "Recipient", "Recipients", "Type", "Tries", "Headers", "Body", "Attachments", "History",
    "queued", "selected", "here", "mails", "mail", "palette", "key", "Settings", "Mark", "Resend", "Nothing",
    "Dunning", "Advice", "Theme", "Screenshot", "Commands", "Last", "error", "page", "Checking", "Plausible",
    "scroll", "closes", "Save", "separate", "Not", "may", "twice", "shows", "clears",
}  # fmt: skip
GERMAN = {
    "und", "der", "die", "das", "nicht", "Senden", "Löschen", "Abbrechen", "Beenden", "Suchen", "Suche", "Wählen",
    "Anhalten", "Freigeben", "Wiederholen", "Hilfe", "Tasten", "Zurück", "Öffnen", "Schließen", "wartet",
    "angehalten", "fehlerhaft", "verschoben", "unsicher", "gesendet", "sendet", "alle", "Kunde", "Empfänger",
    "Betreff", "Art", "Vers", "Kopfzeilen", "Text", "Anhänge", "Verlauf", "eingereiht", "gewählt", "hier", "Mails",
    "Taste", "Einstellungen", "Mahnung", "Avis", "Befehl", "Letzter", "Fehler", "Seite", "Prüfe", "Plausibel",
    "blättern", "schließt", "Speichern", "trennen", "Nichts", "vielleicht", "doppelt", "zeigt", "leert",
}  # fmt: skip


def neutral_queue(home: Home) -> list[int]:
    """Mails of every status whose data is words of neither language: the walk finds only the screens' words."""
    configure(home)
    items = [
        NewItem(
            type=LetterType.DUNNING if n % 2 else LetterType.PAYMENT_ADVICE,
            level=2 if n % 2 else None,
            sender="opos@example.test",
            recipients=(Recipient("to", f"k{n}@example.test", f"ACME {n}"),),
            subject=f"Z-{n:05d}",
            body=f"Z-{n:05d}\n",
            attachments=(NewAttachment(f"Z-{n:05d}.pdf", make_pdf(f"Z-{n:05d}", f"K{n}")),),
            vars={"customer_name": f"ACME {n}", "customer_number": f"K{n}", "document_number": f"Z-{n:05d}"},
        )
        for n in range(1, 8)
    ]
    with open_queue(home) as queue:
        ids = queue.enqueue_many(items)
    for item, status, error in (
        (ids[0], Status.SENT, None),
        (ids[1], Status.HELD, None),
        (ids[2], Status.FAILED, "550 5.1.1"),
        (ids[3], Status.DEFERRED, "451 4.7.1"),
        (ids[4], Status.UNCERTAIN, "421 4.4.2"),
    ):
        set_status(home, item, status, error)
    return ids


def foreign_words(text: str, words: set[str]) -> set[str]:
    return {word for word in re.findall(r"\w+", text) if word in words}


async def walk(home: Home, lang: Lang) -> list[tuple[str, str]]:
    """Every screen, dialog, notification, footer, help and palette of the queue and the detail: (where, text)."""
    set_lang(lang)
    ids = neutral_queue(home)
    seen: list[tuple[str, str]] = []
    app = OposApp(home)
    async with app.run_test(size=(100, 30)) as pilot:

        def look(where: str) -> None:
            seen.append((where, screen_text(app)))

        async def dialog(where: str, *keys: str) -> None:
            await pilot.press(*keys)
            await settle(pilot)
            look(where)
            await pilot.press("escape")
            await settle(pilot)

        screen = queue_screen(app)
        await checked(pilot)
        look("queue")
        await pilot.press("question_mark")
        seen.append(("queue help", help_text(app)))
        look("queue help screen")
        await pilot.press("escape")
        for command in app.get_system_commands(screen):
            seen.append(("queue palette", f"{command.title} {command.help}"))
        await dialog("palette", "ctrl+p")
        await pilot.press("a", "space")  # all but one selected
        look("selection")
        await dialog("delete", "d")
        await dialog("send", "S")
        look("not sent")
        await pilot.press("a", "a", "end", "h")  # the sent one
        look("nothing to hold")
        cursor = screen.cursor_id
        await pilot.press("home", *["down"] * (len(ids) - 1 - ids.index(ids[4])))  # the uncertain one
        assert screen.cursor_id == ids[4], cursor
        await dialog("retry uncertain", "r")
        await pilot.press("slash", *"zzz")
        await settle(pilot)
        look("search")
        await pilot.press("escape", "3")
        look("failed")
        await pilot.press("0", "home", *["down"] * (len(ids) - 1 - ids.index(ids[4])), "enter")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, MessageScreen)
        look("detail")
        await pilot.press("question_mark")
        seen.append(("detail help", help_text(app)))
        await pilot.press("escape")
        for command in app.get_system_commands(detail):
            seen.append(("detail palette", f"{command.title} {command.help}"))
        await dialog("resend", "r")
        await dialog("mark sent", "m")
        await pilot.press("e")
        assert isinstance(app.screen, RecipientsScreen)
        app.screen.query_one("#to", Input).value = ""  # (what a bad address says is the address checks' words)
        await pilot.pause()
        look("recipients")
        await pilot.press("escape", "escape")
        await settle(pilot)
        await pilot.press("home", "h")  # a pending one, from the list
        await settle(pilot)
        look("held")
    return seen


@pytest.mark.parametrize("lang", ["de", "en"])
@pytest.mark.usefixtures("utc")
async def test_the_queue_and_detail_speak_one_language(home: Home, lang: Lang) -> None:
    other = ENGLISH if lang == "de" else GERMAN
    found = {where: words for where, text in await walk(home, lang) if (words := foreign_words(text, other))}
    assert found == {}


# --- 8. 16 colours: red for errors only ---------------------------------------------------------------------


async def test_a_16_colour_terminal_gets_the_terminals_own_colours(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    async with OposApp(home).run_test(size=(80, 24)) as pilot:
        assert pilot.app.theme == "ansi-dark"
    monkeypatch.setenv("TERM", "xterm-256color")
    async with OposApp(home).run_test(size=(80, 24)) as pilot:
        assert pilot.app.theme == "textual-dark"


def test_queue_snapshot_16_colours(snap_compare: Any, home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    a_mixed_queue(home)
    set_status(home, 6, Status.DEFERRED, "451 4.7.1 try again later")
    monkeypatch.setenv("TERM", "xterm")

    async def run_before(pilot: Pilot[None]) -> None:
        await checked(pilot)
        await pilot.press("down", "down", "down", "down", "down")  # the failed one: its error under the table

    assert snap_compare(OposApp(home), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.usefixtures("utc")
def test_detail_snapshot_16_colours(snap_compare: Any, home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    a_mixed_queue(home)
    monkeypatch.setenv("TERM", "xterm")

    async def run_before(pilot: Pilot[None]) -> None:
        await checked(pilot)
        await pilot.press("end", "up", "up", "up", "enter")  # the uncertain one, with its last error
        await settle(pilot)

    assert snap_compare(OposApp(home), terminal_size=(80, 24), run_before=run_before)
