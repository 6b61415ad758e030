"""The queue screen, driven by keyboard through Pilot against a real queue file and a real aiosmtpd server."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input, Static
from textual.worker import WorkerCancelled

from opos_tui.app import OposApp
from opos_tui.screens.message import MessageScreen, RecipientsScreen
from opos_tui.screens.queue import QueueScreen
from opos_tui.screens.settings import SettingsScreen
from opos_tui.screens.widgets import ConfirmScreen
from opos_tui.services import settings
from opos_tui.services.compose import LetterRequest, prepare
from opos_tui.services.home import Home
from opos_tui.services.queue import LetterType, NewAttachment, NewItem, Recipient, Status, open_queue
from tests.pdfs import make_pdf, write_letter
from tests.servers.smtp import SmtpServer

SENDER = {"sender": {"address": "buchhaltung@example.test", "name": "Buchhaltung"}}
START = 1_767_261_600.0  # 2026-01-01 10:00 UTC


def configure(home: Home, server: SmtpServer | None = None) -> None:
    home.ensure()
    settings.save(home, server.settings(sender__name="Buchhaltung") if server else settings.check(SENDER))


def letter(
    home: Home, n: int, to: str = "", letter_of: int | None = None, customer: int | None = None, *, fixed: bool = False
) -> int:
    """Queue dunning letter ``n`` (to customer ``n`` unless ``customer`` says otherwise) the way the accounting
    system does; ``letter_of`` attaches another customer's letter instead (the swapped PDF). ``fixed``: with a
    time and Message-ID that do not change from run to run (for snapshots; letter ``n`` is then queued ``n``
    minutes after 10:00 as ``<n@example.test>``)."""
    pdf_n = n if letter_of is None else letter_of
    c = customer or n
    pdf_c = c if letter_of is None else letter_of
    pdf = write_letter(home.root / f"Mahnung_{n}.pdf", f"R-{pdf_n:04d}", f"K{1000 + pdf_c}", f"Kunde {pdf_c} GmbH")
    request = LetterRequest(
        type="dunning",
        level=2,
        to=[to or f"Kunde {c} GmbH <kunde{c}@example.test>"],
        attachments=[pdf],
        vars={"customer_name": f"Kunde {c} GmbH", "customer_number": f"K{1000 + c}", "document_number": f"R-{n:04d}"},
    )
    if fixed:
        queue = open_queue(home, clock=lambda: START + n * 60, message_id=lambda _: f"<{n}@example.test>")
    else:
        queue = open_queue(home)
    with queue:
        return queue.enqueue(prepare(settings.load(home), request)).id


def many(home: Home, count: int) -> list[int]:
    """``count`` items in one go (for paging): valid, each with its own real PDF."""
    items = [
        NewItem(
            type=LetterType.PAYMENT_ADVICE,
            level=None,
            sender="buchhaltung@example.test",
            recipients=(Recipient("to", f"kunde{n}@example.test"),),
            subject=f"Zahlungsavis Z-{n:05d}",
            body="Guten Tag\n",
            attachments=(NewAttachment(f"Avis_{n}.pdf", make_pdf(f"Zahlungsavis Z-{n:05d}")),),
            vars={"customer_name": f"Firma {n}", "document_number": f"Z-{n:05d}"},
        )
        for n in range(1, count + 1)
    ]
    with open_queue(home) as queue:
        return queue.enqueue_many(items)


def statuses(home: Home) -> dict[int, Status]:
    with open_queue(home) as queue:
        return {r.id: r.status for r in queue.page(limit=10_000)}


def queue_screen(app: OposApp) -> QueueScreen:
    screen = app.screen
    assert isinstance(screen, QueueScreen)
    return screen


def shown_ids(screen: QueueScreen) -> list[int]:
    return [int(str(key.value)) for key in screen.table.rows]


def cells(screen: QueueScreen, row: int) -> dict[str, str]:
    """One row of the table as text, by column."""
    table = screen.table
    return {str(c.key.value): str(v) for c, v in zip(table.ordered_columns, table.get_row_at(row), strict=True)}


def text_of(screen: Any, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def settle(pilot: Pilot[None]) -> None:
    """Let every worker finish and its messages arrive."""
    with contextlib.suppress(WorkerCancelled):
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    with contextlib.suppress(WorkerCancelled):
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def until(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait for the screen's own polling to show a change (it re-reads the queue twice a second)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("the screen did not follow the change")


async def answer(pilot: Pilot[None], choice: str) -> None:
    """Press a ConfirmScreen's button by its answer, with the keyboard."""
    screen = pilot.app.screen
    assert isinstance(screen, ConfirmScreen), screen
    buttons = [str(b.id).removeprefix("answer-") for b in screen.query("Button")]
    for _ in range(buttons.index(choice)):
        await pilot.press("right")
    await pilot.press("enter")
    await pilot.pause()


