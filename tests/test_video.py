"""pedseg_lib.video: a clip made during the test goes through predict_video with a fake model whose truth the test
knows (coloured rectangles), then once with a tiny real Mask R-CNN; bad input and unwritable folders give one line."""

from __future__ import annotations

import importlib.util
import json
import sys
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from pedseg_lib.errors import InputError, MissingDependencyError, OutputError
from pedseg_lib.video import (
    VIDEO_SUFFIXES,
    VideoResult,
    is_video,
    predict_video,
    read_frames,
    write_video,
)

requires_av = pytest.mark.skipif(importlib.util.find_spec("av") is None,
                                 reason="PyAV is not installed (pip install 'pedseg[deploy]')")

HEIGHT, WIDTH, FPS, FRAMES = 64, 96, 10, 12
RED, GREEN = (230, 30, 30), (30, 230, 30)
EMPTY_FRAME = 5  # a frame with no rectangle: no detection


def truth(index: int) -> list[tuple[tuple[int, int, int], tuple[int, int, int, int]]]:
    """The rectangles of frame ``index``: (colour, (x0, y0, x1, y1)) with x1/y1 exclusive."""
    if index == EMPTY_FRAME:
        return []
    x = 4 + 3 * index
    rects = [(RED, (x, 16, x + 16, 48))]
    if index % 3 == 0:
        rects.append((GREEN, (70, 8, 86, 40)))
    return rects


def make_frame(index: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    frame = np.full((height, width, 3), 60, np.uint8)
    for colour, (x0, y0, x1, y1) in truth(index):
        frame[y0:y1, x0:x1] = colour
    return frame


def fake_predict(frames: list[np.ndarray]) -> list[dict]:
    """One detection per coloured region: the mask is where the colour dominates, the box its extent."""
    predictions = []
    for frame in frames:
        rgb = frame.astype(np.int16)
        boxes, masks, scores = [], [], []
        for channel, score in ((0, 0.9), (1, 0.8)):
            others = [c for c in range(3) if c != channel]
            mask = (rgb[..., channel] > 150) & (rgb[..., others] < 110).all(axis=-1)
            if mask.sum() < 20:
                continue
            ys, xs = np.nonzero(mask)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            masks.append(mask[None].astype(np.float32))
            scores.append(score)
        height, width = frame.shape[:2]
        predictions.append({
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.ones(len(scores), dtype=torch.int64),
            "masks": torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, 1, height, width),
        })
    return predictions


def draw(frame: np.ndarray, prediction: dict) -> np.ndarray:
    from pedseg_lib.visualize import draw_instances

    return draw_instances(torch.from_numpy(frame).permute(2, 0, 1), prediction).permute(1, 2, 0).numpy()


def to_results(prediction: dict, image_id: int, file_name: str) -> list[dict]:
    from pedseg_lib.inference import prediction_to_coco_results

    return prediction_to_coco_results(prediction, image_id, file_name)


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_video((make_frame(i) for i in range(FRAMES)), tmp_path / "clip.mp4", FPS)


def run(path, out_dir, **kwargs) -> VideoResult:
    return predict_video(path, kwargs.pop("predict_frames", fake_predict), out_dir, draw=draw,
                         to_results=to_results, progress=False, **kwargs)


