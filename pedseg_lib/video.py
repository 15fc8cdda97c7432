"""Videos: predict every frame of a clip, write an annotated video and the per-frame COCO results.

Decoding and encoding go through PyAV (``import av``), whose wheels bundle FFmpeg, so no system FFmpeg is
needed. PyAV is an optional dependency (``pip install 'pedseg[deploy]'``); it is imported inside the functions,
so importing this module never needs it.

The model is not called here: :func:`predict_video` takes the prediction, drawing and COCO conversion as
callables (``pedseg_lib.inference.predict``, ``pedseg_lib.visualize.draw_instances`` and
``pedseg_lib.inference.prediction_to_coco_results`` adapted to frames), which keeps this module in the layer of
``inference`` and ``visualize`` and lets a test give it a fake model.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pedseg_lib._io import atomic_write_json, ensure_writable_dir
from pedseg_lib.errors import InputError, MissingDependencyError, OutputError

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoResult",
    "is_video",
    "predict_video",
    "read_frames",
    "write_video",
]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
"""File suffixes treated as videos (lower case); the one list the command line and the library use."""

#: Encoders tried in order for each output suffix; the first one this PyAV build can open is used.
#: libx264 (H.264) plays everywhere; mpeg4 (MPEG-4 part 2) is FFmpeg's own encoder, present in any build.
_ENCODERS = {".webm": ("libvpx-vp9", "libvpx")}
_DEFAULT_ENCODERS = ("libx264", "mpeg4")
_DEFAULT_FPS = Fraction(25)
_CONVERT_HINT = "check the file or convert it with ffmpeg (ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4)"


@dataclass
class VideoResult:
    """What :func:`predict_video` wrote.

    Attributes:
        video: the annotated video (``<out_dir>/<stem>_pred.mp4``).
        predictions: the COCO results of every frame (``<out_dir>/<stem>_predictions.json``).
        frames: how many frames were predicted.
        fps: the frame rate of the input, which the annotated video keeps.
        detections: how many COCO results (one per detected instance) were written, over all frames.
    """

    video: Path
    predictions: Path
    frames: int
    fps: float
    detections: int


def is_video(path: str | os.PathLike) -> bool:
    """True when ``path`` ends in one of :data:`VIDEO_SUFFIXES` (case-insensitive); the file is not opened."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise MissingDependencyError("reading and writing videos needs PyAV, which is not installed: "
                                "pip install 'pedseg[deploy]' (or pip install av)") from None
    return av


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _undecodable(path: Path, exc: BaseException | str) -> InputError:
    reason = exc if isinstance(exc, str) else _one_line(exc)
    return InputError(f"{path} cannot be decoded as a video ({reason}); {_CONVERT_HINT}")


def _open_video(path: Path) -> Any:
    """An open PyAV input container with at least one video stream, or InputError."""
    av = _av()
    if not path.is_file():
        raise InputError(f"{path}: no such video file; check the path")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise _undecodable(path, exc) from None
    if not container.streams.video:
        container.close()
        raise _undecodable(path, "no video stream")
    return container


