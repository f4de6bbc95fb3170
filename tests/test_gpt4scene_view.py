"""GPT4Scene's view of a 3D scene question: the marked BEV, then marked frames, as separate images, in its wording.

as ``scripts/preprocess_scenes.py`` does (``bev_plain.png``, ``bev.png``, ``bev.json``, ``frame_markers.npz``),
the original is not (the view computes the BEV and markers itself). A tiny Qwen2-VL folder in GPT4Scene's
released layout is converted (``scripts/convert_gpt4scene.py``) and answers a view through the answer predictor.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from transformers import Qwen2VLForConditionalGeneration

from evaluation.answer_predictor import UniGRAnswerPredictor
from model.builder import save_tiny_backbone
from scripts.convert_gpt4scene import convert_gpt4scene
from scripts.preprocess_scenes import all_frame_markers, write_bev
from tests.test_released_checkpoints import _write_qwen2_vl_folder
from utils.data import scanqa, scanrefer  # noqa: F401  (registers the loaders)
from utils.data.registry import LOADERS
from utils.scene3d.bev import BEVConfig, scene_bev
from utils.scene3d.gpt4scene_view import (
    GPT4SCENE_QUESTIONS,
    fit_image,
    gpt4scene_view,
    resize_image,
    scale_pixels,
    scaled_size,
)
from utils.scene3d.markers import MarkerConfig, marker_radius
from utils.scene3d.scene_folder import Scene, read_scene
from utils.synthetic.rooms import RoomConfig
from utils.synthetic.scene3d_formats import generate_scene_benchmarks
from utils.video.sampling import uniform_indices

ROOM = RoomConfig(height=96, width=128, num_frames=10, spurious_rate=0.0)
"""One tiny room, 10 frames of 128 x 96."""
MAX_SIDE = 100
"""Frames become 100 x 75."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Benchmark files over ``scenes/`` (not preprocessed) and ``scenes_pre/`` (the same, preprocessed)."""
    root = tmp_path_factory.mktemp("gpt4scene_rooms")
    generate_scene_benchmarks(root, "val", 1, seed=0, config=ROOM)
    shutil.copytree(root / "scenes", root / "scenes_pre")
    for folder in (root / "scenes_pre").iterdir():
        scene = read_scene(folder)
        write_bev(folder, scene_bev(scene, BEVConfig()), scene.proposals, MarkerConfig())
        markers = all_frame_markers(scene, MarkerConfig())
        np.savez(folder / "frame_markers.npz", positions=markers.positions, visible_fraction=markers.visible_fraction)
    return root


def _sample(data: Path, benchmark: str, scene_root: str = "scenes", index: int = 0, num_frames: int = 4):
    dataset = LOADERS[benchmark].build(data, "val", num_frames=num_frames, train=False, seed=0, scene_root=scene_root)
    sample = dataset[index]
    return sample, read_scene(data / scene_root / sample.meta["scene_id"])


def test_view_is_the_bev_then_the_frames_as_images_within_max_side(data: Path) -> None:
    sample, scene = _sample(data, "scanrefer")
    view = gpt4scene_view(sample, scene, num_frames=4, max_side=MAX_SIDE)
    assert view.frames.shape == (5, 75, 100, 3) and view.frames.dtype == np.uint8
    assert view.medium == "image" and view.timestamps is None and view.scene is None
    assert view.frame_names == ["bev"] + [scene.frame_names[i] for i in view.meta["frame_indices"]]
    np.testing.assert_array_equal(view.proposals, sample.proposals)
    assert view.meta["view"] == "gpt4scene" and view.meta["target_proposals"] == sample.meta["target_proposals"]
    assert view.conversation[1] == sample.conversation[1]
    small = gpt4scene_view(sample, scene, num_frames=4, max_side=512)
    assert small.frames.shape == (5, 96, 128, 3)  # never enlarged, as GPT4Scene scales
    assert scaled_size(968, 1296, 512) == (382, 512)  # ScanNet's colour frames, truncated as GPT4Scene does


def test_frames_are_uniform_over_the_scene_or_the_sample_s_own(data: Path) -> None:
    sample, scene = _sample(data, "scanqa", num_frames=3)
    view = gpt4scene_view(sample, scene, num_frames=4, max_side=MAX_SIDE)
    assert view.meta["frame_indices"] == uniform_indices(scene.num_frames, 4) != sample.meta["frame_indices"]
    kept = gpt4scene_view(sample, scene, num_frames=None, max_side=MAX_SIDE)
    assert kept.meta["frame_indices"] == sample.meta["frame_indices"] and len(kept.frames) == 1 + 3
    with pytest.raises(ValueError, match="frame_indices"):
        gpt4scene_view(replace(sample, meta={}), scene, num_frames=None)