async def confirm_sending(pilot: Pilot[None], mails: int, customers: int) -> None:
    """Answer the question asked before more than one mail goes out: send them."""
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ConfirmScreen), screen
    assert f"Send {mails} mails to {customers} customers?" in text_of(screen, ".question")
    await answer(pilot, "all")


# --- reading the queue --------------------------------------------------------------------------------


async def test_opens_on_the_queue_newest_first_with_counts_and_flags(home: Home) -> None:
    configure(home)
    first, second, swapped = letter(home, 1), letter(home, 2), letter(home, 3, letter_of=4)
    with open_queue(home) as queue:
        queue.hold([second])
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await settle(pilot)
        await until(pilot, lambda: "⚠" in cells(screen, 0)["check"])
        assert shown_ids(screen) == [swapped, second, first]
        row = cells(screen, 1)
        assert row["number"] == str(second)
        assert row["status"] == "‖ held"  # symbol and word, not colour alone
        assert row["type"] == "Dunning 2"
        assert row["customer"].startswith("K1002 Kunde")
        assert row["to"] == "kunde2@example.test"
        assert [cells(screen, i)["check"] for i in range(3)] == ["⚠", "✓", "✓"]
        counts = text_of(screen, "#counts")
        assert "pending 2" in counts and "held 1" in counts and "all 3" in counts
        assert "⚠ 1 here" in text_of(screen, "#position")


async def test_what_a_mail_says_is_shown_as_written_never_as_markup(home: Home) -> None:
    """Square brackets in a subject, a name or an address (which Rich would read as markup) are shown as they
    are written, and one that markup could not even read (``[/]``) does not break the screen."""
    configure(home)
    item = NewItem(
        type=LetterType.PAYMENT_ADVICE,
        level=None,
        sender="buchhaltung@example.test",
        recipients=(Recipient("to", "kunde@example.test", "Kunde [b]Eins[/b]"),),
        subject="Avis [/] [red]dringend[/red]",
        body="Guten Tag\n",
        attachments=(NewAttachment("Avis.pdf", make_pdf("Avis")),),
        vars={"customer_name": "Firma [bold]X[/bold]", "customer_number": "K1"},
    )
    with open_queue(home) as queue:
        queue.enqueue(item)
    app = OposApp(home)
    async with app.run_test(size=(200, 24)) as pilot:
        screen = queue_screen(app)
        await settle(pilot)
        await until(pilot, lambda: bool(screen.table.row_count))
        shown = screen.table.render_line(1).text  # the first row under the header
        assert "K1 Firma [bold]X[/bold]" in shown and "Avis [/] [red]dringend[/red]" in shown, shown


async def test_the_keyboard_reaches_every_item_of_a_large_queue(home: Home) -> None:
    configure(home)
    ids = many(home, 250)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.pause()
        window = screen.table.row_count
        assert 10 < window < 30  # one screenful, never the whole queue
        assert screen.cursor_id == ids[-1]
        await pilot.press("end")
        assert screen.cursor_id == ids[0] and screen.table.row_count == window
        assert "250/250" in text_of(screen, "#position")
        await pilot.press("up")
        assert screen.cursor_id == ids[1]
        await pilot.press("home", "pagedown")
        assert screen.cursor_id == ids[-1 - window]
        await pilot.press("pagedown", "pageup", "down", "down")
        assert screen.cursor_id == ids[-1 - window - 2]
        for _ in range(window + 5):
            await pilot.press("down")
        assert screen.cursor_id == ids[-1 - 2 * window - 7]
        assert screen.table.row_count == window
        await pilot.press("t")  # the transcript panel takes room: the window shrinks, the cursor stays
        await settle(pilot)
        assert screen.table.row_count < window
        assert screen.table.size.height == screen.table.row_count + 2  # header and scrollbar: nothing hidden
        assert screen.cursor_id == ids[-1 - 2 * window - 7]