def _frame_rate(stream: Any) -> Fraction:
    """The stream's frame rate: average, else guessed, else base rate, else 25."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            rate = Fraction(rate)
            if rate > 0:
                return rate
    return _DEFAULT_FPS


def _decode(container: Any, path: Path, max_frames: int | None) -> Iterator[np.ndarray]:
    """RGB uint8 [H,W,3] frames of the first video stream; decoding errors become InputError."""
    av = _av()
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    frames = container.decode(stream)
    index = 0
    while max_frames is None or index < max_frames:
        try:
            frame = next(frames)
            rgb = frame.to_ndarray(format="rgb24")
        except StopIteration:
            return
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise _undecodable(path, f"at frame {index}: {_one_line(exc)}") from None
        yield rgb
        index += 1


def read_frames(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """The decoded frames of a video, in order.

    Args:
        path: a video file.
        max_frames: stop after this many frames; None = all.

    Yields:
        RGB uint8 arrays [H,W,3].

    Raises:
        InputError: the file is missing, has no video stream or cannot be decoded.
        MissingDependencyError: PyAV is not installed.
    """
    path = Path(path)
    container = _open_video(path)
    try:
        yield from _decode(container, path, max_frames)
    finally:
        container.close()


@functools.cache
def _encoder(suffix: str) -> str:
    """The first encoder for ``suffix`` that this PyAV build has and can open."""
    av = _av()
    names = _ENCODERS.get(suffix, _DEFAULT_ENCODERS)
    for name in names:
        try:
            context = av.CodecContext.create(name, "w")
            context.width, context.height, context.pix_fmt = 16, 16, "yuv420p"
            context.time_base = Fraction(1, 25)
            context.open()
        except (av.FFmpegError, ValueError, OSError):
            continue
        return name
    raise MissingDependencyError(f"this PyAV build has none of the video encoders {', '.join(names)}: "
                            "pip install --force-reinstall av")


def _even(rgb: np.ndarray) -> np.ndarray:
    """Pad an odd height or width by one row/column copied from the edge (yuv420p needs even sizes)."""
    height, width = rgb.shape[:2]
    if height % 2 or width % 2:
        rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(rgb)


class _Writer:
    """Encode RGB frames into a temporary file beside ``path``; :meth:`commit` moves it over ``path``."""

    def __init__(self, path: Path, fps: Fraction):
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise OutputError(f"{path}: cannot write a video with the suffix {path.suffix!r}; "
                              f"use one of {', '.join(VIDEO_SUFFIXES)}")
        self.av = _av()
        self.path, self.fps = path, fps
        self.codec = _encoder(path.suffix.lower())
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:  # like tempfile.mkstemp, but with the usual permissions (0o666 less the umask), not 0o600
            tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix.lower()}"
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:
                continue
        self.tmp = tmp
        self.container: Any = None
        self.stream: Any = None
        self.count = 0

    def write(self, rgb: np.ndarray) -> None:
        rgb = _even(rgb)
        if self.container is None:
            self.container = self.av.open(str(self.tmp), "w")
            self.stream = self.container.add_stream(self.codec, rate=self.fps)
            self.stream.height, self.stream.width = rgb.shape[:2]
            self.stream.pix_fmt = "yuv420p"
            if self.codec == "mpeg4":
                self.stream.bit_rate = 4_000_000  # its default (200 kb/s) blurs thin boxes and captions
        elif rgb.shape[:2] != (self.stream.height, self.stream.width):
            raise ValueError(f"frame {self.count} is {rgb.shape[1]}x{rgb.shape[0]}, the video "
                             f"{self.stream.width}x{self.stream.height}")
        frame = self.av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = self.count, 1 / self.fps
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.count += 1

    def finish(self) -> None:
        """Flush the encoder and close the temporary file (complete but not yet at ``path``)."""
        if self.container is None:
            raise ValueError("no frames to write")
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        self.container = None

    def commit(self) -> Path:
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.close()
            self.container = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def _as_fps(fps: float | Fraction) -> Fraction:
    rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps={fps}: must be positive")
    return rate


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float | Fraction) -> Path:
    """Encode RGB frames into a video file, atomically (nothing appears at ``path`` unless it all worked).

    The encoder is the first of libx264 (H.264), mpeg4 that the installed PyAV has (VP9/VP8 for ``.webm``), with
    pixel format yuv420p, which needs an even width and height: a frame with an odd one is padded by one
    row/column copied from its edge.

    Args:
        frames: RGB uint8 arrays [H,W,3], all of one size.
        path: the video to write; its suffix (one of :data:`VIDEO_SUFFIXES`) chooses the container.
        fps: frames per second (a float, or a :class:`fractions.Fraction` such as ``Fraction(30000, 1001)``).

    Returns:
        ``path`` as a Path.
    """
    writer = _Writer(Path(path), _as_fps(fps))
    try:
        for frame in frames:
            writer.write(_check_rgb(np.asarray(frame), "frame"))
        writer.finish()
        return writer.commit()
    except BaseException:
        writer.discard()
        raise


def _check_rgb(rgb: np.ndarray, what: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or (shape is not None and rgb.shape != shape):
        expected = f"{shape}" if shape is not None else "[H,W,3]"
        raise ValueError(f"{what} must be a uint8 array {expected}, got {rgb.dtype} {rgb.shape}")
    return rgb


def _batches(frames: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_video(
    path: str | os.PathLike,
    predict_frames: Callable[[list[np.ndarray]], list[dict]],
    out_dir: str | os.PathLike,
    *,
    draw: Callable[[np.ndarray, dict], np.ndarray],
    to_results: Callable[[dict, int, str], list[dict]],
    batch_size: int = 4,
    progress: bool = True,
    max_frames: int | None = None,
) -> VideoResult:
    """Predict every frame of a video; write the annotated video and the frames' COCO results.

    Frames are decoded with PyAV, predicted ``batch_size`` at a time, drawn, and encoded into
    ``<out_dir>/<stem>_pred.mp4`` at the input's frame rate and size (H.264 with libx264, else MPEG-4 part 2
    with FFmpeg's mpeg4 encoder: whichever the installed PyAV has; pixel format yuv420p). yuv420p needs an even
    width and height, so a video with an odd one gets one row/column copied from its bottom/right edge in the
    output; the predictions and the COCO results are those of the original frame. The results of all frames go
    to ``<out_dir>/<stem>_predictions.json``: one COCO results list whose ``image_id`` is the frame index
    (0-based) and whose ``file_name`` is ``"<video name>#frame=<index>"``. Both files are written atomically:
    on any error neither is left behind, half-written or otherwise.

    Args:
        path: a video file (e.g. one of :data:`VIDEO_SUFFIXES`).
        predict_frames: ``callable(list of RGB uint8 [H,W,3] arrays) -> list of predictions``, one per frame, as
            :func:`pedseg_lib.inference.predict` returns them (``boxes`` [N,4] XYXY, ``scores``, ``labels``,
            ``masks`` [N,1,H,W]; tensors or arrays).
        out_dir: the folder to write to (created if needed).
        draw: ``callable(frame, prediction) -> RGB uint8 [H,W,3]``, the overlay written to the video.
        to_results: ``callable(prediction, image_id, file_name) -> list of COCO result dicts``
            (e.g. :func:`pedseg_lib.inference.prediction_to_coco_results`); what it returns is kept as is.
        batch_size: frames per call of ``predict_frames``.
        progress: show a tqdm bar over the frames (its total is the stream's frame count when the file has it).
        max_frames: predict only the first this many frames; None = all.

    Returns:
        A :class:`VideoResult` with both paths, the frame count, the frame rate and the number of detections.

    Raises:
        InputError: the file is missing, cannot be opened or decoded, has no video stream or no frame.
        OutputError: ``out_dir`` cannot be created or written.
        MissingDependencyError: PyAV is not installed.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        fps = _frame_rate(stream)
        total = stream.frames or None
        if max_frames is not None:
            total = min(total, max_frames) if total else max_frames
        out_dir = ensure_writable_dir(out_dir, "the output folder",
                                      "choose another folder (--out) or fix its permissions")
        video_out = out_dir / f"{path.stem}_pred.mp4"
        json_out = out_dir / f"{path.stem}_predictions.json"
        writer = _Writer(video_out, fps)
        try:
            results: list[dict] = []
            index = 0
            shape = None
            with tqdm(total=total, unit="frame", desc=path.name, disable=not progress) as bar:
                for batch in _batches(_decode(container, path, max_frames), max(1, batch_size)):
                    shape = shape or batch[0].shape
                    for offset, frame in enumerate(batch):
                        if frame.shape != shape:
                            raise InputError(f"{path}: frame {index + offset} is {frame.shape[1]}x{frame.shape[0]}, "
                                             f"the first {shape[1]}x{shape[0]}; the size must not change: "
                                             f"{_CONVERT_HINT}")
                    predictions = list(predict_frames(batch))
                    if len(predictions) != len(batch):
                        raise ValueError(f"predict_frames returned {len(predictions)} predictions "
                                         f"for {len(batch)} frames")
                    for frame, prediction in zip(batch, predictions, strict=True):
                        overlay = _check_rgb(np.asarray(draw(frame, prediction)), "draw's result", frame.shape)
                        writer.write(overlay)
                        results.extend(to_results(prediction, index, f"{path.name}#frame={index}"))
                        index += 1
                    bar.update(len(batch))
            if index == 0:
                raise _undecodable(path, "no video frame")
            writer.finish()
            atomic_write_json(json_out, results)
            writer.commit()
        except BaseException:
            writer.discard()
            raise
    finally:
        container.close()
    return VideoResult(video=video_out, predictions=json_out, frames=index, fps=float(fps), detections=len(results))
