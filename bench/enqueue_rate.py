"""Bulk enqueue: mails per second through ``opos-tui enqueue --batch -`` and ``opos-tui import`` of a spool folder
of the same mails, each one whole process, rendering and every check included.

Run: ``python bench/enqueue_rate.py [--mails 1000]``. Each mail is a dunning letter with its own real PDF (a
text layer naming its document and customer, as the accounting system writes them). Rates are printed by the
wall clock and by the CPU time the process used (``wait4``: what a busy machine disturbs far less), with
``opos-tui enqueue`` of one mail per process for comparison. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.startup, tests.pdfs

from bench.startup import Times, command, reap
from tests.pdfs import write_letter


def manifest(n: int, pdf: str) -> dict[str, object]:
    return {
        "type": "dunning",
        "level": 1 + n % 3,
        "to": [f"Kunde {n} <kunde{n}@example.test>"],
        "attachments": [pdf],
        "vars": {"customer_name": f"Firma {n} GmbH", "customer_number": f"K{n}", "document_number": f"M-{n:07d}"},
    }


def run(argv: list[str], env: dict[str, str], cwd: Path, stdin: Path | None = None) -> Times:
    start = time.perf_counter()
    with open(stdin or os.devnull, "rb") as source:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=source, stdout=subprocess.DEVNULL)
        code, cpu = reap(process)
    if code != 0:
        sys.exit(f"{' '.join(argv)} exited {code}")
    return time.perf_counter() - start, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1000)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPOS_TUI_")} | {"OPOS_TUI_SECRETS": "file"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached
    opos = command()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "pdf").mkdir()
        (folder / "spool").mkdir()
        lines = []
        for n in range(args.mails):
            pdf = write_letter(folder / "pdf" / f"Mahnung_{n:07d}.pdf", f"M-{n:07d}", f"K{n}", f"Firma {n} GmbH")
            lines.append(json.dumps(manifest(n, f"pdf/{pdf.name}"), ensure_ascii=False))
            (folder / "spool" / pdf.name).write_bytes(pdf.read_bytes())
            (folder / "spool" / f"M-{n:07d}.json").write_text(json.dumps(manifest(n, pdf.name)))
        (folder / "batch.jsonl").write_text("\n".join(lines) + "\n")
        pdf_kb = sum(p.stat().st_size for p in (folder / "pdf").iterdir()) / args.mails / 1024
        homes = {label: folder / label for label in ("batch", "import", "single")}
        for home in homes.values():
            subprocess.run(
                [*opos, "--home", str(home), "config", "set", "sender.address", "a@example.test"],
                env=env,
                check=True,
                capture_output=True,
            )

        rows = {
            "enqueue --batch -": run(
                [*opos, "--home", str(homes["batch"]), "enqueue", "--batch", "-"], env, folder, folder / "batch.jsonl"
            ),
            "import DIR": run([*opos, "--home", str(homes["import"]), "import", str(folder / "spool")], env, folder),
        }
        one = [*opos, "--home", str(homes["single"]), "enqueue", "--type", "dunning", "--to", "k@example.test"]
        one += ["--attach", str(folder / "pdf" / "Mahnung_0000000.pdf"), "--var", "customer_name=Firma 0"]
        one += ["--var", "document_number=M-0000000"]
        single = min((run(one, env, folder) for _ in range(5)), key=lambda times: times[1])
    print(f"{args.mails} mails, each with its own one-page PDF ({pdf_kb:.1f} KB)")
    print(f"{'':<30}{'wall':>10}{'mails/s':>10}{'CPU':>10}{'mails/CPU s':>13}")
    for label, (wall, cpu) in rows.items():
        print(f"{label:<30}{wall:>9.2f}s{args.mails / wall:>10.0f}{cpu:>9.2f}s{args.mails / cpu:>13.0f}")
    wall, cpu = single
    print(f"{'enqueue, one mail a process':<30}{wall:>9.2f}s{1 / wall:>10.1f}{cpu:>9.2f}s{1 / cpu:>13.1f}")


if __name__ == "__main__":
    main()
