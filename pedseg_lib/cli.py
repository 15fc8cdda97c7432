"""The ``pedseg`` command: download the data, train, resume, evaluate, predict, convert and check annotations.

Every command lives here; the work itself is done by the library's modules, which this one imports lazily so that
``pedseg --help`` and configuration errors answer before torch is loaded. Every user error (missing data, bad config,
unwritable folder, bad checkpoint) is a :class:`~pedseg_lib.errors.PedsegError`; :func:`main` prints it as one line
and exits with code 2. Under ``torchrun`` the same ``pedseg train`` trains on every GPU with DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pedseg_lib.config import DEVICES, PRESETS
from pedseg_lib.errors import CheckpointError, InputError, PedsegError

EXIT_USAGE = 2


# --------------------------------------------------------------------------- download
def _cmd_download(args: argparse.Namespace) -> int:
    from pedseg_lib import data
    from pedseg_lib.profiles import data_dir

    root = Path(args.root) if args.root else data_dir()
    folder = data.download_pennfudan(root)
    print(f"Penn-Fudan is ready at {folder}")
    return 0


# --------------------------------------------------------------------------- train, resume
def _train_config(args: argparse.Namespace):
    from pedseg_lib import config as C

    cfg = C.load_config(args.config) if args.config else C.load_preset(args.preset)
    cfg = C.apply_overrides(cfg, args.set or [])
    if args.out:
        cfg = C.apply_overrides(cfg, [f"output_dir={args.out}"])
    if getattr(args, "coco", None):
        cfg = C.apply_overrides(cfg, ["data_format=coco", f"annotation_file={args.coco}"])
    if getattr(args, "images", None):
        cfg = C.apply_overrides(cfg, [f"data_root={args.images}"])
    if cfg.data_root is None and cfg.data_format == "pennfudan":  # recorded in the run's config.yaml, so `pedseg evaluate` finds the same data
        from pedseg_lib.profiles import dataset_root

        cfg = C.apply_overrides(cfg, [f"data_root={dataset_root(None, cfg.preset)}"])
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
        raise CheckpointError(f"{run_dir} is not a run folder (no last.pt and config.yaml): give the folder "
                              "`pedseg train` wrote.")
    cfg = C.apply_overrides(C.load_config(cfg_path), [*(args.set or []), f"output_dir={run_dir}"])
    result = engine.fit(cfg, resume=True, progress=not args.quiet)
    if result.run_dir is not None:
        _print_result(result)
    return 0


# --------------------------------------------------------------------------- evaluate
def _resolve_checkpoint(path: Path) -> tuple[Path, Path | None]:
    """(checkpoint, config.yaml or None) for a run folder or a checkpoint file."""
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                config = path / "config.yaml"
                return path / name, config if config.is_file() else None
        raise CheckpointError(f"{path}: no best.pt or last.pt in this run folder; train first (pedseg train)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint or run folder; check the path")
    return path, None


def _evaluation_data(args: argparse.Namespace, checkpoint: dict, checkpoint_path: Path, config_path: Path | None):
    """The run's test images and where their list comes from, on ``--data`` if given.

    The list is the ``test`` entry of the ``split.json`` beside the checkpoint (in the run folder) when there
    is one, else the test split recomputed from the run's config (:func:`pedseg_lib.engine.test_split`,
    the same one chapter 5 evaluates).

    Returns:
        ``(dataset, source)``: an unaugmented Subset and a few words naming where its indices come from.
    """
    import dataclasses

    from torch.utils.data import Subset

    from pedseg_lib.config import TrainConfig, load_config
    from pedseg_lib.engine import SPLIT_FILE, load_split, run_dataset, test_split

    if config_path is not None:
        cfg = load_config(config_path)
    else:
        try:
            cfg = TrainConfig(**(checkpoint.get("config") or {}))
        except TypeError as exc:
            raise CheckpointError(f"{args.checkpoint}: its training config does not fit this version ({exc}); "
                                  "pass the run folder with its config.yaml instead") from None
    if args.data:
        cfg = dataclasses.replace(cfg, data_root=args.data)
    split_path = checkpoint_path.parent / SPLIT_FILE
    if not split_path.is_file():
        return test_split(cfg), "recomputed from the run's config"
    dataset = run_dataset(cfg)
    test = load_split(split_path, dataset_size=len(dataset))["test"]
    return Subset(dataset, test), f"from {split_path}"


def _check_classes(model, dataset, checkpoint_path: Path) -> None:
    """The checkpoint must predict the classes of the data it is evaluated on, label for label."""
    from pedseg_lib.model import model_classes

    names = model_classes(model)[0]
    data_names = list(getattr(dataset, "dataset", dataset).class_names)
    if names != data_names:
        raise InputError(f"{checkpoint_path} predicts {names[1:]} but the data has classes {data_names[1:]}: "
                         "evaluate on the data the model was trained on (--data)")


def _check_writable(folder: Path) -> None:
    from pedseg_lib._io import ensure_writable_dir

    ensure_writable_dir(folder, "the output folder", "choose a writable folder with --out")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pedseg_lib._io import atomic_write_json
    from pedseg_lib.distributed import resolve_device
    from pedseg_lib.evaluation import coco_evaluate
    from pedseg_lib.inference import predict_dataset
    from pedseg_lib.model import load_checkpoint, model_from_checkpoint

    checkpoint_path, config_path = _resolve_checkpoint(Path(args.checkpoint))
    if args.out:
        _check_writable(Path(args.out).parent)
    device = resolve_device(args.device)
    checkpoint = load_checkpoint(checkpoint_path)
    model = model_from_checkpoint(checkpoint, checkpoint_path, map_location=device)
    dataset, source = _evaluation_data(args, checkpoint, checkpoint_path, config_path)
    _check_classes(model, dataset, checkpoint_path)
    predictions = predict_dataset(model, dataset, batch_size=args.batch_size,
                                  score_threshold=args.score_threshold, progress=not args.quiet)
    result = coco_evaluate(dataset, predictions)
    for iou_type in ("bbox", "segm"):
        print(f"== {iou_type} ({len(dataset)} test images {source}, {checkpoint_path}, {device.type}) ==")
        print(result.table(iou_type))
    print("== AP per class (IoU 0.50:0.95 and 0.50; n/a: no instance of the class in these images) ==")
    print(result.class_table())
    if args.out:
        atomic_write_json(args.out, {"checkpoint": str(checkpoint_path), "num_images": len(dataset),
                                     "test_images": source, "image_ids": [int(i) for i in dataset.indices],
                                     **result.to_dict()})
        print(f"wrote {args.out}")
    return 0


# --------------------------------------------------------------------------- predict
def _image_files(path: Path) -> list[Path]:
    from pedseg_lib.inference import IMAGE_SUFFIXES

    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: no such image or folder; check the path")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    return files


def _count_text(prediction: dict, class_names: list[str]) -> str:
    """``"2 person, 1 ball"`` (``"nothing"`` without detections), in label order."""
    from collections import Counter

    counts = Counter(int(label) for label in prediction["labels"].tolist())
    return ", ".join(f"{counts[label]} {class_names[label]}" for label in sorted(counts)) or "nothing found"


def _cmd_predict(args: argparse.Namespace) -> int:
    from pedseg_lib._io import atomic_open, atomic_write_json
    from pedseg_lib.distributed import resolve_device
    from pedseg_lib.inference import load_image, predict, prediction_to_coco_results, write_png_bytes
    from pedseg_lib.model import load_model, model_classes
    from pedseg_lib.visualize import draw_instances

    files = _image_files(Path(args.images))
    out = Path(args.out)
    _check_writable(out)
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, map_location=device)
    class_names, category_ids = model_classes(model)
    results, written = [], 0
    for image_id, path in enumerate(files):
        try:
            image = load_image(path)
        except PedsegError as exc:
            print(f"pedseg: warning: skipping {exc}", file=sys.stderr)
            continue
        (prediction,) = predict(model, [image], score_threshold=args.score_threshold)
        overlay = draw_instances(image, prediction, score_threshold=args.score_threshold, class_names=class_names)
        with atomic_open(out / f"{path.stem}.png", "wb") as f:
            f.write(write_png_bytes(overlay))
        results.extend(prediction_to_coco_results(prediction, image_id, path.name, category_ids))
        written += 1
        print(f"{path.name}: {_count_text(prediction, class_names)} -> {out / (path.stem + '.png')}")
    if not written:
        raise InputError(f"{args.images}: none of the {len(files)} image(s) could be read; check the files")
    atomic_write_json(out / "predictions.json", results)
    print(f"wrote {written} overlay(s) and {out / 'predictions.json'}")
    return 0


# --------------------------------------------------------------------------- convert, check-data
def _cmd_convert(args: argparse.Namespace) -> int:
    from pedseg_lib.data import convert, find_dataset

    if args.format == "pennfudan":
        coco = convert.pennfudan_to_coco(args.source)
        images = (find_dataset(args.source) or Path(args.source)) / "PNGImages"
    elif args.format == "masks":
        if not args.masks:
            raise InputError("pedseg convert masks IMAGES_DIR needs --masks MASKS_DIR (the instance-id mask PNGs)")
        coco = convert.masks_to_coco(args.source, args.masks, class_name=args.class_name, mask_suffix=args.mask_suffix)
        images = Path(args.source)
    else:
        coco = convert.labelme_to_coco(args.source, images_dir=args.images)
        images = Path(args.images or args.source)
    path = convert.write_coco(coco, args.out, images_dir=images)
    names = ", ".join(c["name"] for c in coco["categories"])
    print(f"wrote {path}: {len(coco['images'])} images, {len(coco['annotations'])} annotations, "
          f"{len(coco['categories'])} class(es): {names}")
    print(f"check it with `pedseg check-data {path} --images {images}`, train with "
          f"`pedseg train --coco {path} --images {images}`")
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    from pedseg_lib.data.doctor import check_data

    report = check_data(args.path, images_dir=args.images)
    print(report)
    return 1 if report.errors else 0


# --------------------------------------------------------------------------- parser
def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where the model runs (default auto: a CUDA GPU when visible)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
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
    p.add_argument("--coco", metavar="ANNOTATIONS.json",
                   help="train on a COCO instances file (sets data_format=coco and annotation_file)")
    p.add_argument("--images", metavar="DIR",
                   help="folder the COCO file names are relative to (data_root; default: the JSON's folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("resume", help="continue an interrupted run from its last.pt",
                       description="Resume a run exactly where its last checkpoint left it.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (holds config.yaml and last.pt)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change a config key, e.g. epochs=10 to train longer; repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("evaluate", help="COCO box and mask AP of a checkpoint on the test split",
                       description="Evaluate a run folder (its best.pt, else last.pt) or a checkpoint file on "
                                   "the run's test images (the test list of the split.json beside the "
                                   "checkpoint, else the test split of its configuration) and print the "
                                   "COCO tables.")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run folder or .pt checkpoint")
    p.add_argument("--data", metavar="DIR", help="Penn-Fudan folder (default: the run's data root or the profile's)")
    p.add_argument("--out", metavar="FILE.json", help="also write the metrics and per-image AP as JSON")
    p.add_argument("--batch-size", type=int, default=2, metavar="N", help="images per forward pass (default 2)")
    p.add_argument("--score-threshold", type=float, default=0.05, help="drop detections below this (default 0.05)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="draw predicted pedestrians on images and write COCO results",
                       description="Predict pedestrians in one image or every image of a folder; writes an "
                                   "overlay PNG per image and predictions.json (COCO results, RLE masks).")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt checkpoint (e.g. runs/tutorial/best.pt)")
    p.add_argument("images", metavar="IMAGE_OR_FOLDER", help="an image file or a folder of images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--score-threshold", type=float, default=0.5, help="keep detections scoring at least this (0.5)")
    _add_device(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "convert", help="write COCO instances JSON from Penn-Fudan, mask PNGs or LabelMe files",
        description="Convert annotations to one COCO instances file (what `pedseg train --coco` and "
                    "`pedseg check-data` read). pennfudan: a Penn-Fudan folder (RLE masks; file names relative "
                    "to its PNGImages/). masks: a folder of images and a folder of instance-id mask PNGs "
                    "(the k-th object painted with value k, 0 background), matched by name. labelme: a folder "
                    "of LabelMe .json files (polygon and rectangle shapes). CVAT, Label Studio and Roboflow "
                    "export COCO instances files directly: no conversion needed.")
    p.add_argument("format", choices=("pennfudan", "masks", "labelme"), help="what SOURCE holds")
    p.add_argument("source", metavar="SOURCE", help="the Penn-Fudan folder, the images folder, or the LabelMe folder")
    p.add_argument("--out", required=True, metavar="FILE.json", help="the COCO file to write (atomically)")
    p.add_argument("--masks", metavar="DIR", help="masks: the folder of instance-id mask PNGs")
    p.add_argument("--mask-suffix", default="_mask", help="masks: IMAGE_STEM + this + .png names a mask (_mask)")
    p.add_argument("--class-name", default="object", help="masks: the name of the one class (default: object)")
    p.add_argument("--images", metavar="DIR", help="labelme: folder of the images (default: beside each .json)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "check-data", help="find problems in a COCO file or a Penn-Fudan folder before training",
        description="Check a COCO instances file against its images (or a Penn-Fudan folder) and print every "
                    "finding with the file, the entry and what to do, then a per-class count table. Exits 1 "
                    "when there are errors (the data cannot be used as is), 0 with warnings only.")
    p.add_argument("path", metavar="ANNOTATIONS.json|PENNFUDAN_ROOT", help="a COCO instances file or a Penn-Fudan folder")
    p.add_argument("--images", metavar="DIR", help="folder the COCO file names are relative to (default: the JSON's)")
    p.set_defaults(func=_cmd_check_data)
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
