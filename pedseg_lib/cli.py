"""The ``pedseg`` command: download the data, train, resume, evaluate, predict, export, convert and check annotations.

Every command lives here; the work itself is done by the library's modules, which this one imports lazily so that
``pedseg --help`` and configuration errors answer before torch is loaded. Every user error (missing data, bad config,
unwritable folder, bad checkpoint) is a :class:`~pedseg_lib.errors.PedsegError`; :func:`main` prints it as one line
and exits with code 2. Under ``torchrun`` the same ``pedseg train`` trains on every GPU with DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pedseg_lib import __version__
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
    shortcuts = []  # --coco and --images first, so that --set may add e.g. test_annotation_file=... to them
    if getattr(args, "coco", None):
        shortcuts += _coco_shortcuts(args.coco)
    if getattr(args, "images", None):
        shortcuts.append(f"data_root={args.images}")
    if getattr(args, "crowd_as_instances", False):
        shortcuts.append("crowd=instances")
    cfg = C.apply_overrides(cfg, [*shortcuts, *(args.set or [])])
    if args.out:
        cfg = C.apply_overrides(cfg, [f"output_dir={args.out}"])
    if cfg.data_root is None and cfg.data_format == "pennfudan":  # recorded in the run's config.yaml, so `pedseg evaluate` finds the same data
        from pedseg_lib.profiles import dataset_root

        cfg = C.apply_overrides(cfg, [f"data_root={dataset_root(None, cfg.preset)}"])
    return cfg


def _coco_shortcuts(path: str) -> list[str]:
    """The config keys of ``pedseg train --coco PATH``: a COCO file, a folder with one, or a Roboflow export
    (its train/valid/test files are the split; without test/, valid/ is the test set)."""
    from pedseg_lib.data.formats import detect_input

    detected = detect_input(path)
    if detected.kind not in ("coco", "roboflow") or (detected.kind == "coco" and "train" not in detected.files):
        if detected.kind == "coco":  # a .json the COCO reader will name the problem of
            return ["data_format=coco", f"annotation_file={path}"]
        raise InputError(detected.advice("a COCO instances file or a Roboflow COCO export"))
    files = detected.files
    keys = ["data_format=coco", f"annotation_file={files['train']}"] if "train" in files else []
    if detected.kind == "roboflow":
        if "train" not in files:
            raise InputError(f"{path}: a Roboflow export without train/{'_annotations.coco.json'}; export the "
                             "dataset again with its train split")
        test = files.get("test") or files.get("valid")
        if test is not None:
            keys.append(f"test_annotation_file={test}")
        if "test" in files and "valid" in files:
            keys.append(f"val_annotation_file={files['valid']}")
    return keys


def _print_result(result) -> None:
    """The run folder, why the run ended, which epoch ``best.pt`` holds, and where its split is recorded."""
    reason = result.history.get("status", {}).get("reason", "")
    print(f"run folder: {result.run_dir} ({reason}); best.pt is epoch {result.best_epoch}; "
          "split.json lists its train, validation and test images")


def _cmd_train(args: argparse.Namespace) -> int:
    cfg = _train_config(args)  # config errors first, before torch and the model are loaded
    from pedseg_lib import engine

    print(engine.split_summary(cfg), flush=True)

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


def _check_classes(names: list[str], dataset, what: Path) -> None:
    """The model must predict the classes of the data it is evaluated on, label for label."""
    data_names = list(getattr(dataset, "dataset", dataset).class_names)
    if names != data_names:
        raise InputError(f"{what} predicts {names[1:]} but the data has classes {data_names[1:]}: "
                         "evaluate on the data the model was trained on (--data)")


def _check_writable(folder: Path) -> None:
    from pedseg_lib._io import ensure_writable_dir

    ensure_writable_dir(folder, "the output folder", "choose a writable folder with --out")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pedseg_lib._io import atomic_write_json
    from pedseg_lib.distributed import resolve_device
    from pedseg_lib.evaluation import coco_evaluate
    from pedseg_lib.inference import predict_dataset
    from pedseg_lib.model import load_checkpoint, model_classes, model_from_checkpoint

    checkpoint_path, config_path = _resolve_checkpoint(Path(args.checkpoint))
    if args.out:
        _check_writable(Path(args.out).parent)
    checkpoint = load_checkpoint(checkpoint_path)
    dataset, source = _evaluation_data(args, checkpoint, checkpoint_path, config_path)
    if args.onnx:  # the exported model, through ONNX Runtime on the CPU, one image at a time
        from pedseg_lib.runtime import OnnxPredictor

        predictor = OnnxPredictor(args.onnx)
        _check_classes(predictor.class_names, dataset, Path(args.onnx))
        predictions = _onnx_predict_dataset(predictor, dataset, args.score_threshold, not args.quiet)
        model_name, device_name = args.onnx, "onnxruntime cpu"
    else:
        device = resolve_device(args.device)
        model = model_from_checkpoint(checkpoint, checkpoint_path, map_location=device)
        _check_classes(model_classes(model)[0], dataset, checkpoint_path)
        predictions = predict_dataset(model, dataset, batch_size=args.batch_size,
                                      score_threshold=args.score_threshold, progress=not args.quiet)
        model_name, device_name = checkpoint_path, device.type
    result = coco_evaluate(dataset, predictions)
    for iou_type in ("bbox", "segm"):
        print(f"== {iou_type} ({len(dataset)} test images {source}, {model_name}, {device_name}) ==")
        print(result.table(iou_type))
    print("== AP per class (IoU 0.50:0.95 and 0.50; n/a: no instance of the class in these images) ==")
    print(result.class_table())
    if args.out:
        atomic_write_json(args.out, {"checkpoint": str(checkpoint_path), "onnx": args.onnx, "num_images": len(dataset),
                                     "test_images": source, "image_ids": [int(i) for i in dataset.indices],
                                     **result.to_dict()})
        print(f"wrote {args.out}")
    return 0


def _onnx_predict_dataset(predictor, dataset, score_threshold: float, progress: bool) -> dict[int, dict]:
    """:func:`pedseg_lib.inference.predict_dataset` with an :class:`~pedseg_lib.runtime.OnnxPredictor`."""
    from tqdm.auto import tqdm

    predictions = {}
    for i in tqdm(range(len(dataset)), desc="predict (onnx)", unit="image", disable=not progress):
        image, target = dataset[i]
        predictions[int(target["image_id"])] = predictor.predict_one(image, score_threshold)
    return predictions


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


def _predict_inputs(args: argparse.Namespace) -> tuple[str | None, Path]:
    """(checkpoint or None with --onnx, the image/folder/video) from the positional arguments."""
    wanted = 1 if args.onnx else 2
    if len(args.paths) != wanted:
        usage = ("pedseg predict --onnx MODEL.onnx INPUT --out DIR" if args.onnx
                 else "pedseg predict CHECKPOINT INPUT --out DIR (or --onnx MODEL.onnx INPUT)")
        raise InputError(f"{len(args.paths)} path(s) given ({' '.join(args.paths)}); use: {usage}")
    return (None if args.onnx else args.paths[0]), Path(args.paths[-1])


def _predictor(args: argparse.Namespace, checkpoint: str | None):
    """``(predict(images) -> list of prediction dicts, class_names, category_ids)`` of a checkpoint or an ONNX file.

    PyTorch predicts one image at a time here, as the exported graph does: batching pads images to a common size.
    """
    if args.onnx:
        from pedseg_lib.runtime import OnnxPredictor

        predictor = OnnxPredictor(args.onnx)
        return (lambda images: predictor.predict(images, score_threshold=args.score_threshold),
                predictor.class_names, predictor.category_ids)
    from pedseg_lib.distributed import resolve_device
    from pedseg_lib.inference import predict
    from pedseg_lib.model import load_model, model_classes

    model = load_model(checkpoint, map_location=resolve_device(args.device))
    names, ids = model_classes(model)
    return (lambda images: predict(model, images, score_threshold=args.score_threshold, batch_size=1)), names, ids


def _count_text(prediction: dict, class_names: list[str]) -> str:
    """``"2 person, 1 ball"`` (``"nothing found"`` without detections), in label order."""
    from collections import Counter

    counts = Counter(int(label) for label in prediction["labels"].tolist())
    return ", ".join(f"{counts[label]} {class_names[label]}" for label in sorted(counts)) or "nothing found"


def _cmd_predict(args: argparse.Namespace) -> int:
    from pedseg_lib.video import is_video

    checkpoint, source = _predict_inputs(args)
    if is_video(source):
        return _predict_video(args, checkpoint, source)
    from pedseg_lib._io import atomic_open, atomic_write_json
    from pedseg_lib.inference import load_image, prediction_to_coco_results, write_png_bytes
    from pedseg_lib.visualize import draw_instances

    files = _image_files(source)
    out = Path(args.out)
    _check_writable(out)
    predict_images, class_names, category_ids = _predictor(args, checkpoint)
    results, written = [], 0
    for image_id, path in enumerate(files):
        try:
            image = load_image(path)
        except PedsegError as exc:
            print(f"pedseg: warning: skipping {exc}", file=sys.stderr)
            continue
        (prediction,) = predict_images([image])
        overlay = draw_instances(image, prediction, score_threshold=args.score_threshold, class_names=class_names)
        with atomic_open(out / f"{path.stem}.png", "wb") as f:
            f.write(write_png_bytes(overlay))
        results.extend(prediction_to_coco_results(prediction, image_id, path.name, category_ids))
        written += 1
        print(f"{path.name}: {_count_text(prediction, class_names)} -> {out / (path.stem + '.png')}")
    if not written:
        raise InputError(f"{source}: none of the {len(files)} image(s) could be read; check the files")
    atomic_write_json(out / "predictions.json", results)
    print(f"wrote {written} overlay(s) and {out / 'predictions.json'}")
    return 0


def _predict_video(args: argparse.Namespace, checkpoint: str | None, source: Path) -> int:
    """Every frame of a video: an annotated copy and the frames' COCO results (image_id = frame index)."""
    import torch

    from pedseg_lib.inference import prediction_to_coco_results
    from pedseg_lib.video import predict_video
    from pedseg_lib.visualize import draw_instances

    predict_images, class_names, category_ids = _predictor(args, checkpoint)

    def predict_frames(frames):
        return predict_images([torch.from_numpy(frame).permute(2, 0, 1) for frame in frames])

    def draw(frame, prediction):
        image = torch.from_numpy(frame).permute(2, 0, 1)
        overlay = draw_instances(image, prediction, score_threshold=args.score_threshold, class_names=class_names)
        return overlay.permute(1, 2, 0).numpy()

    def to_results(prediction, frame_index, name):
        return prediction_to_coco_results(prediction, frame_index, name, category_ids)

    result = predict_video(source, predict_frames, args.out, draw=draw, to_results=to_results,
                           progress=not args.quiet)
    print(f"{source.name}: {result.frames} frames at {result.fps:.2f} fps, {result.detections} detection(s) -> "
          f"{result.video} and {result.predictions}")
    return 0


