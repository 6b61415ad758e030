"""Start-up: the command line against ``python -c pass``, the TUI's first paint against a minimal Textual app.

Run: ``python bench/startup.py [--runs 15]``. Everything is measured in this one run, each as the fastest of
``--runs`` whole processes (the machine's noise only ever adds time; a program and its baseline are run in turn,
so that a busy spell falls on both), and printed as a ratio to its baseline,
twice: by the wall clock, and by the CPU time the process used (user + system, from ``wait4``), which other
work on a busy machine disturbs far less:

- ``opos-tui --help``, ``opos-tui enqueue`` of one mail (a real PDF; a home with a sender) and ``opos-tui send``
  with nothing due (a queue whose only mail is held), each against ``python -c pass`` of this environment and
  against ``python -c pass`` of the same Python in a venv with nothing installed (made for the run). Installed
  with ``pip install -e`` (as the README does), every start of this environment's Python imports the editable
  install's path hook (about 12 ms here), the baseline too; the bare venv's start has no such hook. Against
  it the ratios are stricter than for an install without ``-e`` would be, since this environment's opos-tui
  still pays the hook;
- the first paint in a terminal (a pseudo-terminal of 80x24, ``TERM=xterm-256color``: from starting the process
  until its screen shows the text that only the finished first frame has) of the queue screen over 1,000 mails
  and of the E-Mail settings form, against a minimal Textual app with a Header, a DataTable of 30 rows and a
  Footer;
- what costs what: the import time of each program's modules in a fresh process, so that the difference
  between a first paint and its imports is the app's own work (CSS, composing, the first query).

Talks to no network; the homes are temporary folders. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.queue_screen, tests.pdfs

MINIMAL_APP = """
from textual.app import App
from textual.widgets import DataTable, Footer, Header


class Minimal(App[None]):
    BINDINGS = [("q", "quit", "Quit")]

    def compose(self):
        yield Header()
        yield DataTable()
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("number", "customer", "recipient", "subject")
        for n in range(30):
            table.add_row(f"#{n:04d}", f"Kunde {n}", f"kunde{n}@example.test", f"1. Mahnung M-{n:07d}")


Minimal().run()
"""
MINIMAL_MARK = "kunde20@example.test"  # the last row an 80x24 screen shows: the table is filled and painted

ANSI = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78NOMc])")


def command() -> list[str]:
    """The installed ``opos-tui`` beside this Python, as a user runs it; else ``python -m opos_tui``."""
    script = Path(sys.executable).with_name("opos-tui")
    return [str(script)] if script.exists() else [sys.executable, "-m", "opos_tui"]


Times = tuple[float, float]
"""Wall-clock seconds and CPU seconds of one process."""


def fastest(run: Callable[[], Times], runs: int) -> Times:
    measured = [run() for _ in range(runs)]
    return min(wall for wall, _ in measured), min(cpu for _, cpu in measured)


def fastest_in_turn(runs: dict[str, Callable[[], Times]], rounds: int) -> dict[str, Times]:
    """The fastest of each of ``runs``, run in turn in each of ``rounds``: a busy spell of the machine falls on a
    program and its baseline alike, not on whichever happened to be measured then."""
    measured: dict[str, list[Times]] = {label: [] for label in runs}
    for _ in range(rounds):
        for label, run in runs.items():
            measured[label].append(run())
    return {label: (min(w for w, _ in times), min(c for _, c in times)) for label, times in measured.items()}


def reap(process: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Wait for a child: its exit status and the CPU seconds it used."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime


def process_time(argv: Sequence[str], env: dict[str, str]) -> Times:
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    errors = process.stderr.read()
    code, cpu = reap(process)
    elapsed = time.perf_counter() - start
    if code not in (0, 1):  # send with nothing due exits 1 (nothing went); anything else is a fault
        sys.exit(f"{' '.join(argv)} exited {code}: {errors.decode(errors='replace')}")
    return elapsed, cpu


def first_paint(argv: Sequence[str], env: dict[str, str], mark: str, timeout: float = 60.0) -> Times:
    """Seconds from starting ``argv`` in an 80x24 pseudo-terminal until ``mark`` is on its screen, and the CPU
    seconds it used until then (it is killed as soon as the mark shows)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, stdin=follower, stdout=follower, stderr=follower, env=env, start_new_session=True, close_fds=True
    )
    os.close(follower)
    seen = b""
    try:
        while mark.encode() not in ANSI.sub(b"", seen):
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"{' '.join(argv)}: {mark!r} not on the screen after {timeout:.0f} s")
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(leader, 65536)
                except OSError:  # the program ended (EIO)
                    raise RuntimeError(ANSI.sub(b"", seen).decode(errors="replace")[-2000:]) from None
        elapsed = time.perf_counter() - start
    finally:
        process.send_signal(signal.SIGKILL)
        _, cpu = reap(process)
        os.close(leader)
    return elapsed, cpu


def import_time(modules: str, env: dict[str, str], runs: int) -> Times:
    probe = (
        "import time; w, c = time.perf_counter(), time.process_time(); "
        f"import {modules}; print(time.perf_counter() - w, time.process_time() - c)"
    )

    def run() -> Times:
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
        wall, cpu = done.stdout.split()
        return float(wall), float(cpu)

    return fastest(run, runs)