async def test_filter_keys_and_incremental_search(home: Home) -> None:
    configure(home)
    ids = [letter(home, n) for n in range(1, 6)]
    with open_queue(home) as queue:
        queue.hold(ids[:2])
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("2")
        assert sorted(shown_ids(screen)) == ids[:2]
        await pilot.press("1")
        assert sorted(shown_ids(screen)) == ids[2:]
        await pilot.press("3")
        assert shown_ids(screen) == []
        assert "no items" in text_of(screen, "#position")
        await pilot.press("0", "slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"R-0004")  # document number
        assert shown_ids(screen) == [ids[3]]
        await pilot.press("enter")
        assert app.focused is screen.table
        screen.query_one("#search", Input).value = "kunde3@example"  # recipient
        await pilot.pause()
        assert shown_ids(screen) == [ids[2]]
        screen.query_one("#search", Input).value = "k1002 kunde"  # customer number and name, all words
        await pilot.pause()
        assert shown_ids(screen) == [ids[1]]


async def test_select_hold_release_and_delete_with_confirmation(home: Home) -> None:
    configure(home)
    ids = [letter(home, n) for n in range(1, 5)]
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("space", "space")  # the two newest
        assert screen.selected == {ids[3], ids[2]}
        assert cells(screen, 0)["sel"] == "●"
        await pilot.press("h")
        await settle(pilot)
        assert [statuses(home)[i] for i in ids] == [Status.PENDING, Status.PENDING, Status.HELD, Status.HELD]
        assert screen.selected == set()
        await pilot.press("home", "u")  # nothing selected: the row under the cursor
        await settle(pilot)
        assert statuses(home)[ids[3]] is Status.PENDING

        await pilot.press("a")
        assert screen.selected == set(ids)
        await pilot.press("a")
        assert screen.selected == set()

        await pilot.press("space", "d")
        await answer(pilot, "cancel")
        assert ids[3] in statuses(home)
        await pilot.press("d")
        await answer(pilot, "delete")
        await settle(pilot)
        assert ids[3] not in statuses(home)
        assert shown_ids(screen) == ids[2::-1]


async def test_every_action_is_in_the_command_palette(home: Home) -> None:
    configure(home)
    item = letter(home, 1)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        commands = {c.title for c in app.get_system_commands(app.screen)}
        for title in (
            "Select or unselect the mail",
            "Select all shown mails (again: none)",
            "Hold the selected mails",
            "Release the selected held mails",
            "Retry the selected failed, deferred or uncertain mails",
            "Delete the selected unsent mails",
            "Send the selected mails",
            "Send all pending mails",
            "E-mail settings",
            "Show only held mails",
            "Open the mail",
        ):
            assert title in commands
        await pilot.press("ctrl+p")
        await pilot.press(*"Hold the selected")

        def hits() -> int:  # the palette searches in the background
            palette = app.screen
            return palette.query_one(CommandList).option_count if isinstance(palette, CommandPalette) else 0

        await until(pilot, lambda: hits() > 0)
        await pilot.press("enter")
        await settle(pilot)
        assert statuses(home)[item] is Status.HELD


async def test_settings_are_one_key_away_and_come_back_to_the_queue(home: Home) -> None:
    configure(home)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("c")
        assert isinstance(app.screen, SettingsScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, QueueScreen)
        assert app.is_running
    alone = OposApp(home, start="settings")
    async with alone.run_test(size=(80, 24)) as pilot:
        assert isinstance(alone.screen, SettingsScreen)
        await pilot.press("escape")
        assert not alone.is_running


# --- following other processes ------------------------------------------------------------------------


async def test_changes_by_another_process_appear_keeping_cursor_and_selection(home: Home, cli: Any) -> None:
    configure(home)
    ids = [letter(home, n) for n in range(1, 5)]
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("down", "space")  # select ids[2]; the cursor moves on to ids[1]
        assert screen.cursor_id == ids[1]
        with open_queue(home) as other:  # a second operator
            other.hold([ids[1]])
        await until(pilot, lambda: cells(screen, 2)["status"] == "‖ held")
        pdf = write_letter(home.root / "neu.pdf", "R-0005", "K1005")
        enqueued = cli(
            *("enqueue", "--type", "dunning", "--level", "1", "--to", "neu@example.test", "--attach", str(pdf)),
            *("--var", "customer_name=Neu GmbH", "--var", "document_number=R-0005"),
        )
        assert enqueued.code == 0, enqueued.err
        newer = max(statuses(home))  # a new row on top, from the command line
        await until(pilot, lambda: shown_ids(screen)[0] == newer)
        assert screen.cursor_id == ids[1]
        assert screen.table.cursor_row == 3
        assert screen.selected == {ids[2]}
        assert "held 1" in text_of(screen, "#counts")


# --- sending ------------------------------------------------------------------------------------------


async def test_send_all_goes_through_the_server(home: Home, smtp_server: Any) -> None:
    server = smtp_server("plain")
    configure(home, server)
    ids = [letter(home, n) for n in range(1, 4)]
    with open_queue(home) as queue:
        queue.hold([ids[0]])
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("S")
        await confirm_sending(pilot, 2, 2)
        await settle(pilot)
        assert sorted(r.rcpt_tos[0] for r in server.received) == ["kunde2@example.test", "kunde3@example.test"]
        assert [statuses(home)[i] for i in ids] == [Status.HELD, Status.SENT, Status.SENT]
        assert "Done: sent 2 · failed 0" in text_of(screen, "#progress-label")
        assert not screen.sending
        assert [cells(screen, i)["status"] for i in range(2)] == ["✓ sent", "✓ sent"]


async def test_an_item_queued_before_the_sender_was_set_goes_with_the_current_sender(
    home: Home, smtp_server: Any
) -> None:
    server = smtp_server("plain")
    home.ensure()
    settings.save(home, server.settings(sender__address=""))  # no sender yet
    item = letter(home, 1)
    settings.set_value(home, "sender.address", "opos@example.test")
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("S")
        await settle(pilot)
    assert statuses(home)[item] is Status.SENT
    assert [r.mail_from for r in server.received] == ["opos@example.test"]


async def test_send_selected_records_failures_and_retry_sends_again(home: Home, smtp_server: Any) -> None:
    server = smtp_server("plain")
    configure(home, server)
    good, bad, other = letter(home, 1), letter(home, 2, to="unknown@example.test"), letter(home, 3)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("down", "space", "down", "space", "s")  # bad and good, not other
        await confirm_sending(pilot, 2, 2)
        await settle(pilot)
        assert statuses(home) == {good: Status.SENT, bad: Status.FAILED, other: Status.PENDING}
        assert "Done: sent 1 · failed 1" in text_of(screen, "#progress-label")
        row = cells(screen, 1)
        assert row["status"] == "✗ failed" and row["tries"] == "1" and row["error"].startswith("550 5.1.1")
        await pilot.press("t")
        transcript = "\n".join(line.text for line in screen.query_one("#transcript").lines)  # type: ignore[attr-defined]
        assert f"#{bad} unknown@example.test: failed 550 5.1.1 no such user here" in transcript

        with open_queue(home) as queue:
            queue.set_recipients(bad, [Recipient("to", "kunde2@example.test")])
        await pilot.press("home", "down", "r")
        await settle(pilot)
        assert statuses(home)[bad] is Status.PENDING
        await pilot.press("s")
        await settle(pilot)
        assert statuses(home)[bad] is Status.SENT
        assert len(server.received) == 2


async def test_send_all_skips_a_swapped_pdf_unless_confirmed(home: Home, smtp_server: Any) -> None:
    server = smtp_server("plain")
    configure(home, server)
    good, swapped = letter(home, 1), letter(home, 2, letter_of=3)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("S")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "1 of 2 mails failed the plausibility check" in text_of(app.screen, ".question")
        await answer(pilot, "skip")
        await settle(pilot)
        assert [r.rcpt_tos for r in server.received] == [["kunde1@example.test"]]
        assert statuses(home) == {good: Status.SENT, swapped: Status.PENDING}
        await until(pilot, lambda: cells(screen, 0)["check"] == "⚠")

        await pilot.press("S")
        await settle(pilot)
        await answer(pilot, "cancel")
        await settle(pilot)
        assert statuses(home)[swapped] is Status.PENDING

        await pilot.press("S")
        await settle(pilot)
        await answer(pilot, "all")
        await settle(pilot)
        assert statuses(home)[swapped] is Status.SENT
        assert [r.rcpt_tos for r in server.received] == [["kunde1@example.test"], ["kunde2@example.test"]]


async def test_a_deferred_mail_is_tried_once_from_the_list_and_from_the_detail(home: Home, smtp_server: Any) -> None:
    server = smtp_server("plain")
    configure(home, server)
    busy = letter(home, 1, to="data-busy@example.test")  # 451 after every DATA
    others = [letter(home, 2), letter(home, 3)]
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("S")
        await confirm_sending(pilot, mails=3, customers=3)
        # A run hammering the 451 never ends: wait for its end, not for its workers.
        await until(pilot, lambda: "Done:" in text_of(screen, "#progress-label"))
        assert "Done: sent 2 · failed 0 · deferred 1 (tried again later)" in text_of(screen, "#progress-label")
        assert sorted(r.rcpt_tos[0] for r in server.received) == ["kunde2@example.test", "kunde3@example.test"]
        assert [statuses(home)[i] for i in [busy, *others]] == [Status.DEFERRED, Status.SENT, Status.SENT]
        with open_queue(home) as queue:
            assert queue.get(busy).attempts == 1

        detail = await open_detail(pilot, row=2)  # the deferred one, asked for by hand: tried once at once
        assert detail.item_id == busy
        await pilot.press("s")
        await until(pilot, lambda: "Done:" in text_of(screen, "#progress-label") and not screen.sending)
        assert "Done: sent 0 · failed 0 · deferred 1" in text_of(screen, "#progress-label")
        with open_queue(home) as queue:
            assert queue.get(busy).attempts == 2 and queue.get(busy).status is Status.DEFERRED


async def test_esc_stops_after_the_current_mail(home: Home, smtp_server: Any) -> None:
    server = smtp_server("plain")
    configure(home, server)
    # The second mail's reply is held by the server: Esc lands while it is on the wire, whatever the timing.
    ids = [letter(home, 1), letter(home, 2, to="Kunde 2 GmbH <slow@example.test>"), letter(home, 3)]
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("S")
        await confirm_sending(pilot, 3, 3)
        await until(pilot, lambda: len(server.received) == 2 and "sent 1" in text_of(screen, "#progress-label"))
        await pilot.press("escape")
        server.gate.set()
        await settle(pilot)
        assert len(server.received) == 2
        assert [statuses(home)[i] for i in ids] == [Status.SENT, Status.SENT, Status.PENDING]  # oldest first
        assert "stopped by the operator" in text_of(screen, "#progress-label")


async def test_a_configuration_fault_stops_the_run_and_sends_nothing(home: Home) -> None:
    configure(home)  # no smtp.host
    item = letter(home, 1)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("S")
        await settle(pilot)
        assert statuses(home)[item] is Status.PENDING
        label = text_of(screen, "#progress-label")
        assert "stopped: " in label and "smtp.host" in label
        assert not screen.sending


# --- one mail -----------------------------------------------------------------------------------------


async def open_detail(pilot: Pilot[None], row: int = 0) -> MessageScreen:
    await pilot.press("home", *["down"] * row, "enter")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, MessageScreen)
    return screen


