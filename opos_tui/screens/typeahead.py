"""Typed-ahead keys go to the widget that has focus when they are processed, in the order they were typed.

Textual hands each key to the widget focused at the moment the key arrives and puts it in that widget's
message queue. What the key does happens later, as the widget and its containers work through their
queues: Tab moves focus only once it has bubbled up to the app's bindings, a choice shows its fields only
once the form has heard of it. Keys that arrive in one burst (a paste, a laggy SSH link) were therefore all
queued for the widget focused before the burst: ``buchhaltung<Tab>geheim123`` put the password, in clear
text, into the user-name field.

``TypeAheadApp`` holds each key back until what the keys before it set in motion has been processed, so
every key finds focus, the visible fields and the focus order as they would be if it had been typed slowly.
Plain characters typed into a text field cannot move focus: the ones after them need not wait, so a burst
of text costs no more than before.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from textual import events
from textual.app import App, ReturnType
from textual.message_pump import MessagePump
from textual.widgets import Input

# Deliver held keys anyway when the app stays this busy: late keys are better than lost ones.
SETTLE_LIMIT_SECONDS = 1.0

TypedEvent = events.Key | events.Paste


class TypeAheadApp(App[ReturnType]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: deque[TypedEvent] = deque()
        self._settling: asyncio.Task[None] | None = None
        # True while everything delivered since the app was last seen idle was text typed into a text field.
        self._only_text_in_flight = True

    @property
    def holding_keys(self) -> bool:
        """Whether keys that arrived are still held back, waiting for earlier ones to take effect."""
        return bool(self._held)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, TypedEvent) and not event.is_forwarded:
            self._held.append(event)
            await self._deliver_held()
            return
        await super().on_event(event)

    async def _deliver_held(self) -> None:
        while self._held and self._settling is None:
            if not self._only_text_in_flight:
                if self._busy_pumps():
                    self._settling = asyncio.create_task(self._settle())
                    return
                self._only_text_in_flight = True
            event = self._held.popleft()
            just_text = isinstance(self.focused, Input) and (isinstance(event, events.Paste) or event.is_printable)
            self._only_text_in_flight = self._only_text_in_flight and just_text
            await super().on_event(event)

    def _busy_pumps(self) -> bool:
        """Whether the app or any widget of its screens still has messages to process."""
        pumps: list[MessagePump] = [self]
        for screen in self.screen_stack:
            pumps.extend(screen.walk_children(with_self=True))
        return any(pump.message_queue_size for pump in pumps)

    async def _settle(self) -> None:
        try:
            async with asyncio.timeout(SETTLE_LIMIT_SECONDS):
                while self._busy_pumps():
                    await asyncio.sleep(0)  # let them work
        except TimeoutError:
            pass
        finally:
            self._settling = None
            self.call_later(self._deliver_held)
