"""Rehearse the real profiles end to end, offline, with stand-in weights (for maintainers; see README).

1. Writes stand-in weights (random, batch norm calibrated on real images; pedseg_lib.standin) under
   torchvision's cache file names into a temporary TORCH_HOME, never the user's.
2. Builds the whole book in the ``cpu`` profile on the real data into ``_build/rehearsal/`` (its own execution
   cache and run folders; the normal ``_build/html``, its cache and ``runs/`` are untouched).
3. Runs ``pedseg train`` for one short epoch with the ``tutorial`` and ``best`` presets, then ``pedseg evaluate``
   and ``pedseg predict`` on each run.
4. Checks every chapter page (cpu banner, stand-in warning, no traceback), writes ``rehearsal.json`` with the wall
   times and prints it as a table. Exits non-zero when a step failed or a budget was exceeded.

Stand-ins prove control flow and timing, never accuracy.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "rehearsal"
BOOK_BUDGET_S = 30 * 60  # the whole cpu-profile book on a 2-core machine
CHAPTER_BUDGET_S = {"04_training": 12 * 60}
CELL_TIMEOUT_S = 600  # _config.yml execute.timeout; no cell may come within 2x of it
STANDIN_WARNING = "NOT torchvision's published weights"
# One short epoch each: few images, small inputs. best keeps its v2 model, AMP, scale jitter and photometric
# augmentation, and validates on a few images so that its selection code runs too.
COMMANDS = {
    "tutorial": ["epochs=1", "max_train_images=6", "min_size=320", "max_size=544", "workers=0"],
    "best": ["epochs=1", "max_train_images=8", "max_val_images=4", "min_size=320", "max_size=544", "workers=0"],
}
EVAL_IMAGES = 2  # images pedseg predict draws on


def _default_data() -> str | None:
    if os.environ.get("PEDSEG_DATA"):
        return os.environ["PEDSEG_DATA"]
    shared = ROOT.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else None


def _run(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> dict:
    """Run one command, its output into ``log_dir/name.log``; returns its record."""
    log = log_dir / f"{name}.log"
    print(f"rehearse: {name}: {' '.join(command)}", flush=True)
    tic = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        rc = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - tic
    tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
    print(f"rehearse: {name}: exit {rc} in {seconds:.0f} s", flush=True)
    return {"name": name, "command": " ".join(command), "seconds": round(seconds, 1), "rc": rc,
            "log": str(log.relative_to(ROOT)), "tail": tail if rc else []}


# An IPython start-up file for the chapters' kernels (through IPYTHONDIR): it appends the wall time of every cell
# to the file named by PEDSEG_CELL_TIMES. The book itself is untouched; the times are matched to the chapters by
# cell source afterwards.
CELL_TIMER = """\
import json, os, time

_pedseg_timing = {}


def _pedseg_pre(info):
    _pedseg_timing.update(start=time.perf_counter(), source=info.raw_cell)


def _pedseg_post(result):
    if "start" in _pedseg_timing:
        record = {"pid": os.getpid(), "seconds": time.perf_counter() - _pedseg_timing.pop("start"),
                  "source": _pedseg_timing.pop("source")}
        with open(os.environ["PEDSEG_CELL_TIMES"], "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\\n")


if os.environ.get("PEDSEG_CELL_TIMES"):
    get_ipython().events.register("pre_run_cell", _pedseg_pre)
    get_ipython().events.register("post_run_cell", _pedseg_post)