async def test_the_detail_shows_what_goes_out_and_what_the_attachment_says(home: Home, smtp_server: Any) -> None:
    server = smtp_server("plain")
    configure(home, server)
    item = letter(home, 1, to="Jörg Ärger <unknown@example.test>")
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("s")
        await settle(pilot)
        detail = await open_detail(pilot)
        headers = text_of(detail, "#headers")
        assert "From: Buchhaltung <buchhaltung@example.test>" in headers
        assert "To: Jörg Ärger <unknown@example.test>" in headers
        assert "Subject: 2. Mahnung R-0001" in headers
        assert "Message-ID: <" in headers and "Date: " in headers
        assert "Kunde 1 GmbH" in text_of(detail, "#body")
        attachments = text_of(detail, "#attachments")
        assert "Mahnung_1.pdf" in attachments and "1 page(s)" in attachments
        assert "Beleg R-0001" in attachments and "Kundennummer K1001" in attachments
        assert "✓ Plausible: the attachment names R-0001, K1001" in text_of(detail, "#check")
        history = text_of(detail, "#history")
        assert "failed" in history and "550 5.1.1 no such user here" in history
        assert f"#{item}" in text_of(detail, "#summary")
        await pilot.press("escape")
        assert isinstance(app.screen, QueueScreen)


