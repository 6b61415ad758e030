"""How a screen follows the queue that other processes change, without the event loop ever waiting for it.

A screen never reads or writes the queue on its event loop: another operator's transaction may hold a lock
for seconds, and the screen must keep taking keys meanwhile. It reads in workers and follows changes with a
:class:`QueueFollower`: a thread of its own that waits in :meth:`~opos_tui.services.queue.QueueEngine.wait_for_change`
(SQLite looks at its change counter now and then; PostgreSQL is woken by the server through LISTEN/NOTIFY) and
tells the screen when something changed. It is not a Textual worker: it lasts as long as its screen, and
nothing (a test waiting for the workers, the app quitting) waits for it to end.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message
from textual.message_pump import MessagePump

if TYPE_CHECKING:  # the forms use tell() without the queue
    from opos_tui.services.queue import Queue, QueueError

FOLLOW_SECONDS = 1.0
"""How long one wait for a change lasts: how soon the thread ends after its screen let go of it."""


def tell(node: MessagePump, message: Message) -> None:
    """Post ``message`` to ``node`` from a thread; nothing if the app has quit meanwhile."""
    with contextlib.suppress(RuntimeError):  # the app's event loop is closed: nobody is left to tell
        node.post_message(message)


class QueueChanged(Message):
    """Another process (or this one) changed the queue."""


@dataclass
class QueueFailed(Message):
    """The queue cannot be followed or read any more: its file was deleted or replaced, its server is gone."""

    error: QueueError


class QueueFollower:
    """Waits, in a daemon thread with a queue handle of its own, for the queue to move past version ``seen``:
    posts :class:`QueueChanged` to ``screen`` each time it did, and :class:`QueueFailed` once the queue cannot
    be used any more, then ends. :meth:`stop` ends it within :data:`FOLLOW_SECONDS` without waiting for it."""

    def __init__(self, screen: MessagePump, queue: Queue, seen: int) -> None:
        self._stopped = threading.Event()
        self._screen = screen
        self._thread = threading.Thread(target=self._follow, args=(queue, seen), name="queue-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _follow(self, queue: Queue, seen: int) -> None:
        from opos_tui.services.queue import QueueError

        try:
            with queue.another() as mine:
                while not self._stopped.is_set():
                    if mine.wait_for_change(seen, FOLLOW_SECONDS):
                        seen = mine.version()
                        if not self._stopped.is_set():
                            tell(self._screen, QueueChanged())
        except QueueError as exc:
            if not self._stopped.is_set():
                tell(self._screen, QueueFailed(exc))


def close_later(queue: Queue) -> None:
    """Close a handle in a thread: a worker may still be reading through it (waiting for a lock), and closing
    waits for that read."""
    threading.Thread(target=queue.close, name="queue-close", daemon=True).start()