def row(label: str, times: Times, *bases: Times) -> str:
    line = f"{label:<34}{times[0] * 1000:>7.0f}ms{times[1] * 1000:>7.0f}ms"
    for base in bases:
        line += f"{times[0] / base[0]:>8.2f}x{times[1] / base[1]:>8.2f}x"
    return line


HEAD = f"{'':<34}{'wall':>9}{'CPU':>9}{'wall':>9}{'CPU':>9}"


def make_homes(folder: Path) -> dict[str, Path]:
    """A home for enqueue (a sender, a PDF), one for send with nothing due, one with 1,000 mails for the queue
    screen."""
    from bench.queue_screen import fill
    from opos_tui.services.home import Home
    from opos_tui.services.queue import open_queue
    from opos_tui.services.settings import check, load, save
    from tests.pdfs import make_pdf

    homes = {name: folder / name for name in ("enqueue", "idle", "queue")}
    settings = check({"smtp": {"host": "127.0.0.1", "port": 9}, "sender": {"address": "buchhaltung@example.test"}})
    for name in ("enqueue", "idle"):
        Home(homes[name]).ensure()
        save(Home(homes[name]), settings)
        load(Home(homes[name]))  # read once, as on an installation in use (config.checked): see README
    (folder / "M-0000001.pdf").write_bytes(make_pdf("1. Mahnung M-0000001", "Kunde Müller GmbH", "Kundennummer K1"))
    fill(Home(homes["queue"]), 1000)
    subprocess.run([*command(), "--home", str(homes["idle"]), *enqueue_args(folder)], check=True, capture_output=True)
    with open_queue(Home(homes["idle"])) as queue:
        queue.hold(queue.ids())
    return homes


def enqueue_args(folder: Path) -> list[str]:
    return [
        "enqueue",
        "--type",
        "dunning",
        "--to",
        "Müller GmbH <kunde@example.test>",
        "--attach",
        str(folder / "M-0000001.pdf"),
        "--var",
        "customer_name=Müller GmbH",
        "--var",
        "document_number=M-0000001",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="processes per measurement; the fastest counts")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPOS_TUI_")}
    env |= {"OPOS_TUI_SECRETS": "file", "LANG": "C.UTF-8", "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    env.pop("TEXTUAL", None)
    # As installed: Python caches each module's bytecode (pip compiles them, or the first run does). Without
    # the cache every start compiles the sources again, which no user's start does; the first
    # of each measurement's processes writes it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    opos = command()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        homes = make_homes(folder)
        minimal = folder / "minimal.py"
        minimal.write_text(MINIMAL_APP)

        base_label, paint_label = "python -c pass", "minimal Textual app (30 rows)"
        bare_label = "a bare venv's python -c pass"
        bare = folder / "bare-venv"  # nothing installed: no path hooks, no .pth files of anybody's
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
        bare_python = str(bare / "bin" / "python") if os.name != "nt" else str(bare / "Scripts" / "python.exe")
        cli = fastest_in_turn(
            {
                base_label: lambda: process_time([sys.executable, "-c", "pass"], env),
                bare_label: lambda: process_time([bare_python, "-c", "pass"], env),
                "opos-tui --help": lambda: process_time([*opos, "--help"], env),
                "opos-tui enqueue (one mail)": lambda: process_time(
                    [*opos, "--home", str(homes["enqueue"]), *enqueue_args(folder)], env
                ),
                "opos-tui send (nothing due)": lambda: process_time([*opos, "--home", str(homes["idle"]), "send"], env),
            },
            args.runs,
        )
        print(f"start-up, the fastest of {args.runs} processes each, taken in turn; against this environment's")
        print("python -c pass, then against the same Python's in a venv with nothing installed")
        print(HEAD + f"{'wall':>9}{'CPU':>9}")
        for label, times in cli.items():
            print(row(label, times, cli[base_label], cli[bare_label]))

        runs = max(5, args.runs // 2)
        tui = fastest_in_turn(
            {
                paint_label: lambda: first_paint([sys.executable, str(minimal)], env, MINIMAL_MARK),
                "queue screen, 1,000 mails": lambda: first_paint(
                    [*opos, "--home", str(homes["queue"])], env, "kunde999@example.test"
                ),
                "E-Mail settings form": lambda: first_paint(
                    [*opos, "--home", str(homes["enqueue"]), "settings"], env, "Verbindungsart"
                ),
            },
            runs,
        )
        print()
        print(f"first paint in an 80x24 terminal, the fastest of {runs} processes each, taken in turn")
        print(HEAD)
        for label, times in tui.items():
            print(row(label, times, tui[paint_label]))

        imports = {
            "settings model (no pydantic)": "opos_tui.services.settings",
            "pydantic (checks config.toml)": "pydantic.type_adapter, pydantic_core.core_schema",
            "enqueue: queue, mail, settings": "opos_tui.services.queue, opos_tui.services.compose",
            "send: + asyncio, the send run": "opos_tui.services.queue, opos_tui.services.send_run",
            "minimal app: textual, 3 widgets": ", ".join(
                ["textual.app", *(f"textual.widgets._{w}" for w in ("data_table", "footer", "header"))]
            ),
            "opos-tui TUI with the queue screen": "opos_tui.app, opos_tui.screens.queue",
            "opos-tui TUI with the settings form": "opos_tui.app, opos_tui.screens.settings",
        }
        print()
        print("what costs what: importing, in a fresh process (the garbage collector on, as Python starts)")
        for label, modules in imports.items():
            print(row(label, import_time(modules, env, runs)))


if __name__ == "__main__":
    main()