async def test_the_detail_flags_a_swapped_pdf(home: Home) -> None:
    configure(home)
    letter(home, 1, letter_of=2)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        detail = await open_detail(pilot)
        check = text_of(detail, "#check")
        assert "⚠ Plausibility check failed" in check
        assert "document number R-0001 is not in the attachment" in check
        assert "customer number K1001 is not in the attachment" in check


async def test_edit_recipients_is_validated(home: Home) -> None:
    configure(home)
    item = letter(home, 1)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_detail(pilot)
        await pilot.press("e")
        modal = app.screen
        assert isinstance(modal, RecipientsScreen)
        to = modal.query_one("#to", Input)
        to.value = '"Müller, Hans" <hans@example.test>; not an address'
        await pilot.pause()
        await pilot.press("enter")
        assert app.screen is modal
        assert "not an address" in text_of(modal, "#recipients-error")
        to.value = '"Müller, Hans" <hans@example.test>; buchhaltung@kunde.example'
        modal.query_one("#cc", Input).value = "chef@kunde.example"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, MessageScreen)
        with open_queue(home) as queue:
            saved = queue.get(item).recipients
        assert [(r.kind, r.address, r.name) for r in saved] == [
            ("to", "hans@example.test", "Müller, Hans"),
            ("to", "buchhaltung@kunde.example", ""),
            ("cc", "chef@kunde.example", ""),
        ]
        assert 'To: "Müller, Hans" <hans@example.test>' in text_of(app.screen, "#headers")