# --------------------------------------------------------------------------- export
def _cmd_export(args: argparse.Namespace) -> int:
    from pedseg_lib.export import export_onnx

    checkpoint, _ = _resolve_checkpoint(Path(args.checkpoint))
    result = export_onnx(checkpoint, args.out, score_threshold=args.score_threshold)
    meta = result.metadata
    print(f"wrote {result.path} ({result.megabytes:.0f} MB, {result.seconds:.0f} s) from {checkpoint}: classes "
          f"{meta['class_names']}, images of any size resized to min_size {meta['min_size']} / max_size "
          f"{meta['max_size']} inside the graph, score threshold {meta['box_score_thresh']}")
    print(f"use it with `pedseg predict --onnx {result.path} IMAGES --out DIR` or "
          "pedseg_lib.runtime.OnnxPredictor (no torch needed)")
    return 0


# --------------------------------------------------------------------------- convert, check-data
def _cmd_convert(args: argparse.Namespace) -> int:
    from pedseg_lib.data import convert, find_dataset
    from pedseg_lib.data.formats import detect_input

    detected = detect_input(args.source)
    expected = {"pennfudan": ("pennfudan",), "labelme": ("labelme",), "via": ("via",), "masks": ("unknown",)}
    if detected.kind not in expected[args.format] and detected.kind != "missing":
        raise InputError(f"pedseg convert {args.format}: " + detected.advice(f"what `convert {args.format}` reads"))
    notes: list[str] = []
    if args.format == "pennfudan":
        coco = convert.pennfudan_to_coco(args.source)
        images = (find_dataset(args.source) or Path(args.source)) / "PNGImages"
    elif args.format == "masks":
        if not args.masks:
            raise InputError("pedseg convert masks IMAGES_DIR needs --masks MASKS_DIR (the instance-id mask PNGs)")
        coco = convert.masks_to_coco(args.source, args.masks, class_name=args.class_name, mask_suffix=args.mask_suffix,
                                     semantic=args.semantic, class_names=_value_names(args.classes))
        images = Path(args.source)
    elif args.format == "via":
        coco = convert.via_to_coco(args.source, images_dir=args.images, class_name=args.class_name,
                                   attribute=args.attribute, notes=notes)
        images = Path(args.images or Path(args.source).parent)
    else:
        coco = convert.labelme_to_coco(args.source, images_dir=args.images, notes=notes)
        source = Path(args.source)
        images = Path(args.images or (source.parent if source.is_file() else source))
    for note in notes:
        print(f"pedseg: warning: {note}", file=sys.stderr)
    path = convert.write_coco(coco, args.out, images_dir=images)
    names = ", ".join(c["name"] for c in coco["categories"])
    print(f"wrote {path}: {len(coco['images'])} images, {len(coco['annotations'])} annotations, "
          f"{len(coco['categories'])} class(es): {names}")
    print(f"check it with `pedseg check-data {path} --images {images}`, train with "
          f"`pedseg train --coco {path} --images {images}`")
    return 0


