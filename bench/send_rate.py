"""Send rate of ``opos-tui send`` against Postfix's ``smtp-sink``, beside a bare aiosmtplib loop sending the very
same message bytes and Postfix's own ``smtp-source``, for 1 and 4 connections, all in one run.

The bare loop is the floor of what any sender on aiosmtplib can do (no queue, no durability: pre-rendered bytes
in a loop; for 4 connections, 4 such loops at once). ``smtp-source`` is Postfix's C load generator, sending
messages of the same size. ``opos-tui send --all`` is the real command, one process (its start included), with
``smtp.connections`` set: each mail claimed as ``sending`` in a committed transaction before its data goes out
(the transaction that also records the connection's last mail) and recorded after the server's reply, its bytes
the ones written when it was queued. Each of its runs sends from a fresh copy of one queue, flushed to disk
first, as a queue that opos-tui wrote is (see ``flush``).

Needs ``smtp-sink`` (Debian package ``postfix``; the Postfix daemon need not run); ``smtp-source`` is skipped
with a note where it is missing. Talks to 127.0.0.1 only. Run: ``python bench/send_rate.py [--mails 1000]
[--kb 100] [--rounds 3] [--connections 1 4]``. Nothing is asserted.

The machine's noise (other processes, fsync times) moves whole runs by a factor of two, so the three senders run
in interleaved rounds and each ratio is taken within its round: the median of those ratios and their range are
what a change is judged by.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

from opos_tui.services.compose import LetterRequest, build_message, prepare
from opos_tui.services.home import Home
from opos_tui.services.queue import Status, open_queue
from opos_tui.services.settings import Settings, check, load, save

HOST = "127.0.0.1"
BARE, SOURCE, OURS, OTHER = "bare aiosmtplib loop", "Postfix smtp-source", "opos-tui send --all", "the other checkout"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_sink(port: int, pipelining: bool) -> subprocess.Popen[bytes]:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(sink).exists():
        sys.exit("smtp-sink not found: apt-get install postfix (the daemon need not run)")
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen([sink, *user, *([] if pipelining else ["-P"]), f"{HOST}:{port}", "256"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return process
        time.sleep(0.05)
    process.kill()
    sys.exit("smtp-sink did not start")


def start_relay(target: int, delay: float) -> tuple[subprocess.Popen[str], int]:
    """``bench/delay_relay.py`` in front of port ``target``: the process and the port it listens on."""
    port = free_port()
    script = Path(__file__).with_name("delay_relay.py")
    process = subprocess.Popen(
        [sys.executable, str(script), str(port), str(target), str(delay)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        sys.exit("the delaying relay did not start")
    return process, port


def settings_for(port: int, connections: int) -> Settings:
    return check(
        {
            "smtp": {"host": HOST, "port": port, "security": "None", "connections": connections},
            "sender": {"address": "buchhaltung@mueller.example", "name": "Müller GmbH"},
        }
    )


def fill(home: Home, current: Settings, mails: int, pdf: Path) -> None:
    save(home, current)
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


def flush(root: Path) -> None:
    """Every file under ``root`` on disk, and the folders' entries: a copy is at first only in the page cache,
    where a queue that opos-tui wrote is on disk (its commits and checkpoints flush it). Else the first flush
    of the queue file during the run (its first checkpoint) writes the whole 240 MB copy: 90-100 ms here."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(Path(folder) / name, "rb") as file:
                os.fsync(file.fileno())
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def rendered(home: Home) -> list[tuple[tuple[str, ...], bytes]]:
    """Every queued mail's envelope recipients and bytes, as the queue would send them."""
    with open_queue(home) as queue:
        return [
            (item.envelope_recipients, build_message(item, queue.attachments(item.id)))
            for item in (queue.get(item_id) for item_id in sorted(queue.ids()))
        ]