async def test_edit_recipients_refuses_what_send_cannot_write(home: Home) -> None:
    configure(home)
    item = letter(home, 1)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_detail(pilot)
        await pilot.press("e")
        modal = app.screen
        assert isinstance(modal, RecipientsScreen)
        to = modal.query_one("#to", Input)
        for bad, why in (
            ("jörg@kunde.example", "'ö'"),
            ("kunde.@example.test", "dot"),
            ("Kunde\u2028GmbH <kunde@example.test>", "U+2028"),
            ("kunde@" + "k" * 64 + ".example", "at most 63"),
            ("[/]@example.test", "'[/]@example.test' is not one e-mail address"),  # shown as typed, not as markup
        ):
            to.value = bad
            await pilot.pause()
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert app.screen is modal, bad
            assert why in text_of(modal, "#recipients-error"), bad
        to.value = "Kunde <kunde@müller-stahl.example>"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, MessageScreen)
        with open_queue(home) as queue:
            assert [r.address for r in queue.get(item).recipients] == ["kunde@müller-stahl.example"]
        assert "To: Kunde <kunde@xn--mller-stahl-thb.example>" in text_of(app.screen, "#headers")


async def test_the_detail_of_a_mail_that_cannot_be_written_says_why(home: Home) -> None:
    configure(home)
    with open_queue(home) as queue:  # as an older version queued it, without today's checks
        queue.enqueue(
            NewItem(
                type=LetterType.PAYMENT_ADVICE,
                level=None,
                sender="buchhaltung@example.test",
                recipients=(Recipient("to", "jörg@example.test"),),
                subject="Zahlungsavis Z-1",
                body="Guten Tag\n",
                attachments=(NewAttachment("Avis_1.pdf", make_pdf("Zahlungsavis Z-1")),),
            )
        )
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        detail = await open_detail(pilot)
        headers = text_of(detail, "#headers")
        assert "cannot be written" in headers and "before the @" in headers


