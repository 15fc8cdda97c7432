"""The ``pedseg`` command: download the data, train, resume, evaluate and predict.

Every user error (missing data, bad config, unwritable folder, bad checkpoint) is a
:class:`~pedseg_lib.errors.PedsegError`; :func:`main` prints it as one line and exits with code 2.
Under ``torchrun`` the same ``pedseg train`` trains on every GPU with DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pedseg_lib.errors import PedsegError

EXIT_USAGE = 2


def _cmd_download(args: argparse.Namespace) -> int:
    from pedseg_lib import data
    from pedseg_lib.profiles import data_dir

    root = Path(args.root) if args.root else data_dir()
    folder = data.download_pennfudan(root)
    print(f"Penn-Fudan is ready at {folder}")
    return 0


def _train_config(args: argparse.Namespace):
    from pedseg_lib import config as C

    cfg = C.load_config(args.config) if args.config else C.load_preset(args.preset)
    cfg = C.apply_overrides(cfg, args.set or [])
    if args.out:
        cfg = C.apply_overrides(cfg, [f"output_dir={args.out}"])
    if cfg.data_root is None:
        from pedseg_lib.profiles import get_profile

        profile = get_profile(cfg.preset if cfg.preset in C.PRESETS else None)
        cfg = C.apply_overrides(cfg, [f"data_root={profile.ensure_data()}"])
    return cfg


def _print_result(result) -> None:
    """The run folder, why the run ended, which epoch ``best.pt`` holds, and where its split is recorded."""
    reason = result.history.get("status", {}).get("reason", "")
    print(f"run folder: {result.run_dir} ({reason}); best.pt is epoch {result.best_epoch}; "
          "split.json lists its train, validation and test images")


def _cmd_train(args: argparse.Namespace) -> int:
    cfg = _train_config(args)  # config errors first, before torch and the model are loaded
    from pedseg_lib import engine

    result = engine.fit(cfg, resume=False, progress=not args.quiet)
    if result.run_dir is not None:
        _print_result(result)
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from pedseg_lib import config as C
    from pedseg_lib import engine

    run_dir = Path(args.run_dir)
    cfg_path = run_dir / "config.yaml"
    if not (run_dir / "last.pt").is_file() or not cfg_path.is_file():
        raise PedsegError(f"{run_dir} is not a run folder (no last.pt and config.yaml): give the folder `pedseg train` wrote.")
    cfg = C.apply_overrides(C.load_config(cfg_path), [*(args.set or []), f"output_dir={run_dir}"])
    result = engine.fit(cfg, resume=True, progress=not args.quiet)
    if result.run_dir is not None:
        _print_result(result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command (``evaluate``/``predict`` come from :mod:`pedseg_lib.inference`)."""
    from pedseg_lib.config import PRESETS

    parser = argparse.ArgumentParser(
        prog="pedseg", description="Pedestrian instance segmentation with Mask R-CNN on Penn-Fudan."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("download", help="download and verify Penn-Fudan",
                       description="Download Penn-Fudan (about 51 MB), check its checksums and unpack it.")
    p.add_argument("--root", help="folder that will hold PennFudanPed/ (default: $PEDSEG_DATA or ./data)")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser(
        "train", help="train a model from a preset or a config file",
        description="Fine-tune Mask R-CNN. Under `torchrun --nproc_per_node=N -m pedseg_lib train ...` "
        "it trains on N processes with DistributedDataParallel.",
    )
    p.add_argument("--preset", choices=PRESETS, default="tutorial", help="recipe to start from (default: tutorial)")
    p.add_argument("--config", metavar="FILE", help="YAML file of config keys (may name its own preset:)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="change one config key; repeatable")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<preset>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("resume", help="continue an interrupted run from its last.pt",
                       description="Resume a run exactly where its last checkpoint left it.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (holds config.yaml and last.pt)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change a config key, e.g. epochs=10 to train longer; repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_resume)

    try:
        from pedseg_lib.inference import add_cli_commands
    except ImportError:  # the inference module is optional while the library is assembled
        add_cli_commands = None
    if add_cli_commands is not None:
        add_cli_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; PedsegError becomes one ``pedseg: error: ...`` line and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except PedsegError as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"pedseg: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pedseg: interrupted; `pedseg resume RUN_DIR` continues from the last checkpoint", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