def test_the_gpt4scene_view_option_is_the_bev_then_the_sample_s_frames_with_no_depth_read(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"num_frames": 4, "train": False, "seed": 0, "scene_root": "scenes_pre"}
    video = LOADERS["scanqa"].build(data, "val", **options)[0]
    scene = read_scene(data / "scenes_pre" / video.meta["scene_id"])
    expected = gpt4scene_view(video, scene, num_frames=None)

    def no_depth(*args, **kwargs):
        raise AssertionError("the gpt4scene view read a depth map")

    monkeypatch.setattr(Scene, "read_depths", no_depth)
    view = LOADERS["scanqa"].build(data, "val", view="gpt4scene", **options)[0]
    assert view.frames.shape == (1 + 4, ROOM.height, ROOM.width, 3) and view.medium == "image"
    assert view.frame_names == ["bev", *video.frame_names] and view.scene is None and view.timestamps is None
    assert view.meta["view"] == "gpt4scene" and view.meta["frame_indices"] == video.meta["frame_indices"]
    np.testing.assert_array_equal(view.frames, expected.frames)
    assert not np.array_equal(view.frames[1:], video.frames)  # markers drawn on the frames
    assert view.conversation == expected.conversation
    with pytest.raises(ValueError, match="view must be one of"):
        LOADERS["scanqa"].build(data, "val", view="bev_only", **options)


def _plain_images(scene, indices: list[int], height: int, width: int) -> np.ndarray:
    """The view's images without markers: the preprocessed plain BEV fitted, the frames scaled."""
    with Image.open(scene.folder / "bev_plain.png") as image:
        bev = fit_image(np.asarray(image.convert("RGB")), height, width, BEVConfig().background)[0]
    frames = [resize_image(frame, height, width) for frame in scene.read_colors(indices)]
    return np.stack([bev, *frames])


def test_markers_are_drawn_where_preprocessing_puts_them_and_nowhere_else(data: Path) -> None:
    sample, scene = _sample(data, "scanrefer", scene_root="scenes_pre")
    view = gpt4scene_view(sample, scene, num_frames=4, max_side=MAX_SIDE)
    indices, positions = view.meta["frame_indices"], view.meta["marker_positions"]
    height, width = view.frames.shape[1:3]
    with np.load(scene.folder / "frame_markers.npz") as stored:
        expected = scale_pixels(stored["positions"][indices], (width / ROOM.width, height / ROOM.height))
    np.testing.assert_allclose(positions[1:], expected)  # NaN (hidden) exactly where preprocessing hides them
    assert np.isfinite(positions[0]).all() and len(positions[0]) == len(scene.proposals)  # all on the BEV
    assert (~np.isfinite(positions[1:, :, 0])).any() and np.isfinite(positions[1:, :, 0]).any()
    changed = (view.frames != _plain_images(scene, indices, height, width)).any(-1)  # (1 + T, h, w)
    radius = marker_radius((height, width), MarkerConfig())
    reach = radius + 3  # centre rounding, rim and anti-aliasing
    rows, cols = np.mgrid[:height, :width]
    for image, shown in zip(changed, positions):
        shown = shown[np.isfinite(shown[:, 0])]
        distance = np.hypot(cols[None] - shown[:, 0, None, None], rows[None] - shown[:, 1, None, None])  # (K, h, w)
        assert not (image & (distance.min(0) > reach)).any()  # nothing drawn away from a shown marker
        inside = (shown[:, 0] >= 0) & (shown[:, 0] < width) & (shown[:, 1] >= 0) & (shown[:, 1] < height)
        assert all(image[distance[k] <= radius].mean() > 0.5 for k in np.flatnonzero(inside))


def test_preprocessed_and_on_the_fly_views_are_identical(data: Path) -> None:
    sample, scene = _sample(data, "scanrefer")
    sample_pre, scene_pre = _sample(data, "scanrefer", scene_root="scenes_pre")
    assert not (scene.folder / "frame_markers.npz").exists() and (scene_pre.folder / "frame_markers.npz").exists()
    view = gpt4scene_view(sample, scene, num_frames=4, max_side=MAX_SIDE)
    view_pre = gpt4scene_view(sample_pre, scene_pre, num_frames=4, max_side=MAX_SIDE)
    np.testing.assert_array_equal(view.frames, view_pre.frames)
    np.testing.assert_allclose(view.meta["marker_positions"], view_pre.meta["marker_positions"])