async def test_hold_release_and_send_from_the_detail(home: Home, smtp_server: Any) -> None:
    server = smtp_server("plain")
    configure(home, server)
    item = letter(home, 1)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        detail = await open_detail(pilot)
        await pilot.press("h")
        assert statuses(home)[item] is Status.HELD
        assert "held" in text_of(detail, "#summary")
        await pilot.press("s")  # not offered while held
        assert app.screen is detail and not server.received
        await pilot.press("u")
        assert statuses(home)[item] is Status.PENDING
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(app.screen, QueueScreen)
        assert statuses(home)[item] is Status.SENT
        assert len(server.received) == 1


@pytest.mark.parametrize("choice", ["mark", "resend"])
async def test_an_uncertain_mail_offers_resend_or_mark_as_sent(home: Home, smtp_server: Any, choice: str) -> None:
    server = smtp_server("plain")
    configure(home, server)
    item = letter(home, 1, to="vanish@example.test")  # the server hangs up after the data, without a reply
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("s")
        await settle(pilot)
        assert statuses(home)[item] is Status.UNCERTAIN
        detail = await open_detail(pilot)
        assert "It may have arrived" in text_of(detail, "#summary")
        if choice == "mark":
            await pilot.press("m")
            await answer(pilot, "sent")
            assert statuses(home)[item] is Status.SENT
            assert len(server.received) == 1
        else:
            with open_queue(home) as queue:
                queue.set_recipients(item, [Recipient("to", "kunde1@example.test")])
            await until(pilot, lambda: "kunde1@example.test" in text_of(detail, "#headers"))  # it follows changes
            await pilot.press("r")
            await answer(pilot, "resend")
            await settle(pilot)
            assert statuses(home)[item] is Status.SENT
            assert len(server.received) == 2  # the honest price of resending


async def test_quitting_while_sending_asks_first(home: Home, smtp_server: Any, tmp_path: Path) -> None:
    server = smtp_server("plain")
    configure(home, server)
    ids = [letter(home, 1), letter(home, 2, to="Kunde 2 GmbH <slow@example.test>"), letter(home, 3)]
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("S")
        await confirm_sending(pilot, 3, 3)
        await until(pilot, lambda: len(server.received) == 2 and "sent 1" in text_of(screen, "#progress-label"))
        await pilot.press("q")
        await answer(pilot, "quit")
        server.gate.set()  # the mail on the wire is answered; nothing after it starts
        await settle(pilot)
        assert not app.is_running
    assert len(server.received) == 2
    assert [statuses(home)[i] for i in ids] == [Status.SENT, Status.SENT, Status.PENDING]


# --- looks ----------------------------------------------------------------------------------------------


@pytest.fixture
def utc() -> Iterator[None]:
    """Times shown in UTC; afterwards the process's own time zone again, for the tests it runs next."""
    import time

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "UTC")
        time.tzset()
        yield
    time.tzset()


def a_mixed_queue(home: Home) -> list[int]:
    configure(home)
    ids = [letter(home, n, fixed=True) for n in range(1, 8)]
    ids.append(letter(home, 8, letter_of=9, fixed=True))
    with open_queue(home, clock=lambda: START + 10 * 60) as queue:  # sent at 10:10, all at once
        queue.hold([ids[1]])
        for item_id, record in (
            (ids[2], lambda i: queue.record_failed(i, "550 5.1.1 no such user here")),
            (ids[3], lambda i: queue.record_uncertain(i, "connection lost after the data was sent")),
            (ids[0], lambda i: queue.record_sent(i, "250 2.0.0 Ok")),
        ):
            assert queue.claim([item_id]) is not None
            record(item_id)
    return ids


async def checked(pilot: Pilot[None]) -> None:
    screen = queue_screen(pilot.app)  # type: ignore[arg-type]
    await settle(pilot)
    await until(pilot, lambda: all(r.plausible is not None for r in screen.rows))