"""


def _install_cell_timer(folder: Path) -> Path:
    """An IPYTHONDIR whose default profile runs CELL_TIMER at kernel start."""
    startup = folder / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-pedseg-cell-timer.py").write_text(CELL_TIMER, encoding="utf-8")
    return folder


def _chapters(times_file: Path, chapters: list[str]) -> dict[str, dict]:
    """Per chapter: the summed cell time and the slowest cell, from the kernel-side cell timer.

    Each chapter runs in a kernel of its own: the records of one kernel (process id) belong to the chapter
    that holds most of their cell sources (the first cells, such as the Colab cell, are alike in every chapter).
    """
    import nbformat

    sources = {name: {cell.source.strip() for cell in nbformat.read(ROOT / "book" / f"{name}.ipynb", as_version=4).cells
                      if cell.cell_type == "code"} for name in chapters}
    kernels: dict[int, list[dict]] = {}
    lines = times_file.read_text(encoding="utf-8").splitlines() if times_file.is_file() else []
    for line in lines:
        record = json.loads(line)
        kernels.setdefault(record["pid"], []).append(record)
    found: dict[str, dict] = {}
    for records in kernels.values():
        cells = [r["source"].strip() for r in records]
        name = max(chapters, key=lambda n: sum(cell in sources[n] for cell in cells))
        if not any(cell in sources[name] for cell in cells):
            continue  # not a chapter's kernel
        seconds = [r["seconds"] for r in records]
        found[name] = {"seconds": round(sum(seconds), 1), "cells": len(seconds),
                       "slowest_cell_s": round(max(seconds), 1)}
    return dict(sorted(found.items()))


def _check_pages(html_dir: Path, chapters: list[str]) -> dict[str, dict]:
    """What each chapter page shows: the profile of its banner, the stand-in warning, any traceback."""
    checks = {}
    for name in chapters:
        page = html_dir / "book" / f"{name}.html"
        text = html.unescape(page.read_text(encoding="utf-8", errors="replace")) if page.is_file() else ""
        profiles = sorted(set(re.findall(r"pedseg profile: (\w+)", text)))
        checks[name] = {"page": page.is_file(), "profiles": profiles, "standin_warning": STANDIN_WARNING in text,
                        "traceback": "Traceback (most recent call last)" in text or 'class="output traceback' in text}
    return checks


def _table(report: dict) -> str:
    rows = [("step", "seconds", "result")]
    rows.append(("stand-in weights", f"{report['standin_seconds']:.0f}", "written"))
    for name, chapter in report["chapters"].items():
        page = report["pages"].get(name, {})
        result = (f"profile {','.join(page.get('profiles', [])) or '?'}; "
                  f"stand-in warning {'shown' if page.get('standin_warning') else 'MISSING'}; "
                  f"{'TRACEBACK' if page.get('traceback') else 'no traceback'}; slowest cell {chapter['slowest_cell_s']} s")
        rows.append((f"chapter {name}", f"{chapter['seconds']:.0f}", result))
    rows.append(("book build (total)", f"{report['book']['seconds']:.0f}", f"exit {report['book']['rc']}"))
    for command in report["commands"]:
        rows.append((command["name"], f"{command['seconds']:.0f}", f"exit {command['rc']}"))
    rows.append(("budget", "", "; ".join(report["budget_problems"]) or "all within budget"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _budget_problems(report: dict) -> list[str]:
    problems = []
    if report["book"]["seconds"] > BOOK_BUDGET_S:
        problems.append(f"book {report['book']['seconds']:.0f} s > {BOOK_BUDGET_S} s")
    for name, chapter in report["chapters"].items():
        limit = CHAPTER_BUDGET_S.get(name)
        if limit and chapter["seconds"] > limit:
            problems.append(f"chapter {name} {chapter['seconds']:.0f} s > {limit} s")
        if chapter["slowest_cell_s"] is not None and chapter["slowest_cell_s"] > CELL_TIMEOUT_S / 2:
            problems.append(f"chapter {name}: a cell took {chapter['slowest_cell_s']:.0f} s, within 2x of the "
                            f"{CELL_TIMEOUT_S} s timeout")
    for name, page in report["pages"].items():
        if page["profiles"] != ["cpu"] or not page["standin_warning"] or page["traceback"]:
            problems.append(f"page {name}: {page}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=_default_data(),
                        help="folder holding PennFudanPed/ (default: $PEDSEG_DATA, else ../shared/data)")
    parser.add_argument("--skip-book", action="store_true", help="only the pedseg commands (quicker)")
    parser.add_argument("--keep", action="store_true", help="keep earlier rehearsal outputs (reuse the book cache)")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: re-read the last rehearsal's outputs and rewrite its report")
    args = parser.parse_args(argv)

    from pedseg_lib.data import find_dataset
    from pedseg_lib.standin import write_standin_weights

    if args.report_only:
        return _report(json.loads((OUT / "rehearsal.json").read_text(encoding="utf-8")))
    if not args.data or find_dataset(args.data) is None:
        print(f"rehearse: error: no Penn-Fudan at {args.data!r}: pass --data or set PEDSEG_DATA", file=sys.stderr)
        return 2
    if not args.keep and OUT.exists():
        shutil.rmtree(OUT)
    logs = OUT / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    torch_home = Path(tempfile.mkdtemp(prefix="pedseg-standin-torch-"))
    report: dict = {"profile": "cpu", "data": str(Path(args.data).resolve()), "machine":
                    f"{platform.machine()}, {os.cpu_count()} cores", "torch_home": str(torch_home),
                    "note": "stand-in weights: these timings prove control flow, never accuracy"}
    try:
        print(f"rehearse: writing stand-in weights into {torch_home}", flush=True)
        tic = time.perf_counter()
        written = write_standin_weights(torch_home, args.data)
        report["standin_seconds"] = round(time.perf_counter() - tic, 1)
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
        times_file = OUT / "cell_times.jsonl"
        env.update(TORCH_HOME=str(torch_home), PEDSEG_PROFILE="cpu", PEDSEG_DATA=str(Path(args.data).resolve()),
                   PEDSEG_RUNS=str(OUT / "runs"), PYTHONUNBUFFERED="1", PEDSEG_CELL_TIMES=str(times_file),
                   IPYTHONDIR=str(_install_cell_timer(torch_home / "ipython")))
        weights = subprocess.run(
            [sys.executable, "-c", "from pedseg_lib.profiles import get_profile\n"
             "for c in get_profile().weights_checks(): print(c.status, c.path.name)"],
            env=env, capture_output=True, text=True, check=True).stdout.split("\n")
        report["weights_check"] = [line for line in weights if line]
        report["standin_files"] = [p.name for p in written]

        book_cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "--path-output", str(OUT),
                    "-W", "-n", "--keep-going"]
        if args.skip_book:
            report["book"] = {"seconds": 0.0, "rc": None}
        else:
            report["book"] = _run("book", book_cmd, env, logs)

        commands = []
        test_images = OUT / "predict_inputs"
        pedseg = [sys.executable, "-m", "pedseg_lib"]
        for preset, overrides in COMMANDS.items():
            run_dir = OUT / "runs" / f"cli_{preset}"
            sets = [item for value in overrides for item in ("--set", value)]
            commands.append(_run(f"pedseg train --preset {preset}", [*pedseg, "train", "--preset", preset, *sets,
                                                                     "--out", str(run_dir), "--quiet"], env, logs))
            commands.append(_run(f"pedseg evaluate ({preset})", [*pedseg, "evaluate", str(run_dir), "--quiet",
                                                                 "--out", str(run_dir / "test_metrics.json")], env, logs))
            if not test_images.is_dir():
                split = json.loads((run_dir / "split.json").read_text()) if (run_dir / "split.json").is_file() else {}
                test_images.mkdir(parents=True)
                root = find_dataset(args.data)
                images = sorted((root / "PNGImages").iterdir())
                for index in split.get("test", range(EVAL_IMAGES))[:EVAL_IMAGES]:
                    shutil.copy(images[index], test_images)
            commands.append(_run(f"pedseg predict ({preset})", [*pedseg, "predict", str(run_dir / "best.pt"),
                                                                str(test_images), "--out", str(run_dir / "predictions")],
                                 env, logs))
        report["commands"] = commands
    finally:
        shutil.rmtree(torch_home, ignore_errors=True)

    return _report(report)


def _report(report: dict) -> int:
    """Read the chapters' times and pages, check the budget, write rehearsal.json, print the table."""
    chapters = sorted(p.stem for p in (ROOT / "book").glob("0*.ipynb"))
    report["chapters"] = _chapters(OUT / "cell_times.jsonl", chapters)
    report["pages"] = {} if report["book"]["rc"] is None else _check_pages(OUT / "_build" / "html", chapters)
    report["budget"] = {"book_s": BOOK_BUDGET_S, "chapter_s": CHAPTER_BUDGET_S, "cell_timeout_s": CELL_TIMEOUT_S}
    report["budget_problems"] = _budget_problems(report)
    from pedseg_lib._io import atomic_write_json

    atomic_write_json(OUT / "rehearsal.json", report)
    print(_table(report))
    print(f"rehearse: wrote {OUT / 'rehearsal.json'}")
    failed = [c["name"] for c in report["commands"] if c["rc"]] + (["book"] if report["book"]["rc"] else [])
    if failed or report["budget_problems"]:
        print(f"rehearse: FAILED: {', '.join(failed + report['budget_problems'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
