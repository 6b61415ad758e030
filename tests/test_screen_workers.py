"""A lock that another process holds never freezes a screen: the screens read and write the queue, config.toml and
the secret store in workers, show that they wait, and take keys meanwhile. The queue list follows another
process's changes by itself, on PostgreSQL woken by the server (LISTEN/NOTIFY).

Real locks: a second SQLite connection in ``BEGIN IMMEDIATE``, a PostgreSQL ``LOCK TABLE`` in an open
transaction, config.toml's own lock file held with ``flock``. Each is let go by the test; should a screen freeze
on it (its event loop waiting for the lock), a timer lets go after :data:`SAFETY_SECONDS` so that the test fails
instead of hanging.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import tomli_w
from textual.pilot import Pilot
from textual.widgets import Input

from opos_tui.app import OposApp
from opos_tui.screens.connection_test import ConnectionTestPanel
from opos_tui.screens.message import MessageScreen
from opos_tui.screens.queue import QueueScreen
from opos_tui.screens.settings import SettingsScreen, widget_id
from opos_tui.screens.widgets import KeysScreen
from opos_tui.services import secrets, settings
from opos_tui.services.home import Home
from opos_tui.services.queue import Status, open_queue
from tests.conftest import run_cli
from tests.keys import glance, press_now
from tests.pdfs import write_letter
from tests.servers.smtp import PASSWORD, USER
from tests.test_queue_screen import SENDER, configure, letter, many, shown_ids, statuses, text_of, until

SAFETY_SECONDS = 60.0
"""When a lock is let go even though the test did not: only a screen that froze on it takes that long."""


class Held:
    """A lock held by someone else until :meth:`release` (or the safety timer, which marks it ``expired``)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release = release
        self._once = threading.Lock()
        self._released = False
        self.expired = False
        self._timer = threading.Timer(SAFETY_SECONDS, self._expire)
        self._timer.start()

    def _expire(self) -> None:
        self.expired = True
        self.release()

    def release(self) -> None:
        with self._once:
            if not self._released:
                self._released = True
                self._timer.cancel()
                self._release()


@contextmanager
def holding(let_go: Callable[[], None]) -> Iterator[Held]:
    """A lock held until the test releases it, or the safety timer does; released at the end in any case."""
    held = Held(let_go)
    try:
        yield held
    finally:
        held.release()


@contextmanager
def sqlite_write_lock(home: Home) -> Iterator[Held]:
    """Another connection holds the queue file's write lock (BEGIN IMMEDIATE), as a sender's transaction does."""
    db = sqlite3.connect(home.queue_db, isolation_level=None, check_same_thread=False)
    db.execute("BEGIN IMMEDIATE")

    def let_go() -> None:
        db.execute("ROLLBACK")
        db.close()

    with holding(let_go) as held:
        yield held


@contextmanager
def postgresql_table_lock(url: str) -> Iterator[Held]:
    """Another connection holds the items table locked against every reader, in a transaction left open."""
    db = psycopg.connect(url)
    db.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")

    def let_go() -> None:
        db.rollback()
        db.close()

    with holding(let_go) as held:
        yield held