def stream_info(path: Path) -> tuple[Fraction, int, int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.average_rate, stream.codec_context.width, stream.codec_context.height


def assert_one_line_nothing_written(excinfo, path: Path, out_dir: Path) -> None:
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message
    assert not out_dir.exists() or not any(out_dir.iterdir()), sorted(out_dir.iterdir())


def test_is_video():
    assert all(is_video(f"a/clip{suffix}") for suffix in VIDEO_SUFFIXES)
    assert is_video("CLIP.MP4") and not is_video("frame.png") and not is_video("clip")


@requires_av
def test_write_video_and_read_frames_round_trip(tmp_path):
    frames = [make_frame(i) for i in range(FRAMES)]
    path = write_video(frames, tmp_path / "sub" / "clip.mp4", Fraction(30000, 1001))
    assert path == tmp_path / "sub" / "clip.mp4" and sorted(p.name for p in path.parent.iterdir()) == ["clip.mp4"]
    decoded = list(read_frames(path))
    assert len(decoded) == FRAMES and decoded[0].shape == (HEIGHT, WIDTH, 3) and decoded[0].dtype == np.uint8
    assert max(np.abs(a.astype(int) - b).mean() for a, b in zip(decoded, frames, strict=True)) < 3
    assert stream_info(path) == (Fraction(30000, 1001), WIDTH, HEIGHT)
    assert len(list(read_frames(path, max_frames=3))) == 3


@requires_av
def test_predict_video_writes_the_annotated_video_and_per_frame_results(clip, tmp_path):
    out = tmp_path / "out"
    result = run(clip, out)
    assert result.video == out / "clip_pred.mp4" and result.predictions == out / "clip_predictions.json"
    assert sorted(p.name for p in out.iterdir()) == ["clip_pred.mp4", "clip_predictions.json"]  # no temporary left
    assert result.frames == FRAMES and result.fps == FPS

    # The annotated video: same frame count, size and frame rate; each frame is the drawing of its prediction.
    assert stream_info(result.video) == (FPS, WIDTH, HEIGHT)
    inputs = list(read_frames(clip))
    outputs = list(read_frames(result.video))
    assert len(outputs) == FRAMES
    for frame, annotated in zip(inputs, outputs, strict=True):
        expected = draw(frame, fake_predict([frame])[0])
        assert np.abs(annotated.astype(int) - expected).mean() < 4
    assert np.abs(outputs[0].astype(int) - inputs[0]).mean() > 1  # something was drawn

    # The results: image_id = frame index, file_name names the frame, the detections are the rectangles.
    results = json.loads(result.predictions.read_text())
    assert result.detections == len(results) == sum(len(truth(i)) for i in range(FRAMES))
    assert sorted({r["image_id"] for r in results}) == [i for i in range(FRAMES) if i != EMPTY_FRAME]
    for index, frame in enumerate(inputs):
        rows = [r for r in results if r["image_id"] == index]
        assert rows == to_results(fake_predict([frame])[0], index, f"clip.mp4#frame={index}")
        assert len(rows) == len(truth(index))
        for row, (_, (x0, y0, x1, y1)) in zip(rows, truth(index), strict=True):
            assert np.allclose(row["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=2), (index, row["bbox"])
            assert row["segmentation"]["size"] == [HEIGHT, WIDTH] and row["file_name"] == f"clip.mp4#frame={index}"


@requires_av
def test_batches_and_max_frames(clip, tmp_path):
    sizes = []

    def predict_frames(frames):
        sizes.append(len(frames))
        assert all(f.shape == (HEIGHT, WIDTH, 3) and f.dtype == np.uint8 for f in frames)
        return fake_predict(frames)

    result = run(clip, tmp_path / "out", predict_frames=predict_frames, batch_size=3, max_frames=5)
    assert sizes == [3, 2] and result.frames == 5
    assert len(list(read_frames(result.video))) == 5
    assert {r["image_id"] for r in json.loads(result.predictions.read_text())} == {0, 1, 2, 3, 4}


@requires_av
def test_an_odd_sized_video_is_padded_by_one_pixel_and_predicted_at_its_size(tmp_path):
    """An odd-sized clip (lossless FFV1 in Matroska, no frame count in the header): the annotated video is one
    pixel wider and taller (the edge repeated); the predictions and masks keep the original size."""
    import av

    path = tmp_path / "odd.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH - 1, HEIGHT - 1, "bgr0"
        for index in range(4):
            for packet in stream.encode(av.VideoFrame.from_ndarray(make_frame(index, HEIGHT - 1, WIDTH - 1),
                                                                   format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert next(read_frames(path)).shape == (HEIGHT - 1, WIDTH - 1, 3)

    result = run(path, tmp_path / "out")
    assert result.frames == 4 and stream_info(result.video) == (FPS, WIDTH, HEIGHT)
    annotated = next(read_frames(result.video))
    assert np.abs(annotated[:, -1].astype(int) - annotated[:, -2]).mean() < 4  # the padded column repeats the edge
    results = json.loads(result.predictions.read_text())
    assert len(results) == sum(len(truth(i)) for i in range(4))
    assert all(r["segmentation"]["size"] == [HEIGHT - 1, WIDTH - 1] for r in results)
    assert all(r["file_name"].startswith("odd.mkv#frame=") for r in results)


@requires_av
@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "audio only"])
def test_a_file_that_is_not_a_decodable_video_is_one_line_and_writes_nothing(clip, tmp_path, damage):
    path = tmp_path / "bad.mp4"
    if damage == "garbage":
        path.write_bytes(b"this is not a video\n" * 100)
    elif damage == "truncated":
        path.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path = tmp_path / "bad.wav"
        with wave.open(str(path), "wb") as sound:
            sound.setnchannels(1)
            sound.setsampwidth(2)
            sound.setframerate(8000)
            sound.writeframes(b"\0\0" * 800)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="cannot be decoded as a video .*convert it with ffmpeg") as excinfo:
        run(path, out)
    assert_one_line_nothing_written(excinfo, path, out)
    with pytest.raises(InputError):
        next(read_frames(path))


@requires_av
def test_a_missing_file_is_one_line(tmp_path):
    path = tmp_path / "nowhere.mp4"
    with pytest.raises(InputError, match="no such video file") as excinfo:
        run(path, tmp_path / "out")
    assert_one_line_nothing_written(excinfo, path, tmp_path / "out")


@requires_av
def test_an_output_folder_under_a_file_is_one_line(clip, tmp_path):
    """An output folder that cannot be written; a chmod'ed folder would not do, since CI runs as root, which
    writes anyway, but nobody can create a folder inside a regular file."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write to the output folder") as excinfo:
        run(clip, blocker / "out")
    assert "\n" not in str(excinfo.value) and str(blocker / "out") in str(excinfo.value)


@requires_av
def test_a_failure_midway_leaves_no_partial_output(clip, tmp_path):
    out = tmp_path / "out"
    (out).mkdir()
    calls = []

    def predict_frames(frames):
        calls.append(len(frames))
        if len(calls) == 2:
            raise RuntimeError("model crashed")
        return fake_predict(frames)

    with pytest.raises(RuntimeError, match="model crashed"):
        run(clip, out, predict_frames=predict_frames)
    assert list(out.iterdir()) == []


def test_without_pyav_the_message_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'pedseg\[deploy\]'"):
        run(tmp_path / "clip.mp4", tmp_path / "out")
    with pytest.raises(MissingDependencyError):
        write_video([make_frame(0)], tmp_path / "clip.mp4", FPS)
    assert not (tmp_path / "out").exists()


@requires_av
def test_a_real_mask_rcnn_end_to_end(clip, tmp_path):
    """The real contract: pedseg_lib.inference.predict of a tiny untrained Mask R-CNN as predict_frames."""
    from pedseg_lib.inference import predict
    from pedseg_lib.model import build_untrained

    torch.manual_seed(0)
    model = build_untrained(num_classes=2, weights=None, min_size=64, max_size=96)
    model.roi_heads.detections_per_img = 10  # masks pasted for 10, not 100, detections per frame: faster

    def predict_frames(frames):
        images = [torch.from_numpy(f).permute(2, 0, 1).contiguous() for f in frames]
        return predict(model, images, score_threshold=0.0, batch_size=len(images))

    result = run(clip, tmp_path / "out", predict_frames=predict_frames, max_frames=4)
    assert result.frames == 4 and stream_info(result.video) == (FPS, WIDTH, HEIGHT)
    assert len(list(read_frames(result.video))) == 4
    results = json.loads(result.predictions.read_text())
    assert result.detections == len(results)
    for row in results:
        assert row["image_id"] in range(4) and row["file_name"] == f"clip.mp4#frame={row['image_id']}"
        assert row["category_id"] == 1 and len(row["bbox"]) == 4
        assert row["segmentation"]["size"] == [HEIGHT, WIDTH]
