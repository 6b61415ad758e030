"""A run asked to send named items tries each of them once, even when one is deferred (4xx)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from opos_tui.services.compose import LetterRequest, prepare
from opos_tui.services.dispatcher import Dispatcher
from opos_tui.services.home import Home
from opos_tui.services.queue import Status, open_queue
from opos_tui.services.secrets import open_store
from opos_tui.services.transports.registry import build_transport
from tests.pdfs import write_letter
from tests.servers.smtp import StartServer


async def test_a_named_item_deferred_by_451_is_not_tried_again_in_the_same_run(
    home: Home, smtp_server: StartServer, tmp_path: Path
) -> None:
    """The queue screen's "send all" names the pending items; a greylisting server answered one of them 451,
    and the run claimed it again at once, over and over, never ending."""
    server = smtp_server("plain")
    current = server.settings()
    ids = []
    with open_queue(home) as queue:
        for n, to in enumerate(("busy@kunde.example", "ok@kunde.example"), start=1):
            pdf = write_letter(tmp_path / f"M{n}.pdf", f"M-{n}")
            request = LetterRequest(
                type="dunning", to=[to], attachments=[pdf], vars={"customer_name": "K", "document_number": f"M-{n}"}
            )
            ids.append(queue.enqueue(prepare(current, request)).id)
        engine = Dispatcher(queue, lambda: build_transport(current, open_store(home)))
        result = await asyncio.wait_for(engine.run(ids), timeout=60)  # without the fix: never returns
        assert (result.deferred, result.sent, result.failed) == ([ids[0]], [ids[1]], [])
        item = queue.get(ids[0])
        assert (item.status, item.attempts) == (Status.DEFERRED, 1)