@contextmanager
def config_lock(home: Home) -> Iterator[Held]:
    """Another program holds config.toml's lock (``config set`` in the middle of its read-modify-write)."""
    fd = os.open(settings.lock_file(home), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    with holding(lambda: os.close(fd)) as held:
        yield held


async def meanwhile(pilot: Pilot[None], condition: Callable[[], bool]) -> None:
    """Wait until ``condition`` holds while a lock keeps a worker waiting (so, not for the workers)."""
    for _ in range(int(SAFETY_SECONDS / 0.05)):
        if condition():
            return
        await glance(pilot, 0.05)
    raise AssertionError("the screen did not show it")


def use_postgresql(home: Home, url: str) -> None:
    home.ensure()
    settings.save(home, settings.check({**SENDER, "queue": {"url": url}}))


async def test_a_locked_queue_keeps_the_detail_usable_and_a_second_press_does_nothing(home: Home) -> None:
    configure(home)
    item = letter(home, 1)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter")
        detail = app.screen
        assert isinstance(detail, MessageScreen)
        with sqlite_write_lock(home) as lock:
            await press_now(pilot, "h", "h")  # the second while the first waits for the lock
            await press_now(pilot, "question_mark")
            assert isinstance(app.screen, KeysScreen)  # keys work meanwhile
            await press_now(pilot, "escape")
            assert app.screen is detail and detail.working
            assert statuses(home)[item] is Status.PENDING
        await pilot.pause()  # until the hold is done
        assert not lock.expired
        with open_queue(home) as queue:
            assert queue.get(item).status is Status.HELD
            assert [a.outcome for a in queue.get(item).history] == ["held"]
        told = [str(n.message) for n in app._notifications]
        assert told.count("Held.") == 1 and not any("Not changed" in t for t in told)
        assert "held" in text_of(detail, "#summary")


async def test_a_locked_queue_keeps_the_list_usable_and_one_hold_goes_once(home: Home) -> None:
    configure(home)
    first, second = letter(home, 1), letter(home, 2)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await pilot.pause()
        with sqlite_write_lock(home) as lock:
            await press_now(pilot, "h", "h", "down")
            assert screen.cursor_id == first  # the cursor moves while the hold waits
            await press_now(pilot, "question_mark")
            assert isinstance(app.screen, KeysScreen)
            await press_now(pilot, "escape")
            assert screen.working
        await until(pilot, lambda: "held 1" in text_of(screen, "#counts"))
        assert not lock.expired
        assert statuses(home) == {first: Status.PENDING, second: Status.HELD}
        told = [str(n.message) for n in app._notifications]
        assert told.count("1 held") == 1 and not any("not changed" in t for t in told)


async def test_a_locked_postgresql_queue_shows_the_list_once_it_is_free(home: Home, postgresql_url: str) -> None:
    use_postgresql(home, postgresql_url)
    ids = many(home, 30)
    with postgresql_table_lock(postgresql_url) as lock:
        app = OposApp(home)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, QueueScreen)
            await glance(pilot)
            assert "Reading the queue" in text_of(screen, "#empty-hint")  # painted before the read is back
            await meanwhile(pilot, lambda: "waiting for the queue" in text_of(screen, "#position"))
            await press_now(pilot, "question_mark")
            assert isinstance(app.screen, KeysScreen)
            await press_now(pilot, "escape")
            assert app.screen is screen and screen.table.row_count == 0
            lock.release()
            await until(pilot, lambda: screen.table.row_count > 0, seconds=30)
            assert not lock.expired
            assert screen.cursor_id == ids[-1]
            assert "waiting" not in text_of(screen, "#position")
            await pilot.press("down")
            assert screen.cursor_id == ids[-2]


async def test_the_list_shows_what_another_process_queued_on_postgresql(
    home: Home, postgresql_url: str, tmp_path: Path
) -> None:
    use_postgresql(home, postgresql_url)
    first = letter(home, 1)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await pilot.pause()
        assert shown_ids(screen) == [first]
        pdf = write_letter(tmp_path / "Mahnung_2.pdf", "R-0002", "K1002", "Kunde 2 GmbH")
        queued = run_cli(
            "enqueue", "--type", "dunning", "--level", "1", "--to", "kunde2@example.test", "--attach", str(pdf),
            "--var", "customer_name=Kunde 2 GmbH", "--var", "customer_number=K1002", "--var", "document_number=R-0002",
        )  # fmt: skip
        assert queued.code == 0, queued.err
        await until(pilot, lambda: len(shown_ids(screen)) == 2, seconds=30)  # no key pressed
        assert shown_ids(screen)[1] == first
        assert "pending 2" in text_of(screen, "#counts")


async def test_saving_waits_for_a_config_lock_held_elsewhere_without_freezing_the_form(home: Home) -> None:
    settings.set_value(home, "smtp.host", "old.example.com")
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        form = app.screen
        assert isinstance(form, SettingsScreen)
        await pilot.pause()
        host = form.query_one("#smtp-host", Input)
        host.focus()
        host.value = "mail.example.com"
        await pilot.pause()
        with config_lock(home) as lock:
            await press_now(pilot, "ctrl+s", "ctrl+s")  # the second while the first waits for the lock
            assert form.working
            await press_now(pilot, "tab")  # keys work meanwhile
            assert form.focused is not host
            assert "Saved" not in text_of(form, "#form-status")
        await pilot.pause()  # until the save is done
        assert not lock.expired
        assert "Saved to" in text_of(form, "#form-status")
        assert not form.dirty
    assert settings.load(home).smtp.host == "mail.example.com"