def _value_names(text: str | None) -> dict[int, str] | None:
    """``--classes 127=fire,254=smoke`` as {127: "fire", 254: "smoke"}."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        value, _, name = item.partition("=")
        if not value.strip().isdigit() or not name.strip():
            raise InputError(f"--classes {text!r}: {item!r} is not VALUE=NAME; write e.g. --classes 127=fire,254=smoke")
        out[int(value)] = name.strip()
    return out


def _cmd_check_data(args: argparse.Namespace) -> int:
    from pedseg_lib.data.doctor import check_data

    report = check_data(args.path, images_dir=args.images, crowd="instances" if args.crowd_as_instances else "auto")
    print(report.format(all_findings=args.all))
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
    parser.add_argument("--version", action="version", version=f"pedseg {__version__}")
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
    p.add_argument("--coco", metavar="ANNOTATIONS.json|ROBOFLOW_DIR",
                   help="train on a COCO instances file (sets data_format=coco and annotation_file) or a Roboflow "
                        "COCO export folder (its train/valid/test files are the split)")
    p.add_argument("--images", metavar="DIR",
                   help="folder the COCO file names are relative to (data_root; default: the JSON's folder)")
    p.add_argument("--crowd-as-instances", action="store_true",
                   help="train on iscrowd-1 annotations too (masks of a tool that marks every mask iscrowd 1)")
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
    p.add_argument("--onnx", metavar="MODEL.onnx",
                   help="evaluate this `pedseg export` file (ONNX Runtime) on the run's test images instead")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="draw predicted objects on images or a video and write COCO results",
                       description="Predict with a checkpoint (or an exported model: --onnx) on one image, every "
                                   "image of a folder (frames included), or a video file "
                                   "(.mp4, .avi, .mov, .mkv, .webm). Images: an overlay PNG each and "
                                   "predictions.json (COCO results, RLE masks, the training file's category ids). "
                                   "A video: NAME_pred.mp4 with the overlays and NAME_predictions.json (image_id = "
                                   "frame index).")
    p.add_argument("paths", nargs="+", metavar="[CHECKPOINT] INPUT",
                   help="a .pt checkpoint (e.g. runs/tutorial/best.pt; not with --onnx), then an image, a folder or "
                        "a video")
    p.add_argument("--onnx", metavar="MODEL.onnx", help="predict with this `pedseg export` file through ONNX Runtime")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--score-threshold", type=float, default=0.5, help="keep detections scoring at least this (0.5)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (videos)")
    _add_device(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (images of any size)",
                       description="Write the model of a checkpoint (or a run folder's best.pt) as an ONNX file "
                                   "(opset 17) that takes one float32 RGB image [3,H,W] of any size and holds the "
                                   "whole model, pre- and post-processing included; class names and input sizes "
                                   "go into its metadata. Run it with `pedseg predict --onnx` or "
                                   "pedseg_lib.runtime.OnnxPredictor, without torch.")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run folder or .pt checkpoint")
    p.add_argument("--out", required=True, metavar="FILE.onnx", help="the ONNX file to write (atomically)")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="the graph drops detections below this (default: the model's, torchvision's 0.05)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "convert", help="write COCO instances JSON from Penn-Fudan, mask PNGs, LabelMe or VIA files",
        description="Convert annotations to one COCO instances file (what `pedseg train --coco` and "
                    "`pedseg check-data` read). pennfudan: a Penn-Fudan folder (RLE masks; file names relative "
                    "to its PNGImages/). masks: a folder of images and a folder of instance-id mask PNGs "
                    "(the k-th object painted with value k, 0 background), matched by name; class-valued masks "
                    "need --semantic. labelme: a folder of LabelMe .json files (polygon, rectangle, circle and "
                    "mask shapes; line, linestrip, point and __ignore__ skipped). via: a VGG Image Annotator JSON "
                    "file (polygon, rect, circle, ellipse). CVAT, Label Studio and Roboflow export COCO instances "
                    "files directly: no conversion needed.")
    p.add_argument("format", choices=("pennfudan", "masks", "labelme", "via"), help="what SOURCE holds")
    p.add_argument("source", metavar="SOURCE",
                   help="the Penn-Fudan folder, the images folder, the LabelMe folder (or file), or the VIA file")
    p.add_argument("--out", required=True, metavar="FILE.json", help="the COCO file to write (atomically)")
    p.add_argument("--masks", metavar="DIR", help="masks: the folder of instance-id mask PNGs")
    p.add_argument("--mask-suffix", default="_mask", help="masks: IMAGE_STEM + this + .png names a mask (_mask)")
    p.add_argument("--class-name", default="object",
                   help="masks, via: the name of the one class (default: object)")
    p.add_argument("--semantic", action="store_true",
                   help="masks: the masks hold class values (e.g. 127 fire, 254 smoke); every connected region of a "
                        "value is an object")
    p.add_argument("--classes", metavar="VALUE=NAME,...", help="masks --semantic: class names, e.g. 127=fire,254=smoke")
    p.add_argument("--attribute", metavar="NAME", help="via: the region attribute that names the class")
    p.add_argument("--images", metavar="DIR",
                   help="labelme, via: folder of the images (default: beside each .json)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "check-data", help="find problems in a COCO file or a Penn-Fudan folder before training",
        description="Check a COCO instances file against its images (or a Penn-Fudan folder) and print every "
                    "finding with the file, the entry and what to do, then a per-class count table. Exits 1 "
                    "when there are errors (the data cannot be used as is), 0 with warnings only.")
    p.add_argument("path", metavar="ANNOTATIONS.json|ROBOFLOW_DIR|PENNFUDAN_ROOT",
                   help="a COCO instances file, a Roboflow COCO export folder or a Penn-Fudan folder")
    p.add_argument("--images", metavar="DIR", help="folder the COCO file names are relative to (default: the JSON's)")
    p.add_argument("--crowd-as-instances", action="store_true",
                   help="count iscrowd-1 annotations as instances (what `pedseg train --crowd-as-instances` does)")
    p.add_argument("--all", action="store_true",
                   help="one line per finding (default: one line per kind, with a count and the first three)")
    p.set_defaults(func=_cmd_check_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; PedsegError becomes one ``pedseg: error: ...`` line and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not in the interpreter's last flush
    except PedsegError as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"pedseg: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pedseg: interrupted; `pedseg resume RUN_DIR` continues from the last checkpoint", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `pedseg check-data ... | head`: the reader left; stop quietly, as other tools do
        _silence_stdout()
        return 141
    return int(code or 0)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush does not fail on the closed pipe again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
