"""CPU inference latency: PyTorch eager against ONNX Runtime (and torch.compile), paired in one process.

The model is the architecture the book fine-tunes (Mask R-CNN v1, COCO layout, FrozenBatchNorm) with random
values (``build_untrained``, offline), at the input sizes of the ``cpu`` and ``tutorial`` presets. For each
size and each ``--detections`` cap (``roi_heads.detections_per_img``, set before the export so that both
backends keep the same number), the model is exported with ``pedseg_lib.export.export_model`` and every
backend predicts the same images, one image at a time, through the public calls a user makes:
``pedseg_lib.inference.predict(model, [image], batch_size=1)`` for PyTorch and
``OnnxPredictor.predict_one(image)`` for ONNX Runtime (both at score threshold 0.05, masks binarised at 0.5).
The backends take turns image by image (the first backend rotates), so that other jobs on the machine slow
them alike; each backend first predicts ``--warmup`` images untimed. A row's latency is the median over
images x repeats (``time.perf_counter``); ``eager/this`` is eager PyTorch's median divided by the row's, from
the same paired run (above 1: faster than eager). ``cpu/wall`` is process CPU time over wall time during the
row's calls: about the number of cores the backend kept busy.

Detections matter: a random model hits the cap on every image, and mask pasting (one full-image mask per
detection) grows with it. 100 is torchvision's cap and the worst case; a model fine-tuned on Penn-Fudan keeps
a few to a few tens of detections above 0.05, closer to 10. The variant rows (eager PyTorch with fewer
threads, ONNX Runtime graph optimisation levels and threads, torch.compile) run at the first ``--detections``
value; the others time eager PyTorch against ONNX Runtime at level "all" with the first ``--threads`` only,
unless ``--all-variants``.
torch.compile gets ``--compile-limit`` seconds to compile (its untimed first call on every image: each new
image size recompiles); past that the row says "failed" and the script moves on.

Images: the first ``--images`` of the Penn-Fudan test split when ``--data`` (default ``$PEDSEG_DATA``, else
``../shared/data`` next to the checkout) holds PennFudanPed, else synthetic ones. Run by hand, never by tests
(the default takes about 7 minutes on 2 otherwise idle cores, 2.5 of them torch.compile's attempt; much
longer when other jobs load the machine, which also changes the ratios: the load average is printed):

    python benchmarks/inference_speed.py
    python benchmarks/inference_speed.py --sizes cpu --detections 10 --images 2 --compile-limit 0  # quick look
    python benchmarks/inference_speed.py --json runs/inference_speed.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pedseg_lib.config import load_preset
from pedseg_lib.data import find_dataset, make_synthetic_pennfudan, split_train_val_test
from pedseg_lib.export import export_model
from pedseg_lib.inference import predict
from pedseg_lib.model import build_untrained
from pedseg_lib.runtime import OnnxPredictor

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    """One backend at one size and detection cap."""

    size: str  # preset name
    min_size: int
    max_size: int
    detections_cap: int
    backend: str
    median_ms: float | None = None
    eager_ratio: float | None = None  # eager median / this median (>1: faster than eager)
    cpu_per_wall: float | None = None
    detections: float | None = None  # mean detections per image (after the 0.05 score threshold)
    samples: int = 0
    note: str = ""
    times_ms: list[float] = field(default_factory=list)


class CompileTimeout(Exception):
    """torch.compile's warm-up ran past --compile-limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise CompileTimeout in the main thread after ``seconds`` (SIGALRM; POSIX only).

    Yields a list that holds True once the alarm fired: inductor re-raises the exception wrapped in its own.
    """
    fired: list[bool] = []

    def handler(signum, frame):
        fired.append(True)
        raise CompileTimeout

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    default_data = os.environ.get("PEDSEG_DATA") or str(REPO.parent / "shared" / "data")
    parser.add_argument("--data", default=default_data,
                        help="Penn-Fudan folder or its parent (default: $PEDSEG_DATA, else ../shared/data); "
                             "synthetic images when it holds none")
    parser.add_argument("--images", type=int, default=4, help="test-split images to time (default 4)")
    parser.add_argument("--repeats", type=int, default=1, help="timed passes over the images (default 1)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed images per backend first (default 1)")
    parser.add_argument("--sizes", default="cpu,tutorial",
                        help="presets whose min_size/max_size to time, comma-separated (default cpu,tutorial)")
    parser.add_argument("--detections", default="100,10",
                        help="detections_per_img caps, comma-separated; the first gets every variant "
                             "(default 100,10; torchvision's cap is 100)")
    parser.add_argument("--levels", default="all,basic,disable",
                        help="ONNX Runtime graph optimisation levels (default all,basic,disable; also extended)")
    parser.add_argument("--threads", default="2,1",
                        help="ONNX Runtime intra-op threads tried at level 'all' (default 2,1); the other "
                             "levels use the first")
    parser.add_argument("--eager-threads", default="1",
                        help="other torch thread counts to time eager PyTorch with, comma-separated (default 1; "
                             "'' for none); the reference row keeps torch's default")
    parser.add_argument("--compile-limit", type=float, default=150.0,
                        help="seconds torch.compile may spend on its first call per image (default 150; 0 skips it)")
    parser.add_argument("--all-variants", action="store_true",
                        help="time every variant at every --detections value, not only the first")
    parser.add_argument("--json", type=Path, help="also write the rows and the machine's state as JSON here")
    return parser.parse_args(argv)


def load_images(data: str, count: int) -> tuple[list[tuple[str, np.ndarray]], str]:
    """The first ``count`` test-split images (cpu preset's split) as float32 [3,H,W] arrays, and where from."""
    from PIL import Image

    root = find_dataset(data) if data else None
    cfg = load_preset("cpu")
    if root is None:
        root = make_synthetic_pennfudan(tempfile.mkdtemp(prefix="pedseg-bench-"), n_images=max(count, 8), seed=0)
        names = sorted(p.name for p in (root / "PNGImages").glob("*.png"))[:count]
        where = f"synthetic images (no PennFudanPed in {data!r})"
    else:
        names = sorted(p.name for p in (root / "PNGImages").glob("*.png"))
        test = split_train_val_test(len(names), cfg.test_size, cfg.val_size, cfg.split_seed)["test"]
        names = [names[i] for i in test[:count]]
        where = f"Penn-Fudan test split ({root})"
    images = []
    for name in names:
        with Image.open(root / "PNGImages" / name) as pil:
            array = np.asarray(pil.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255
        images.append((name, np.ascontiguousarray(array)))
    return images, where


def eager_call(model: torch.nn.Module, threads: int | None = None) -> Callable[[np.ndarray], int]:
    """``predict`` on one image; with ``threads``, torch.set_num_threads for the call (restored after)."""
    def call(image: np.ndarray) -> int:
        default = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            return len(predict(model, [torch.from_numpy(image)], batch_size=1)[0]["scores"])
        finally:
            torch.set_num_threads(default)
    return call


def onnx_call(predictor: OnnxPredictor) -> Callable[[np.ndarray], int]:
    def call(image: np.ndarray) -> int:
        return len(predictor.predict_one(image)["scores"])
    return call


def compiled_call(model: torch.nn.Module, images: list[tuple[str, np.ndarray]], limit: float
                  ) -> tuple[Callable[[np.ndarray], int] | None, str]:
    """torch.compile(model), compiled on every image within ``limit`` seconds, or None and why not."""
    torch._logging.set_logs(dynamo=logging.ERROR, inductor=logging.ERROR)  # graph-break warnings fill pages
    compiled = torch.compile(model)
    done, tic, fired = [], time.perf_counter(), []
    try:
        with time_limit(limit) as fired, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _, image in images:  # each new image size compiles again
                start = time.perf_counter()
                predict(compiled, [torch.from_numpy(image)], batch_size=1)
                done.append(time.perf_counter() - start)
    except Exception as exc:  # dynamo/inductor errors too: report, do not stop the benchmark
        torch._dynamo.reset()
        if not fired:
            text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
            return None, f"failed: {type(exc).__name__}: {text}"
        first = f"; first image {done[0]:.0f} s" if done else ""
        return None, f"failed: still compiling after {limit:.0f} s ({len(done)}/{len(images)} image sizes done{first})"
    return eager_call(compiled), f"compiled in {time.perf_counter() - tic:.0f} s ({len(images)} image sizes)"


def paired_run(backends: dict[str, Callable[[np.ndarray], int]], images: list[tuple[str, np.ndarray]],
               repeats: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Time each backend on each image, taking turns image by image; per backend: times (s), cpu, detections."""
    names = list(backends)
    for name in names:
        for _, image in images[:warmup]:
            backends[name](image)
    stats = {name: {"times": [], "cpu": 0.0, "wall": 0.0, "detections": []} for name in names}
    turn = 0
    for _ in range(repeats):
        for _, image in images:
            order = names[turn % len(names):] + names[:turn % len(names)]
            turn += 1
            for name in order:
                cpu, tic = time.process_time(), time.perf_counter()
                count = backends[name](image)
                wall = time.perf_counter() - tic
                stats[name]["times"].append(wall)
                stats[name]["wall"] += wall
                stats[name]["cpu"] += time.process_time() - cpu
                stats[name]["detections"].append(count)
    return stats


def fmt_row(row: Row) -> str:
    median = f"{row.median_ms:9.0f}" if row.median_ms is not None else f"{'-':>9}"
    ratio = f"{row.eager_ratio:9.2f}" if row.eager_ratio is not None else f"{'-':>9}"
    cpu = f"{row.cpu_per_wall:8.2f}" if row.cpu_per_wall is not None else f"{'-':>8}"
    dets = f"{row.detections:6.1f}" if row.detections is not None else f"{'-':>6}"
    size = f"{row.size} {row.min_size}/{row.max_size}"
    return (f"{size:<18} {row.detections_cap:>4}  {row.backend:<28} {median} {ratio} {cpu} {dets} {row.samples:>3}"
            f"  {row.note}")


HEADER = (f"{'size min/max':<18} {'cap':>4}  {'backend':<28} {'median ms':>9} {'eager/this':>9} {'cpu/wall':>8} "
          f"{'dets':>6} {'n':>3}  note")


def main(argv: list[str] | None = None) -> int:
    import onnxruntime

    args = parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    caps = [int(c) for c in args.detections.split(",") if c.strip()]
    levels = [s.strip() for s in args.levels.split(",") if s.strip()]
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    eager_extra = [int(t) for t in args.eager_threads.split(",") if t.strip()]
    images, where = load_images(args.data, args.images)
    eager_threads = torch.get_num_threads()
    load_start = os.getloadavg()
    print(f"images: {len(images)} from {where}: " + ", ".join(f"{n} {a.shape[2]}x{a.shape[1]}" for n, a in images))
    print(f"machine: {os.cpu_count()} CPUs, load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} "
          f"(1/5/15 min); torch {torch.__version__} ({eager_threads} threads), onnxruntime {onnxruntime.__version__}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"{args.repeats} pass(es) over the images after {args.warmup} warm-up image(s) per backend; "
          "eager/this > 1: faster than eager PyTorch in the same paired run", flush=True)

    rows: list[Row] = []
    compile_failed = ""
    workdir = Path(tempfile.mkdtemp(prefix="pedseg-onnx-bench-"))
    started = time.perf_counter()
    print("\n" + HEADER)
    for size in sizes:
        cfg = load_preset(size)
        for index, cap in enumerate(caps):
            variants = index == 0 or args.all_variants
            torch.manual_seed(0)  # the same random values at every size and cap
            model = build_untrained(num_classes=2, variant="v1", weights="coco",
                                    min_size=cfg.min_size, max_size=cfg.max_size).eval()
            model.roi_heads.detections_per_img = cap  # before the export: both backends keep the same number
            path = workdir / f"{size}-{cap}.onnx"
            export = export_model(model, path, source="benchmarks/inference_speed.py")
            backends: dict[str, Callable[[np.ndarray], int]] = {f"PyTorch eager, {eager_threads} threads": eager_call(model)}
            ort = [("all", threads[0])]
            if variants:
                for count in eager_extra:
                    backends[f"PyTorch eager, {count} thread{'s' if count > 1 else ''}"] = eager_call(model, count)
                ort += [("all", t) for t in threads[1:]] + [(lv, threads[0]) for lv in levels if lv != "all"]
            for level, count in ort:
                label = f"ORT {level}, {count} thread{'s' if count > 1 else ''}"
                backends[label] = onnx_call(OnnxPredictor(path, threads=count, optimization=level))
            notes = {next(iter(backends)): f"export {export.seconds:.0f} s, {export.megabytes:.0f} MB"}
            compile_row = None
            if variants and args.compile_limit > 0:
                compile_row = Row(size, cfg.min_size, cfg.max_size, cap, "torch.compile(model)")
                if compile_failed:
                    compile_row.note = f"not tried: {compile_failed}"
                else:
                    call, note = compiled_call(model, images, args.compile_limit)
                    compile_row.note = note
                    if call is None:
                        compile_failed = f"failed at {size} size"
                    else:
                        backends[compile_row.backend] = call
            stats = paired_run(backends, images, args.repeats, args.warmup)
            eager_median = statistics.median(next(iter(stats.values()))["times"])
            for name, s in stats.items():
                median = statistics.median(s["times"])
                row = compile_row if name == "torch.compile(model)" else Row(size, cfg.min_size, cfg.max_size, cap, name)
                row.median_ms = 1000 * median
                row.eager_ratio = eager_median / median
                row.cpu_per_wall = s["cpu"] / s["wall"]
                row.detections = statistics.mean(s["detections"])
                row.samples = len(s["times"])
                row.times_ms = [round(1000 * t, 1) for t in s["times"]]
                row.note = row.note or notes.get(name, "")
                rows.append(row)
                print(fmt_row(row), flush=True)
            if compile_row is not None and compile_row.median_ms is None:
                rows.append(compile_row)
                print(fmt_row(compile_row), flush=True)
            for p in workdir.glob("*.onnx"):
                p.unlink()
    load_end = os.getloadavg()
    total = time.perf_counter() - started
    print(f"\ntotal {total / 60:.1f} min; load average at the end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "images": [{"name": n, "width": a.shape[2], "height": a.shape[1]} for n, a in images],
            "image_source": where,
            "machine": {"cpus": os.cpu_count(), "load_start": load_start, "load_end": load_end,
                        "platform": platform.platform(), "python": platform.python_version(),
                        "torch": torch.__version__, "torch_threads": eager_threads,
                        "onnxruntime": onnxruntime.__version__, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "total_seconds": total,
            "rows": [asdict(r) for r in rows],
        }
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