async def test_a_save_asked_for_while_config_toml_is_being_checked_is_made_once_it_is(home: Home) -> None:
    """The form shows config.toml's values at once and checks them against the settings model in a worker once
    it is painted. While that check waits (config.toml a FIFO: reading it waits until someone writes), the form
    takes keys; Ctrl+S pressed meanwhile saves what was typed once the check is back."""
    settings.save(home, settings.validate({"smtp": {"host": "mail.example.com"}}))
    content = home.config_file.read_text("utf-8")
    home.config_file.unlink()
    os.mkfifo(home.config_file)

    def answer(then_plain: bool) -> None:
        with home.config_file.open("w") as fifo:  # once a read is waiting for it
            if then_plain:  # reads after this one (saving's) find a plain file
                answered = home.config_file.with_name("answered.toml")
                answered.write_text(content)
                answered.replace(home.config_file)
            fifo.write(content)

    threading.Thread(target=answer, args=(False,), daemon=True).start()  # the first read, as the form is built
    waiting = Held(lambda: threading.Thread(target=answer, args=(True,), daemon=True).start())  # the check's
    try:
        app = OposApp(home, start="settings")
        async with app.run_test(size=(80, 24)) as pilot:
            form = app.screen
            assert isinstance(form, SettingsScreen)
            await glance(pilot)
            host = form.query_one("#smtp-host", Input)
            assert host.value == "mail.example.com"
            host.focus()
            await press_now(pilot, "end", *".lan", "ctrl+s")
            assert not form.checked and form.working
            assert stat.S_ISFIFO(home.config_file.stat().st_mode)  # nothing saved yet
            waiting.release()
            await pilot.pause()  # until the check is back and the save is done
            assert not waiting.expired
            assert "Saved to" in text_of(form, "#form-status")
            assert not form.dirty
        assert settings.load(home).smtp.host == "mail.example.com.lan"
    finally:
        waiting.release()


async def test_a_secret_store_that_keeps_the_form_waiting_does_not_freeze_it(home: Home) -> None:
    """A secret file that is a FIFO: reading it waits until someone writes, as a keyring waits for its unlock
    dialog. The form opens at once, takes keys, and shows what the store holds once it answers."""
    home.ensure()
    os.mkfifo(home.secrets_file)

    def answer() -> None:
        content = tomli_w.dumps({"secrets": {secrets.PASSWORD: "geheim"}})
        with home.secrets_file.open("w") as fifo:  # once the form's first lookup is waiting for it
            answered = home.secrets_file.with_name("answered.toml")
            answered.write_text(content)
            answered.replace(home.secrets_file)  # lookups after this one read a plain file
            fifo.write(content)

    waiting = Held(lambda: threading.Thread(target=answer, daemon=True).start())
    try:
        app = OposApp(home, start="settings")
        async with app.run_test(size=(80, 24)) as pilot:
            form = app.screen
            assert isinstance(form, SettingsScreen)
            await glance(pilot)
            assert "Opening the secret store" in text_of(form, "#secret-store")
            await press_now(pilot, "tab")  # keys work meanwhile
            assert form.working
            waiting.release()
            await pilot.pause()  # until the store answered
            assert not waiting.expired
            assert "Secrets are kept in:" in text_of(form, "#secret-store")
            shown = form.query_one(f"#{widget_id(secrets.PASSWORD)}", Input).placeholder
            assert shown == "stored; leave empty to keep it"
    finally:
        waiting.release()


async def test_a_connection_test_waiting_for_the_secret_store_does_not_freeze_the_form(
    home: Home, smtp_server: Any
) -> None:
    """Ctrl+T reads the password from the secret store: while the store keeps it waiting (a FIFO, as a keyring
    waiting for its unlock dialog), the form takes keys; once it answers, the test logs in with it."""
    server = smtp_server("starttls")
    settings.save(home, server.settings(auth__method="password", auth__profile=USER))
    secrets.open_store(home).set(secrets.PASSWORD, PASSWORD)
    content = home.secrets_file.read_text("utf-8")
    app = OposApp(home, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        form = app.screen
        assert isinstance(form, SettingsScreen)
        await pilot.pause()  # the form has read the store once
        home.secrets_file.unlink()
        os.mkfifo(home.secrets_file)

        def answer() -> None:
            with home.secrets_file.open("w") as fifo:  # once the test's lookup is waiting for it
                answered = home.secrets_file.with_name("answered.toml")
                answered.write_text(content)
                answered.replace(home.secrets_file)
                fifo.write(content)

        waiting = Held(lambda: threading.Thread(target=answer, daemon=True).start())
        try:
            focused = app.focused
            await press_now(pilot, "ctrl+t", "tab")  # keys work while the test waits for the store
            assert app.focused is not focused
            assert not waiting.expired
            waiting.release()
            panel = form.query_one(ConnectionTestPanel)
            await until(pilot, lambda: panel.result is not None)
            assert not waiting.expired
            assert panel.result is not None and panel.result.ok
            assert server.logins == [USER]
        finally:
            waiting.release()
