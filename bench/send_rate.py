"""Send rate of the queue and dispatcher against Postfix's ``smtp-sink``, as a ratio to aiosmtplib sending the
very same message bytes in one plain loop over one connection (the floor of what any sender on aiosmtplib
can do). The difference is the price of durability: two committed, fsynced transactions per mail (claimed
as ``sending`` before the data goes out, ``sent`` after the 250), building each mail from the queue's copy.

Needs ``smtp-sink`` (Debian package ``postfix``; the Postfix daemon need not run). Talks to 127.0.0.1 only.
Run: ``python bench/send_rate.py [--mails 500] [--kb 60]``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

from opos_tui.services import secrets
from opos_tui.services.compose import LetterRequest, build_message, prepare
from opos_tui.services.dispatcher import Dispatcher
from opos_tui.services.home import Home
from opos_tui.services.queue import Status, open_queue
from opos_tui.services.settings import Settings
from opos_tui.services.transports.registry import build_transport

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(sink).exists():
        sys.exit("smtp-sink not found: apt-get install postfix (the daemon need not run)")
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen([sink, *user, f"{HOST}:{port}", "256"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return process
        time.sleep(0.05)
    process.kill()
    sys.exit("smtp-sink did not start")


def settings_for(port: int, connections: int) -> Settings:
    return Settings.model_validate(
        {
            "smtp": {"host": HOST, "port": port, "security": "None", "connections": connections},
            "sender": {"address": "buchhaltung@mueller.example", "name": "Müller GmbH"},
        }
    )


def fill(home: Home, current: Settings, mails: int, pdf: Path) -> None:
    with open_queue(home) as queue:
        queue.enqueue_many(
            prepare(
                current,
                LetterRequest(
                    type="dunning",
                    level=1,
                    to=[f"Kundin {n} <kunde{n}@example.com>"],
                    attachments=[pdf],
                    vars={"customer_name": f"Firma {n}", "document_number": f"M-{n:06d}"},
                ),
            )
            for n in range(mails)
        )


async def raw_loop(port: int, home: Home) -> tuple[float, int]:
    """The baseline: the same bytes (as the queue would send them), one connection, one loop."""
    with open_queue(home) as queue:
        messages = []
        for item_id in queue.ids():
            item = queue.get(item_id)
            messages.append((item.envelope_recipients, build_message(item, queue.attachments(item_id))))
    smtp = aiosmtplib.SMTP(hostname=HOST, port=port, local_hostname="bench.local", start_tls=False)
    start = time.perf_counter()
    await smtp.connect()
    for recipients, data in messages:
        await smtp.sendmail("buchhaltung@mueller.example", list(recipients), data)
    await smtp.quit()
    return time.perf_counter() - start, len(messages)


async def dispatched(home: Home, current: Settings) -> tuple[float, int]:
    store = secrets.open_store(home)
    with open_queue(home) as queue:
        engine = Dispatcher(
            queue, lambda: build_transport(current, store), connections=current.smtp.connections, max_per_minute=0
        )
        # The attachment is random bytes, not a letter: the items are confirmed as an operator would, so that
        # the plausibility check (one PDF read per item, stored) does not hold them back.
        confirmed = queue.ids()
        start = time.perf_counter()
        result = await engine.run(skip_check=confirmed)
        elapsed = time.perf_counter() - start
        assert queue.counts()[Status.SENT] == len(result.sent)
    return elapsed, len(result.sent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=500)
    parser.add_argument("--kb", type=int, default=60, help="size of the PDF attached to each mail")
    args = parser.parse_args()
    os.environ["OPOS_TUI_SECRETS"] = "file"
    port = free_port()
    sink = start_sink(port)
    try:
        with tempfile.TemporaryDirectory() as folder:
            pdf = Path(folder) / "Mahnung.pdf"
            pdf.write_bytes(b"%PDF-1.4\n" + os.urandom(args.kb * 1024))
            rows = []
            base_home = Home(Path(folder) / "raw")
            fill(base_home, settings_for(port, 1), args.mails, pdf)
            base, count = asyncio.run(raw_loop(port, base_home))
            rows.append(("aiosmtplib raw loop, 1 connection", base, count))
            for connections in (1, 3):
                home = Home(Path(folder) / f"queue{connections}")
                current = settings_for(port, connections)
                fill(home, current, args.mails, pdf)
                elapsed, sent = asyncio.run(dispatched(home, current))
                rows.append((f"queue + dispatcher, {connections} connection(s)", elapsed, sent))
    finally:
        sink.terminate()
        sink.wait()
    print(f"{args.mails} mails of ~{args.kb} KB to smtp-sink on {HOST}:{port}")
    print(f"{'sender':<38} {'mails/s':>9} {'time':>9} {'vs raw':>8}")
    for name, seconds, count in rows:
        print(f"{name:<38} {count / seconds:9.0f} {seconds:8.2f}s {base / seconds:7.2f}x")


if __name__ == "__main__":
    main()
