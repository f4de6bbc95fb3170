"""Video input (utils/video): every backend gives the same frames, timestamps come from pts, rotation is
applied, only the needed frames are decoded, bad files give clear errors, and the model inputs match
transformers' Qwen2.5-VL processor and qwen-vl-utils."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from utils.data.prompts import VIDEO_PLACEHOLDER
from utils.data.robust import SkipBadSamples, skipping_collate
from utils.synthetic.moving_shapes import WorldConfig, make_video
from utils.video import backends
from utils.video.backends import BACKENDS, available_backends, decode_frames, resolve_backend
from utils.video.clip import read_clip
from utils.video.encode import write_video
from utils.video.errors import FrameDecodeError, FrameIndexError, MissingVideoError, VideoError, VideoOpenError
from utils.video.model_inputs import IMAGENET_MEAN, IMAGENET_STD, model_inputs, qwen_video, sam2_frames
from utils.video.sampling import SAMPLERS, FrameSampling, force_in, fps_indices, register_sampler, uniform_indices
from utils.video.sources import probe

REAL_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "video"
TOLERANCE = 2
"""Largest difference (uint8 levels) allowed between two backends' pixels of one frame (measured: 0)."""

NUM_FRAMES, HEIGHT, WIDTH, GOP = 40, 48, 64, 8
VFR_TIMES = np.cumsum([0.0] + [0.033, 0.1, 0.25, 0.05] * 9 + [0.02, 0.3, 0.04]).tolist()
VP9 = {"deadline": "realtime", "cpu-used": "8", "g": str(GOP)}
X264 = {"g": str(GOP), "preset": "ultrafast", "bf": "2"}
FASTSTART = {"movflags": "faststart"}  # the 'moov' index box before the frame data


def stamped_frames(count: int = NUM_FRAMES) -> list[np.ndarray]:
    """Moving-shapes frames with their index written as 6 black/white 8x8 blocks on the top row."""
    video = make_video(0, "video-io", 0, WorldConfig(height=HEIGHT, width=WIDTH, num_frames=count))
    frames = video.frames.copy()
    for i, frame in enumerate(frames):
        for bit in range(6):
            frame[:8, 8 * bit : 8 * bit + 8] = 255 * ((i >> bit) & 1)
    return list(frames)


def read_stamp(frame: np.ndarray) -> int:
    """The index :func:`stamped_frames` wrote into an upright frame."""
    return sum(int(frame[2:6, 8 * bit + 2 : 8 * bit + 6].mean() > 128) << bit for bit in range(6))