async def raw_loop(port: int, messages: list[tuple[tuple[str, ...], bytes]], connections: int) -> float:
    """The baseline: the same bytes, ``connections`` plain loops at once, each over one connection."""

    async def one(share: list[tuple[tuple[str, ...], bytes]]) -> None:
        smtp = aiosmtplib.SMTP(hostname=HOST, port=port, local_hostname="bench.local", start_tls=False)
        await smtp.connect()
        for recipients, data in share:
            await smtp.sendmail("buchhaltung@mueller.example", list(recipients), data)
        await smtp.quit()

    start = time.perf_counter()
    await asyncio.gather(*(one(messages[n::connections]) for n in range(connections)))
    return time.perf_counter() - start


def smtp_source(port: int, mails: int, size: int, connections: int) -> float | None:
    """Postfix's smtp-source: ``mails`` messages of ``size`` bytes over ``connections`` sessions at once."""
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not Path(source).exists():
        return None
    argv = [source, "-c", "-l", str(size), "-m", str(mails), "-s", str(connections), "-M", "bench.local"]
    argv += ["-f", "buchhaltung@mueller.example", "-t", "kunde@example.com", f"{HOST}:{port}"]
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far (Linux: /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def opos_send(home: Home, python: str | None) -> tuple[float, int, float]:
    """``opos-tui send --all`` in a process of its own (``python -m opos_tui`` for the other checkout's
    environment): seconds, mails sent, CPU seconds it used. The attachment is random bytes, not a letter: the
    items are confirmed past the plausibility check as an operator would (``--skip-check``)."""
    with open_queue(home) as queue:
        ids = queue.ids()
    script = Path(sys.executable).with_name("opos-tui")
    if python is not None:
        opos = [python, "-m", "opos_tui"]
    else:
        opos = [str(script)] if script.exists() else [sys.executable, "-m", "opos_tui"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPOS_TUI_")} | {"OPOS_TUI_SECRETS": "file"}
    cpu = children_cpu()
    start = time.perf_counter()
    done = subprocess.run(
        [*opos, "--home", str(home.root), "send", "--all", "--skip-check", *map(str, ids)],
        cwd=home.root,  # not this checkout: ``-m`` looks in the working folder first
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    cpu = children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"opos-tui send exited {done.returncode}: {done.stderr}")
    with open_queue(home) as queue:
        sent = queue.counts()[Status.SENT]
    return elapsed, sent, cpu


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """Median and range of ``values``: ``1.23x (1.10-1.31)``."""
    return f"{median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--kb", type=int, default=100, help="size of the PDF attached to each mail")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (bare loop, smtp-source, opos-tui ...)")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument(
        "--no-pipelining",
        action="store_true",
        help="smtp-sink does not offer PIPELINING: what it gains, by the bare loop",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=0,
        metavar="MS",
        help="reach smtp-sink through a relay that delays each chunk by MS milliseconds each way (a link with a"
        " round trip of twice that), as a mail server elsewhere is reached",
    )
    parser.add_argument(
        "--compare",
        metavar="PYTHON",
        help="also run 'PYTHON -m opos_tui send' in each round: the Python of another checkout's environment"
        " (an earlier commit), to measure a change in the same rounds",
    )
    args = parser.parse_args()
    ours = {OURS: None} | ({OTHER: args.compare} if args.compare else {})
    senders = (BARE, SOURCE, *ours)
    os.environ["OPOS_TUI_SECRETS"] = "file"
    sink_port = free_port()
    sink = start_sink(sink_port, pipelining=not args.no_pipelining)
    relay = start_relay(sink_port, args.delay) if args.delay else None
    port = sink_port if relay is None else relay[1]
    # connections -> sender -> seconds of each round (None: not run)
    runs: dict[int, dict[str, list[float | None]]] = {c: {name: [] for name in senders} for c in args.connections}
    # connections -> opos-tui (this checkout or the other) -> mails sent in each round
    sent: dict[int, dict[str, list[int]]] = {c: {name: [] for name in ours} for c in args.connections}
    # connections -> opos-tui -> CPU seconds per round: of its process, and of smtp-sink meanwhile
    cpu: dict[int, dict[str, list[tuple[float, float]]]] = {c: {name: [] for name in ours} for c in args.connections}
    try:
        with tempfile.TemporaryDirectory() as folder:
            pdf = Path(folder) / "Mahnung.pdf"
            pdf.write_bytes(b"%PDF-1.4\n" + os.urandom(args.kb * 1024))
            template = Home(Path(folder) / "template")
            fill(template, settings_for(port, 1), args.mails, pdf)
            messages = rendered(template)
            size = sum(len(data) for _, data in messages) // len(messages)
            for round_ in range(args.rounds):
                for connections in args.connections:
                    found = runs[connections]
                    found[BARE].append(asyncio.run(raw_loop(port, messages, connections)))
                    found[SOURCE].append(smtp_source(port, args.mails, size, connections))
                    for name, python in ours.items():
                        home = Home(Path(folder) / f"round{round_}-{connections}")
                        shutil.copytree(template.root, home.root)
                        save(home, settings_for(port, connections))
                        load(home)  # read once, as on an installation in use (config.checked): see README
                        flush(home.root)
                        sink_cpu = process_cpu(sink.pid)
                        elapsed, count, used = opos_send(home, python)
                        cpu[connections][name].append((used, process_cpu(sink.pid) - sink_cpu))
                        shutil.rmtree(home.root)
                        found[name].append(elapsed)
                        sent[connections][name].append(count)
    finally:
        for process in (sink, *(relay[:1] if relay else ())):
            process.terminate()
            process.wait()
    offered = " (PIPELINING not offered)" if args.no_pipelining else ""
    through = f" through a relay delaying {args.delay:g} ms each way" if args.delay else ""
    print(
        f"{args.mails} mails of {size / 1024:.0f} KB on the wire ({args.kb} KB PDF) to smtp-sink on {HOST}:{sink_port}"
        f"{offered}{through}, {args.rounds} interleaved round(s); median and range over the rounds, each ratio within"
        " its round"
    )
    for connections, found in runs.items():
        bare = [s for s in found[BARE] if s is not None]
        source = [s for s in found[SOURCE] if s is not None]
        print(f"\n{connections} connection(s)")
        print(f"{'sender':<22}{'mails/s (median, range)':>26}{'x bare loop':>22}{'x smtp-source':>22}")
        for name in senders:
            seconds = found[name]
            if any(s is None for s in seconds):
                print(f"{name:<22}{'- (not found: Debian package postfix)':>26}")
                continue
            times = [s for s in seconds if s is not None]
            counts = sent[connections].get(name, [args.mails] * len(times))
            rates = [n / s for n, s in zip(counts, times, strict=True)]
            rate = f"{median(rates):.0f} ({min(rates):.0f}-{max(rates):.0f})"
            versus_bare = spread([b / s for b, s in zip(bare, times, strict=True)])
            versus_source = spread([b / s for b, s in zip(source, times, strict=True)]) if source else "-"
            print(f"{name:<22}{rate:>26}{versus_bare:>22}{versus_source:>22}")
        for name in ours:
            own = [c / args.mails * 1000 for c, _ in cpu[connections][name]]
            sinks = [c / args.mails * 1000 for _, c in cpu[connections][name]]
            print(
                f"CPU per mail, {name}: {median(own):.2f} ms ({min(own):.2f}-{max(own):.2f}, its start included),"
                f" smtp-sink meanwhile {median(sinks):.2f} ms ({min(sinks):.2f}-{max(sinks):.2f})"
            )
            if min(sent[connections][name]) < args.mails:
                print(f"{name} sent only {min(sent[connections][name])} of {args.mails} in a round")


if __name__ == "__main__":
    main()