def test_queue_snapshot(snap_compare: Any, home: Home) -> None:
    a_mixed_queue(home)

    async def run_before(pilot: Pilot[None]) -> None:
        await checked(pilot)
        await pilot.press("down", "space")

    assert snap_compare(OposApp(home), terminal_size=(80, 24), run_before=run_before)


def test_detail_snapshot(snap_compare: Any, home: Home, utc: None) -> None:
    a_mixed_queue(home)

    async def run_before(pilot: Pilot[None]) -> None:
        await checked(pilot)
        await pilot.press("home", "enter")  # the swapped PDF
        await settle(pilot)

    assert snap_compare(OposApp(home), terminal_size=(80, 24), run_before=run_before)


def test_sending_progress_snapshot(snap_compare: Any, home: Home, smtp_server: Any) -> None:
    server = smtp_server("plain")
    configure(home, server)
    for n in range(1, 4):
        letter(home, n, fixed=True)
    letter(home, 4, to="unknown@example.test", fixed=True)

    async def run_before(pilot: Pilot[None]) -> None:
        await checked(pilot)
        await pilot.press("S")
        await confirm_sending(pilot, 4, 4)
        await settle(pilot)
        await pilot.press("t")
        await pilot.pause()

    assert snap_compare(OposApp(home), terminal_size=(80, 24), run_before=run_before)


def test_sending_in_progress_snapshot(
    snap_compare: Any, home: Home, smtp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run caught in the middle: two mails out, the third held by the server, one left; no rate or ETA yet."""
    server = smtp_server("plain")
    # When the snapshot is taken and the app closes, let the server answer, so the run can end.
    close_screen = QueueScreen.on_unmount

    def release_then_close(screen: QueueScreen) -> None:
        server.gate.set()
        close_screen(screen)

    monkeypatch.setattr(QueueScreen, "on_unmount", release_then_close)
    configure(home, server)
    letter(home, 1, fixed=True)
    letter(home, 2, fixed=True)
    letter(home, 3, to="Kunde 3 GmbH <slow@example.test>", fixed=True)
    letter(home, 4, fixed=True)
    settings.set_value(home, "smtp.timeout", "120")  # the held reply must not time out before the snapshot

    async def run_before(pilot: Pilot[None]) -> None:
        screen = queue_screen(pilot.app)  # type: ignore[arg-type]
        await checked(pilot)
        await pilot.press("S")
        await confirm_sending(pilot, 4, 4)

        def label() -> str:
            return text_of(screen, "#progress-label")

        try:
            await until(pilot, lambda: len(server.received) == 3 and "sent 2" in label())
        except AssertionError:
            raise AssertionError(f"{len(server.received)} received; label: {label()!r}") from None
        # Two mails are no measure of a rate: none is shown yet, rather than a wild one.
        assert label() == "sent 2 · failed 0 · left 2 · Esc stop · t log"
        await pilot.press("t")
        await pilot.pause()

    assert snap_compare(OposApp(home), terminal_size=(80, 24), run_before=run_before)


async def test_an_action_goes_on_when_another_process_deleted_part_of_the_selection(home: Home) -> None:
    configure(home)
    first, second = letter(home, 1), letter(home, 2)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("a")
        with open_queue(home) as other:
            other.delete([second])
        await pilot.press("h")
        await settle(pilot)
        assert statuses(home) == {first: Status.HELD}
        assert screen.selected == set()
        assert shown_ids(screen) == [first]


async def test_a_broken_queue_file_is_reported_plainly(home: Home) -> None:
    home.ensure()
    home.queue_db.write_text("not a database " * 20)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
    assert app.return_code == 1
    assert not app.is_running


async def test_an_empty_queue_says_how_to_fill_it(home: Home) -> None:
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await until(pilot, lambda: screen.loaded)  # until the first read is back, it says it is reading
        hint = text_of(screen, "#empty-hint")
        assert "opos-tui enqueue" in hint
        assert str(home.spool_dir / "inbox") in hint
        letter(home, 1)
        await until(pilot, lambda: screen.total == 1)
        assert not screen.query_one("#empty-hint").display
        await pilot.press("3")  # failed: none
        await settle(pilot)
        assert "Nothing matches" in text_of(screen, "#empty-hint")