def backend_or_skip(name: str, path: Path | None = None) -> str:
    """``name`` if it loads here (else skip, saying why); decord must refuse a ``path`` turned 90 or 270 degrees."""
    if name not in available_backends():
        pytest.skip(f"video backend {name} cannot be loaded here: {backends._load(name)}")
    if name == "decord" and path is not None and probe(path).rotation % 180:
        with pytest.raises(VideoError, match="decord mis-decodes videos turned"):
            decode_frames(probe(path), [0], backend=name)
        pytest.skip("decord 0.6 cannot decode videos turned 90 or 270 degrees; it refuses them (checked above)")
    return name


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small generated clips: containers and codecs, VFR, rotated, with audio, and broken files."""
    root = tmp_path_factory.mktemp("video_io")
    frames = stamped_frames()
    out = {
        "mp4": write_video(root / "clip.mp4", frames, fps=10, options=X264, audio_seconds=1.0),
        "webm": write_video(root / "clip.webm", frames, fps=10, codec="libvpx-vp9", options=VP9, audio_seconds=1.0),
        "mkv": write_video(root / "clip.mkv", frames, fps=10, options=X264),
        "vfr": write_video(root / "vfr.mp4", frames, timestamps=VFR_TIMES, options=X264),
        "rotated": write_video(root / "phone.mp4", frames, fps=30, options=X264, rotation=90),
        "faststart": write_video(root / "faststart.mp4", frames, options=X264, container_options=FASTSTART),
    }
    data = out["mp4"].read_bytes()
    (root / "cut_before_index.mp4").write_bytes(data[: len(data) // 2])  # the 'moov' box is at the end
    data = out["faststart"].read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])  # index intact, frame data cut
    (root / "empty.mp4").write_bytes(b"")
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for name in ("cut_before_index", "truncated", "empty", "corrupt"):
        out[name] = root / f"{name}.mp4"
    return out


def full_decode(path: Path, indices: list[int] | None = None) -> np.ndarray:
    """Frames ``indices`` (default: all) decoded in order from the start by PyAV, no seeking: the reference
    for "same index, same pixels"."""
    import av

    with av.open(str(path)) as container:
        frames = {}
        for i, frame in enumerate(container.decode(video=0)):
            if indices is None or i in indices:
                frames[i] = frame.to_ndarray(format="rgb24")
            if indices is not None and i >= max(indices):
                break
    return np.stack([frames[i] for i in (indices if indices is not None else sorted(frames))])


# --- backends agree ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cat", "dog"])
def test_every_backend_gives_the_reference_frames_of_the_real_clips(name: str) -> None:
    path = REAL_VIDEOS / f"{name}.mp4"
    if not path.is_file():
        pytest.skip(f"shared fixture {path} is absent")
    info = probe(path)
    assert (info.num_frames, info.height, info.width) == {"cat": (87, 480, 368), "dog": (150, 720, 1280)}[name]
    last = {"cat": info.num_frames - 1, "dog": 74}[name]  # dog: one GOP of 720p frames, half of it is enough
    indices = [last, *uniform_indices(last, 4), 0]
    reference = full_decode(path, indices)
    for backend in BACKENDS:
        backend_or_skip(backend)
        frames = decode_frames(info, indices, backend=backend).frames
        difference = np.abs(frames.astype(int) - reference).max()
        assert difference <= TOLERANCE, f"{backend} differs from the reference by {difference} on {name}"


@pytest.mark.parametrize("name", ["cat", "dog"])
def test_timestamps_are_the_container_pts_of_the_real_clips(name: str) -> None:
    path = REAL_VIDEOS / f"{name}.mp4"
    if not path.is_file():
        pytest.skip(f"shared fixture {path} is absent")
    decoders = pytest.importorskip("torchcodec.decoders", reason="torchcodec gives the independent pts")
    info = probe(path)
    indices = uniform_indices(info.num_frames, 5)
    pts = decoders.VideoDecoder(str(path)).get_frames_at(indices).pts_seconds.numpy()
    np.testing.assert_allclose(info.timestamps[indices], pts, atol=1e-9)
    assert info.fps == pytest.approx({"cat": 20.0, "dog": 30000 / 1001}[name])
    assert info.duration == pytest.approx({"cat": 4.35, "dog": 5.005}[name])


@pytest.mark.parametrize("kind", ["mp4", "webm", "mkv", "vfr", "rotated"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_returns_the_asked_frames_in_every_format(clips, kind: str, backend: str) -> None:
    backend_or_skip(backend, clips[kind])
    indices = [37, 3, 4, 20, 3, 39]
    clip = decode_frames(probe(clips[kind]), indices, backend=backend)
    turns = 1 if kind == "rotated" else 0  # stored frames are turned 90 degrees counter-clockwise to be upright
    assert [read_stamp(np.rot90(frame, -turns)) for frame in clip.frames] == indices
    reference = np.rot90(full_decode(clips[kind]), turns, axes=(1, 2))
    assert np.abs(clip.frames.astype(int) - reference[indices]).max() <= TOLERANCE


def test_the_audio_track_is_ignored(clips) -> None:
    with_audio, without = probe(clips["mp4"]), probe(clips["mkv"])
    assert with_audio.num_frames == without.num_frames == NUM_FRAMES
    assert with_audio.duration == pytest.approx(NUM_FRAMES / 10)


# --- timestamps, rotation, seeking ---------------------------------------------------------------------


def test_variable_frame_rate_timestamps_come_from_pts(clips) -> None:
    info = probe(clips["vfr"])
    np.testing.assert_allclose(info.timestamps, VFR_TIMES, atol=1e-3)
    assert info.fps == pytest.approx((NUM_FRAMES - 1) / VFR_TIMES[-1], rel=1e-3)
    clip = read_clip(clips["vfr"], FrameSampling("fps", fps=2.0))
    expected = sorted({int(np.argmin(np.abs(np.array(VFR_TIMES) - t))) for t in np.arange(0, VFR_TIMES[-1], 0.5)})
    assert clip.indices == expected
    np.testing.assert_allclose(clip.timestamps, np.array(VFR_TIMES)[expected], atol=1e-3)


@pytest.mark.parametrize("rotation", [90, 180, 270])
@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_from_the_display_matrix_is_applied_by_every_backend(tmp_path: Path, backend: str, rotation: int):
    stored = stamped_frames(6)
    path = write_video(tmp_path / "phone.mp4", stored, options=X264, rotation=rotation)
    backend_or_skip(backend, path)
    info = probe(path)
    upright = np.rot90(stored[5], rotation // 90)  # counter-clockwise, as FFmpeg's display matrix means it
    assert (info.rotation, info.height, info.width) == (rotation, *upright.shape[:2])
    frame = decode_frames(info, [5], backend=backend).frames[0]
    assert frame.shape == upright.shape and np.abs(frame.astype(int) - upright).mean() < 8


def test_pyav_decodes_only_the_pictures_the_wanted_frames_need(tmp_path: Path) -> None:
    frames = stamped_frames(60)
    path = write_video(tmp_path / "long.mp4", frames, options={"g": "10", "bf": "3", "preset": "ultrafast"})
    info = probe(path)
    assert info.keyframes.tolist() == list(range(0, 60, 10))
    clip = read_clip(path, FrameSampling("indices", indices=(2, 55)), backend="pyav")
    assert [read_stamp(f) for f in clip.frames] == [2, 55]
    assert clip.decoded_frames <= 3 + 6  # key frame 0..2, key frame 50..55: not the 60 of a full decode
    np.testing.assert_array_equal(clip.frames, full_decode(path)[[2, 55]])


# --- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "error", "words"),
    [
        ("empty", VideoOpenError, "empty file"),
        ("corrupt", VideoOpenError, "not a readable media file"),
        ("cut_before_index", VideoOpenError, "not a readable media file"),  # the 'moov' index is at the end
    ],
)
def test_unreadable_files_raise_an_error_naming_the_file(clips, kind: str, error: type, words: str) -> None:
    with pytest.raises(error, match=words) as caught:
        read_clip(clips[kind], FrameSampling(num_frames=4))
    assert str(clips[kind]) in str(caught.value) and caught.value.path == clips[kind]


def test_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such video file"):
        probe(tmp_path / "absent.mp4")


@pytest.mark.parametrize("backend", ["pyav", "torchcodec"])
def test_a_truncated_file_names_the_frame_that_is_gone(clips, backend: str) -> None:
    backend_or_skip(backend)
    info = probe(clips["truncated"])
    assert 0 < info.num_frames < NUM_FRAMES == info.header_frames
    with pytest.raises(FrameIndexError, match=rf"frame 39: .*has {info.num_frames} frames.*header says 40"):
        decode_frames(info, [39], backend=backend)
    with pytest.raises(FrameDecodeError, match=rf"{clips['truncated']}, frame {info.num_frames - 1}"):
        decode_frames(info, [0, info.num_frames - 1], backend=backend)  # its data is cut short
    assert read_stamp(decode_frames(info, [1], backend=backend).frames[0]) == 1


def test_bad_videos_become_counted_skips_in_training(clips) -> None:
    paths = [clips["mp4"], clips["corrupt"], clips["mkv"]]
    dataset = SkipBadSamples(_ClipDataset(paths))
    batch = skipping_collate(lambda items: {"frames": [item.frames for item in items]})([dataset[i] for i in range(3)])
    assert len(batch["frames"]) == 2
    assert [index for index, _ in batch["skipped"]] == [1] and str(clips["corrupt"]) in batch["skipped"][0][1]


class _ClipDataset(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        rng = np.random.default_rng([0, index])
        return read_clip(self.paths[index], FrameSampling(num_frames=4), train=True, rng=rng)


# --- frame folders -------------------------------------------------------------------------------------


def write_folder(folder: Path, names: list[str], suffix: str) -> list[np.ndarray]:
    folder.mkdir(parents=True)
    frames = stamped_frames(len(names))
    for name, frame in zip(names, frames):
        Image.fromarray(frame).save(folder / f"{name}{suffix}", **({"quality": 95} if suffix == ".jpg" else {}))
    return frames


def test_a_png_folder_reads_losslessly_in_numeric_order_with_numbered_timestamps(tmp_path: Path) -> None:
    names = [str(i) for i in range(12)]  # ScanNet-style 0.png ... 11.png: "10" sorts after "9"
    frames = write_folder(tmp_path / "scene", names, ".png")
    clip = read_clip(tmp_path / "scene", FrameSampling(num_frames=4), fps=30.0)
    np.testing.assert_array_equal(clip.frames, np.stack(frames)[clip.indices])
    assert clip.frame_names == [names[i] for i in clip.indices] and clip.backend == "folder"
    np.testing.assert_allclose(clip.timestamps, np.array(clip.indices) / 30.0)


def test_a_jpeg_folder_keeps_the_real_spacing_of_its_frame_numbers(tmp_path: Path) -> None:
    names = [f"{5 * i:05d}" for i in range(6)]  # Ref-YouTube-VOS: every 5th frame of a 30 fps video
    write_folder(tmp_path / "video", names, ".jpg")
    info = probe(tmp_path / "video", fps=30.0, frame_names=names)
    np.testing.assert_allclose(info.timestamps, np.arange(0, 30, 5) / 30.0)
    clip = read_clip(tmp_path / "video", fps=30.0, frame_names=names)
    assert [read_stamp(f) for f in clip.frames] == list(range(6))


def test_a_missing_frame_file_is_named_with_its_index(tmp_path: Path) -> None:
    names = [f"{i:05d}" for i in range(5)]
    write_folder(tmp_path / "video", names, ".jpg")
    (tmp_path / "video" / "00002.jpg").unlink()
    with pytest.raises(MissingVideoError, match=r"video, frame 2: missing frame file .*/video/00002.jpg"):
        probe(tmp_path / "video", fps=6.0, frame_names=names)
    info = probe(tmp_path / "video", fps=6.0)  # what is on disk: 4 frames
    (tmp_path / "video" / "00003.jpg").unlink()  # gone after probing
    with pytest.raises(FileNotFoundError, match=r"frame 2: missing frame file 00003.jpg"):
        decode_frames(info, [0, 2])


def test_a_corrupt_frame_file_is_named_with_its_index(tmp_path: Path) -> None:
    names = [f"{i:05d}" for i in range(3)]
    write_folder(tmp_path / "video", names, ".jpg")
    data = (tmp_path / "video" / "00001.jpg").read_bytes()
    (tmp_path / "video" / "00001.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(FrameDecodeError, match=r"frame 1: cannot decode 00001.jpg"):
        read_clip(tmp_path / "video", fps=6.0)


def test_a_folder_needs_its_frame_rate_and_a_file_refuses_one(tmp_path: Path, clips) -> None:
    write_folder(tmp_path / "video", ["00000"], ".png")
    with pytest.raises(ValueError, match="needs fps"):
        probe(tmp_path / "video")
    with pytest.raises(ValueError, match="frame folders"):
        probe(clips["mp4"], fps=10.0)


# --- sampling ------------------------------------------------------------------------------------------


def test_training_jitter_is_deterministic_per_seed_and_item(clips) -> None:
    sampling = FrameSampling(num_frames=4)
    first = read_clip(clips["mkv"], sampling, train=True, rng=np.random.default_rng([7, 2])).indices
    assert first == read_clip(clips["mkv"], sampling, train=True, rng=np.random.default_rng([7, 2])).indices
    draws = {tuple(sampling.select(np.arange(40.0), train=True, rng=np.random.default_rng([7, i]))) for i in range(20)}
    assert len(draws) > 1
    assert sampling.select(np.arange(40.0)) == [5, 15, 25, 35]


def test_forced_frames_replace_the_nearest_sampled_frame() -> None:
    assert force_in([5, 15, 25, 35], [17]) == [5, 17, 25, 35]
    assert force_in([5, 15, 25, 35], [0, 39, 15]) == [0, 15, 25, 39]
    assert force_in([5], [1, 2]) == [1, 2]
    assert FrameSampling("all", force=(3,)).select(np.arange(6.0)) == list(range(6))
    chosen = FrameSampling(num_frames=4, force=(39,)).select(np.arange(40.0), train=True, rng=np.random.default_rng(0))
    assert len(chosen) == 4 and 39 in chosen


def test_fps_sampling_caps_and_jitters_within_one_period() -> None:
    times = np.arange(100) / 10.0  # 10 s at 10 fps
    assert fps_indices(times, 1.0) == list(range(0, 100, 10))
    assert len(fps_indices(times, 1.0, max_frames=4)) == 4
    jittered = fps_indices(times, 1.0, jitter=True, rng=np.random.default_rng(1))
    assert all(0 <= j - 10 * k < 10 for k, j in enumerate(jittered))


def test_explicit_indices_are_checked_against_the_video(clips) -> None:
    with pytest.raises(FrameIndexError, match=r"frame index 40 is outside a video of 40 frames"):
        read_clip(clips["mkv"], FrameSampling("indices", indices=(1, 40)))
    with pytest.raises(ValueError, match="unknown frame sampling strategy"):
        FrameSampling("nope").select(np.arange(3.0))


def test_a_maximum_coverage_sampler_plugs_in() -> None:
    @register_sampler("test_greedy_coverage")
    def greedy(context) -> list[int]:  # 3D scenes: the frames whose views cover the most cells
        covered, chosen = set(), []
        for _ in range(context.num_frames):
            best = max(range(context.num_total), key=lambda i: len(context.options["cells"][i] - covered))
            chosen.append(best)
            covered |= context.options["cells"][best]
        return chosen

    try:
        cells = [{0, 1}, {1, 2}, {2, 3, 4}, {5}, {0, 5}]
        sampling = FrameSampling("test_greedy_coverage", num_frames=2, options={"cells": cells})
        assert sampling.select(np.arange(5.0)) == [0, 2]
        assert FrameSampling("test_greedy_coverage", num_frames=2, force=(3,), options={"cells": cells}).select(
            np.arange(5.0)
        ) == [0, 3]
        with pytest.raises(ValueError, match="already registered"):
            register_sampler("test_greedy_coverage")(greedy)
    finally:
        SAMPLERS.pop("test_greedy_coverage")


# --- backend choice ------------------------------------------------------------------------------------


def test_backend_is_chosen_by_name_or_by_what_is_installed(monkeypatch) -> None:
    assert resolve_backend("auto") == available_backends()[0]
    with pytest.raises(ValueError, match="unknown video backend"):
        resolve_backend("ffmpeg-cli")
    missing = {"pyav": ImportError("no av")}
    monkeypatch.setattr(backends, "_load", lambda name: missing.get(name) or object())
    assert resolve_backend("auto") == "torchcodec"
    with pytest.raises(ValueError, match="pip install av"):
        resolve_backend("pyav")


# --- model inputs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cat", "dog"])
@pytest.mark.parametrize("reader", ["decord", "torchcodec"])
def test_qwen_frames_equal_qwen_vl_utils_fetch_video(name: str, reader: str, monkeypatch) -> None:
    path = REAL_VIDEOS / f"{name}.mp4"
    if not path.is_file():
        pytest.skip(f"shared fixture {path} is absent")
    backend_or_skip(reader)
    vision_process = pytest.importorskip("qwen_vl_utils.vision_process")
    monkeypatch.setattr(vision_process, "FORCE_QWENVL_VIDEO_READER", reader)  # its torchvision reader is broken
    vision_process.get_video_reader_backend.cache_clear()
    theirs, metadata = vision_process.fetch_video({"video": str(path), "nframes": 8}, return_video_metadata=True)
    vision_process.get_video_reader_backend.cache_clear()
    clip = read_clip(path, FrameSampling("indices", indices=tuple(int(i) for i in metadata["frames_indices"])))
    ours = qwen_video(clip.frames, clip.timestamps)
    assert ours.frames.shape == theirs.shape and ours.frames.shape[-2] % 28 == ours.frames.shape[-1] % 28 == 0
    # Same frames and sizes; qwen-vl-utils resizes with torchvision's v1 resize, transformers (and so we) with v2:
    # measured, 12% of values differ by 1 level and 0.003% by more (at most 8, on sharp edges).
    difference = (ours.frames.float() - theirs).abs()
    assert difference.mean() < 0.2 and (difference > 1).float().mean() < 1e-4


def test_qwen_inputs_match_the_processor_on_the_raw_frames(clips, tiny_parts) -> None:
    from transformers import AutoProcessor
    from transformers.video_utils import VideoMetadata

    processor = AutoProcessor.from_pretrained(tiny_parts["backbone"])
    clip = read_clip(clips["vfr"], FrameSampling(num_frames=5))
    ours = qwen_video(clip.frames, clip.timestamps, processor.video_processor)
    fps = (len(clip.indices) - 1) / (clip.timestamps[-1] - clip.timestamps[0])
    text = [f"{VIDEO_PLACEHOLDER}hi"]
    common = dict(text=text, return_tensors="pt", cap_pixels_per_frame=True)
    metadata = VideoMetadata(total_num_frames=5, fps=fps)
    raw = processor(videos=[clip.frames], video_metadata=[metadata], do_sample_frames=False, **common)
    resized = processor(**ours.processor_kwargs(), **common)
    assert torch.equal(resized["pixel_values_videos"], raw["pixel_values_videos"])
    assert resized["video_grid_thw"].tolist() == raw["video_grid_thw"].tolist() == [ours.video_grid_thw.tolist()]
    assert ours.video_grid_thw.tolist() == [3, 8, 10]  # 5 frames -> 3 temporal patches; 48x64 px -> 112x140 px
    assert resized["second_per_grid_ts"] == pytest.approx([ours.second_per_grid_ts]) == [2 / fps]


def test_sam2_frames_are_square_and_normalised_from_the_same_decode(clips) -> None:
    clip = read_clip(clips["rotated"], FrameSampling(num_frames=3))
    inputs = model_inputs(clip, 32, sam_normalize=False)
    assert inputs.sam_frames.shape == (3, 3, 32, 32) and inputs.qwen.frames.shape[0] == 3
    video = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float() / 255  # the float resize, for comparison
    exact = torch.nn.functional.interpolate(video, size=(32, 32), mode="bilinear", antialias=True)
    assert torch.allclose(inputs.sam_frames, exact, atol=1 / 255 + 1e-6)
    normalised = sam2_frames(clip.frames, 32, normalize=True)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(normalised, (inputs.sam_frames - mean) / std)


def test_errors_are_what_the_training_skipper_catches() -> None:
    from utils.data.robust import LOAD_ERRORS

    for error in (VideoError, VideoOpenError, MissingVideoError, FrameIndexError, FrameDecodeError):
        assert issubclass(error, LOAD_ERRORS)
    error = VideoError("a.mp4", "bad", 3)
    assert (error.path, error.frame, str(error)) == (Path("a.mp4"), 3, "a.mp4, frame 3: bad")
