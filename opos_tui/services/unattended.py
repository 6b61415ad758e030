"""``opos-tui run``: unattended operation. Import the spool and send what is due, again every interval.

Each round reads the settings anew (an admin's change applies from the next round), imports the spool
inbox, and sends every pending mail and every deferred one whose backoff is over, in the same send run as
``send`` (``services.send_run``). SIGTERM or SIGINT (Ctrl+C) stops it after the mails on the wire: nothing is left
``sending``, nothing unsent is touched. A failing round (login refused, server down, a broken config.toml)
is logged and tried again next interval; the mails stay pending.

One ``run`` per home at a time: the lock is an flock'd ``run.lock`` in the home (released by the operating
system when the process ends, however it ends). ``send`` commands may still run beside it: the queue gives
each mail to one sender only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from opos_tui.services import settings, spool
from opos_tui.services.dispatcher import Outcome, Progress, RunResult
from opos_tui.services.errors import OposError
from opos_tui.services.files import make_file
from opos_tui.services.home import Home
from opos_tui.services.logs import close_log, open_log
from opos_tui.services.queue import open_queue
from opos_tui.services.send_run import RunEvent, SendRun

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


class AlreadyRunning(OposError):
    def __init__(self, home: Home, pid: str) -> None:
        super().__init__(
            f"opos-tui run is already running for {home.root} (pid {pid}); one at a time per home",
            f"opos-tui run läuft bereits für {home.root} (PID {pid}); nur einer je Installation",
        )


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


@contextlib.contextmanager
def run_lock(home: Home) -> Iterator[None]:
    """Hold ``run.lock`` in the home, with this process's id in it; AlreadyRunning if another holds it."""
    home.ensure()
    make_file(home.root / "run.lock")
    fd = os.open(home.root / "run.lock", os.O_RDWR)
    try:
        try:
            _try_lock(fd)
        except OSError:
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                pid = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            except OSError:
                pid = "?"
            raise AlreadyRunning(home, pid) from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass
class Round:
    imported: int = 0
    rejected: int = 0
    result: RunResult = field(default_factory=RunResult)
    error: str | None = None

    @property
    def busy(self) -> bool:
        r = self.result
        return bool(self.imported or self.rejected or r.sent or r.deferred or r.failed or r.uncertain or self.error)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.rejected and self.result.all_went


class Runner:
    def __init__(self, home: Home, log: logging.Logger) -> None:
        self.home = home
        self.log = log
        self.stop = asyncio.Event()
        self.stopped_by = ""
        self.sending: SendRun | None = None

    def request_stop(self, why: str) -> None:
        """Stop after the mails on the wire (a signal handler calls this)."""
        if not self.stop.is_set():
            self.log.info("stop requested (%s): finishing the mails on the wire", why)
        self.stopped_by = self.stopped_by or why
        self.stop.set()
        if self.sending is not None:
            self.sending.stop()

    def on_event(self, event: RunEvent) -> None:
        if not isinstance(event, Progress) or event.outcome is Outcome.SENDING:
            return
        if event.outcome is Outcome.STOPPED:
            self.log.error("sending stopped: %s", event.reply)
            return
        level = logging.INFO if event.outcome is Outcome.SENT else logging.WARNING
        self.log.log(level, "#%s %s to %s: %s", event.item_id, event.outcome.value, event.recipient, event.reply)

    async def round(self) -> Round:
        done = Round()
        try:
            current = settings.load(self.home)
            with open_queue(self.home) as queue:
                report = spool.import_spool(current, queue, spool.default_inbox(self.home))
                for imported in report.imported:
                    if not imported.duplicate:
                        self.log.info("imported %s as #%s", imported.manifest, imported.item_id)
                for rejected in report.rejected:
                    self.log.warning("rejected %s: %s", rejected.manifest, rejected.reason)
                done.imported, done.rejected = len(report.imported), len(report.rejected)
                if self.stop.is_set():
                    return done
                self.sending = SendRun(queue, self.home, settings=current, on_event=self.on_event)
                try:
                    done.result = await self.sending.run()
                finally:
                    self.sending = None
        except OposError as exc:
            done.error = exc.en
            self.log.error("round failed: %s", exc.en)
        return done

    def summary(self, done: Round) -> None:
        r = done.result
        line = (
            f"round: {done.imported} imported, {done.rejected} rejected; {len(r.sent)} sent, {len(r.deferred)}"
            f" deferred, {len(r.failed)} failed, {len(r.uncertain)} uncertain"
        )
        if r.stopped is not None:
            line += f"; stopped: {r.stopped.en}"
        self.log.log(logging.INFO if done.ok else logging.WARNING, line)

    async def loop(self, interval: float, once: bool) -> int:
        self._handle_signals()
        self.log.info("run started (pid %s, %s)", os.getpid(), "once" if once else f"every {interval:g} s")
        while True:
            done = await self.round()
            if once or done.busy:
                self.summary(done)
            if once:
                self.log.info("run finished")
                return EXIT_OK if done.ok else EXIT_FAILED
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=interval)
            if self.stop.is_set():
                self.log.info("run stopped (%s)", self.stopped_by)
                return EXIT_INTERRUPTED if self.stopped_by == "SIGINT" else EXIT_OK

    def _handle_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop, sig.name)
            except NotImplementedError:  # Windows: no loop signal handlers
                signal.signal(
                    sig,
                    lambda number, _frame: loop.call_soon_threadsafe(self.request_stop, signal.Signals(number).name),
                )


async def run_unattended(home: Home, interval: float, once: bool = False) -> int:
    """``opos-tui run``: the exit code (0 stopped by SIGTERM or, with ``once``, all went; 1 otherwise; 130
    stopped by Ctrl+C). AlreadyRunning if another run holds this home."""
    with run_lock(home):
        log = open_log(home)
        try:
            return await Runner(home, log).loop(interval, once)
        finally:
            close_log(log)
