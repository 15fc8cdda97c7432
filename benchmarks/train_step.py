"""Cost of the engine's bookkeeping: ``engine.train_one_epoch`` against a bare training loop.

Two copies of the same model (same initial weights, same learning rate) are trained on the same batches,
stepped in turn, so machine noise (other processes, CPU frequency) hits both alike. The engine adds the warm-up schedule, the
NaN check, per-term loss logging (with ``.item()`` synchronisation), optional gradient clipping and a
progress bar.

    python benchmarks/train_step.py --min-size 160 --steps 6 --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch

from pedseg_lib import data, engine
from pedseg_lib.config import apply_overrides, load_preset


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="Penn-Fudan folder (default: synthetic images in a temporary folder)")
    parser.add_argument("--min-size", type=int, default=160, help="model input size (shorter side)")
    parser.add_argument("--max-size", type=int, default=256, help="model input size cap (longer side)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per loop and round")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the batches")
    parser.add_argument("--clip", type=float, default=0.0,
                        help="engine's gradient clipping (default 0 = off, so both loops follow the same weights)")
    parser.add_argument("--lr", type=float, default=1e-4, help="learning rate of both loops (no warm-up)")
    parser.add_argument("--progress", action="store_true", help="show the engine's progress bar")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser.parse_args()


def batches(args: argparse.Namespace) -> list:
    root = args.data or data.make_synthetic_pennfudan(tempfile.mkdtemp(), n_images=args.steps * args.batch_size)
    dataset = data.PennFudanDataset(root, transforms=data.build_transforms(False))
    loader = data.create_loader(dataset, args.batch_size, shuffle=False)
    return [batch for _, batch in zip(range(args.steps), loader, strict=False)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bare_loop(model, optimizer, batch_list, device) -> None:
    model.train()
    for images, targets in batch_list:
        images = [i.to(device) for i in images]
        targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
        loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> None:
    from pedseg_lib.model import build_model

    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch_list = batches(args)
    # No warm-up: both loops use the same (small, so random weights stay finite) lr and compute the same steps.
    cfg = apply_overrides(load_preset("smoke"), ["warmup_iters=0", "scheduler=constant", f"lr={args.lr}"])
    template = build_model(weights=None, min_size=args.min_size, max_size=args.max_size).to(args.device)

    # Two copies of one model, stepped in turn on the same batch: paired timings cancel most machine noise.
    bare_model, engine_model = copy.deepcopy(template), copy.deepcopy(template)
    bare_opt, engine_opt = engine.build_optimizer(bare_model, cfg), engine.build_optimizer(engine_model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(engine_opt, engine.LRSchedule(cfg, len(batch_list)))
    bare_loop(bare_model, bare_opt, batch_list[:1], args.device)  # warm-up: allocator, thread pools
    engine.train_one_epoch(engine_model, engine_opt, batch_list[:1], args.device, 0, scheduler)
    times: dict[str, list[float]] = {"bare": [], "engine": []}
    for r in range(args.rounds):
        for step, batch in enumerate(batch_list):
            order = ("bare", "engine") if (r + step) % 2 == 0 else ("engine", "bare")
            for name in order:
                sync(args.device)
                tic = time.perf_counter()
                if name == "bare":
                    bare_loop(bare_model, bare_opt, [batch], args.device)
                else:  # one call per batch: also counts the per-epoch setup (progress bar), so an upper bound
                    engine.train_one_epoch(engine_model, engine_opt, [batch], args.device, 1, scheduler,
                                           clip_grad_norm=args.clip or None, progress=args.progress)
                sync(args.device)
                times[name].append(time.perf_counter() - tic)
    ratios = [e / b for e, b in zip(times["engine"], times["bare"], strict=True)]
    print(f"device {args.device}, {torch.get_num_threads()} threads, input {args.min_size}/{args.max_size} px, "
          f"batch {args.batch_size}, {len(batch_list)} steps x {args.rounds} rounds")
    for name in ("bare", "engine"):
        print(f"{name:>6}: median {statistics.median(times[name]):.3f} s/step, total {sum(times[name]):.1f} s")
    ratio = statistics.median(ratios)
    print(f"engine / bare: median of paired steps {ratio:.3f} (overhead {100 * (ratio - 1):+.1f}%), "
          f"ratio of totals {sum(times['engine']) / sum(times['bare']):.3f}")


if __name__ == "__main__":
    main()