@pytest.mark.parametrize("stale", ["frame_markers.npz", "bev.json"])
def test_stale_preprocessing_is_an_error_naming_the_file(data: Path, stale: str, tmp_path: Path) -> None:
    sample, scene = _sample(data, "scanrefer", scene_root="scenes_pre")
    folder = Path(shutil.copytree(scene.folder, tmp_path / scene.scene_id))
    if stale == "bev.json":
        record = json.loads((folder / stale).read_text())
        (folder / stale).write_text(json.dumps({**record, "markers": record["markers"][:-1]}))
    else:
        with np.load(folder / stale) as stored:
            np.savez(folder / stale, positions=stored["positions"][:, :-1])
    with pytest.raises(ValueError, match=stale):
        gpt4scene_view(sample, read_scene(folder), num_frames=4, max_side=MAX_SIDE)


def test_user_turn_is_gpt4scene_s_wording(data: Path) -> None:
    sample, scene = _sample(data, "scanrefer")
    description = sample.meta["description"].strip().removesuffix(".")
    view = gpt4scene_view(sample, scene, num_frames=2, max_side=MAX_SIDE)
    assert view.conversation[0]["content"] == GPT4SCENE_QUESTIONS["scanrefer"].format(description=description)
    assert view.conversation[0]["content"] != sample.conversation[0]["content"]
    questions = json.loads((data / "ScanQA_v1.0_val.json").read_text())
    qa_sample, _ = _sample(data, "scanqa")
    question = next(q["question"] for q in questions if q["question_id"] == qa_sample.meta["question_id"])
    qa_view = gpt4scene_view(qa_sample, scene, num_frames=2, max_side=MAX_SIDE)
    assert qa_view.conversation[0]["content"] == GPT4SCENE_QUESTIONS["scanqa"].format(question=question)
    written = replace(sample, conversation=[{"role": "user", "content": "As the file asks."}, sample.conversation[1]])
    written.meta = {**sample.meta, "prompt_source": "file"}
    assert gpt4scene_view(written, scene, num_frames=2).conversation[0]["content"] == "As the file asks."


def test_a_grounding_sample_without_its_description_is_an_error_naming_it(data: Path) -> None:
    sample, scene = _sample(data, "scanrefer")
    broken = replace(sample, meta={k: v for k, v in sample.meta.items() if k != "description"})
    with pytest.raises(ValueError, match=sample.sample_id):
        gpt4scene_view(broken, scene, num_frames=2)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, tiny_cfg: dict) -> dict[str, Path]:
    """A tiny Qwen2.5-VL folder, a tiny Qwen2-VL folder in GPT4Scene's released layout, and its conversion."""
    root = tmp_path_factory.mktemp("gpt4scene_model")
    qwen2_5 = save_tiny_backbone(tiny_cfg, root / "qwen2_5_vl")
    _write_qwen2_vl_folder(root / "gpt4scene", qwen2_5, legacy=True)
    converted = convert_gpt4scene(root / "gpt4scene", root / "unigr", num_frames=4)
    return {"qwen2_5_vl": qwen2_5, "unigr": converted}


def test_converted_gpt4scene_folder_answers_a_view_through_the_answer_predictor(data: Path, folders: dict) -> None:
    sample, scene = _sample(data, "scanqa")
    view = gpt4scene_view(sample, scene, num_frames=4, max_side=MAX_SIDE)
    predictor = UniGRAnswerPredictor(folders["unigr"], num_frames=len(view.frames), max_new_tokens=4)
    assert isinstance(predictor.model.backbone, Qwen2VLForConditionalGeneration)
    assert predictor.model.config.seg is None and predictor.model.config.inputs["num_frames"] == 4
    inputs, seen = predictor.llm_inputs(view)
    assert seen == list(range(5)) and inputs["image_grid_thw"].shape == (5, 3)  # the BEV and the 4 frames
    image_token = predictor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    merged = int(inputs["image_grid_thw"].prod(-1).sum()) // 4  # 2 x 2 patches per token
    assert int((inputs["input_ids"] == image_token).sum()) == merged
    assert "video_grid_thw" not in inputs
    answer, text = predictor.predict(view)
    assert answer is None and isinstance(text, str)


def test_conversion_refuses_a_folder_that_is_not_qwen2_vl(folders: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="qwen2_vl"):
        convert_gpt4scene(folders["qwen2_5_vl"], tmp_path / "out")


@pytest.mark.parametrize("sizes", [{"max_side": 0}, {"num_frames": 0}])
def test_bad_sizes_are_an_error_naming_the_sample(data: Path, sizes: dict) -> None:
    sample, scene = _sample(data, "scanqa")
    with pytest.raises(ValueError, match=sample.sample_id):
        gpt4scene_view(sample, scene, **sizes)
