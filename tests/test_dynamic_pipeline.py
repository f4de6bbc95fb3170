"""The dynamic QA generation pipeline (scripts/generate_dynamic_qa.py) on short synthetic videos with tiny random
Grounding DINO, SAM2, Pi3 and Orient Anything models, and a local stub LLM endpoint."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file
from transformers import (
    BertConfig,
    BertTokenizer,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessor,
    GroundingDinoProcessor,
    SwinConfig,
)

from model.geometry.pi3 import Pi3Config, Pi3Model, pi3_state_dict
from scripts.generate_dynamic_qa import main
from tests.test_judge import KEY_ENV, JudgeServer, completion
from utils.data.llava_video import LLaVAVideoDataset
from utils.dynamic.orientation import (
    OrientAnything,
    OrientationConfig,
    facing_from_azimuth,
    load_orient_anything,
    object_crop,
)
from utils.dynamic.pipeline.perception import load_scene
from utils.dynamic.pipeline.questions import FREE_FORM_TYPE
from utils.dynamic.pipeline.trajectories import object_positions, to_upright, upright_rotation
from utils.dynamic.qa_templates import LETTERS, QUESTION_TYPES
from utils.synthetic.dynamic_formats import TRAINING_FILE, TRAINING_SUBSET
from utils.synthetic.dynamic_world import DynamicWorldConfig, make_world, render_world
from utils.synthetic.rooms import _ray_directions, room_rng
from utils.video.clip import read_clip
from utils.video.encode import write_video

ROOT = Path(__file__).resolve().parents[1]
PROMPTED_SAM2 = ROOT / "assets" / "sam2.1_hiera_tiny_prompted.pt"
WORLD = DynamicWorldConfig(height=48, width=64, num_frames=8, future_frames=0, fps=4.0, min_objects=2, max_objects=2)
OBJECTS = "the red ball:object,the blue robot:agent"
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "the", "red", "blue", "ball", "robot"]
LOOSE = {"box_threshold": 0.0, "text_threshold": 0.0, "num_frames": 8, "pi3_max_pixels": 28 * 42}
LOOSE |= {"confidence_threshold": 0.0, "min_points": 1, "min_seen_fraction": 0.0, "min_orientation_confidence": 0.0}


def save_tiny_detector(folder: Path, vocabulary: list[str]) -> Path:
    """A random Grounding DINO of a few thousand weights with its processor (a BERT tokenizer over
    ``vocabulary``), saved in transformers' format in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    (folder / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    processor = GroundingDinoProcessor(
        GroundingDinoImageProcessor(size={"shortest_edge": 48, "longest_edge": 64}),
        BertTokenizer(str(folder / "vocab.txt")),
    )
    swin = SwinConfig(
        embed_dim=8, depths=[1] * 4, num_heads=[1] * 4, window_size=4, out_features=["stage2", "stage3", "stage4"]
    )
    text = BertConfig(
        vocab_size=len(vocabulary),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    config = GroundingDinoConfig(
        backbone_config=swin,
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=10,
        num_feature_levels=3,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=16,
        use_timm_backbone=False,
        use_pretrained_backbone=False,
    )
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[str]:
    """Command-line flags of tiny random models saved in their on-disk formats."""
    folder = tmp_path_factory.mktemp("models")
    save_tiny_detector(folder / "gdino", VOCABULARY)
    save_file(pi3_state_dict(Pi3Model(Pi3Config.tiny())), folder / "pi3.safetensors")
    orientation = OrientationConfig.tiny()
    torch.save(OrientAnything(orientation).state_dict(), folder / "dino_weight.pt")
    seg = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "model" / "tiny.yaml").model.seg)
    return [
        "--detector", str(folder / "gdino"),
        "--sam2-checkpoint", str(PROMPTED_SAM2), "--sam2-config", seg["sam2_config"],
        "--sam2-overrides", json.dumps(seg["sam2_overrides"]),
        "--pi3", str(folder / "pi3.safetensors"), "--pi3-config", json.dumps(dataclasses.asdict(Pi3Config.tiny())),
        "--orientation", str(folder / "dino_weight.pt"),
        "--orientation-config", json.dumps(dataclasses.asdict(orientation)),
        "--devices", "cpu", "--perception", json.dumps(LOOSE),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Two short synthetic videos and a corrupt one."""
    folder = tmp_path_factory.mktemp("videos")
    for index in range(2):
        world = make_world(5, "train", index, WORLD)
        frames = render_world(world, WORLD, room_rng(5, "train", index, 1))
        write_video(folder / f"{world.video_id}.mp4", frames.colors, fps=WORLD.fps)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    return folder


@pytest.fixture(scope="module")
def perceived(models, videos, tmp_path_factory) -> tuple[Path, dict]:
    """Steps b and c run once over the videos with two workers: the output folder and the summary."""
    output = tmp_path_factory.mktemp("qa")
    arguments = ["--videos", str(videos), "--output", str(output), "--steps", "b,c", "--workers", "2"]
    summary = main([*arguments, "--objects", OBJECTS, "--questions-per-type", "2", *models])
    return output, summary


def base_arguments(videos: Path, output: Path, steps: str) -> list[str]:
    return ["--videos", str(videos), "--output", str(output), "--steps", steps]


def test_a_corrupt_video_is_counted_and_named_and_the_others_finish(perceived):
    output, summary = perceived
    perception = summary["steps"]["b"]
    assert perception["done"] == 2 and perception["resumed"] == 0
    assert list(perception["failed"]) == ["broken"] and "broken.mp4" in perception["failed"]["broken"]
    record = json.loads((output / "failures" / "b_perception" / "broken.json").read_text())
    assert "Traceback" in record["error"]
    assert sorted(path.stem for path in (output / "b_perception").glob("*.npz")) == [
        "dynamic_train_00000",
        "dynamic_train_00001",
    ]
    assert summary["steps"]["c"]["skipped"] == {"no_tracks": 1}  # the broken video has no tracks to ask about


def test_tracks_give_every_object_a_position_per_frame_and_the_agent_a_facing(perceived):
    output, _ = perceived
    for path in (output / "b_perception").glob("*.npz"):
        with np.load(path) as data:
            assert list(data["names"]) == ["the red ball", "the blue robot"]
            assert data["positions"].shape == (2, 8, 3) and np.isfinite(data["positions"]).all()
            assert data["camera_poses"].shape == (8, 4, 4) and np.all(np.diff(data["timestamps"]) > 0)
            assert np.isnan(data["forward"][0]).all()  # a ball has no facing
            facing = data["forward"][1]
            assert np.allclose(np.linalg.norm(facing, axis=1), 1) and np.allclose(facing[:, 2], 0)
        scene = load_scene(path)
        assert [track.is_agent for track in scene.tracks] == [False, True]


def test_template_questions_are_written_per_video_with_skips_counted(perceived):
    output, summary = perceived
    counts = summary["steps"]["c"]["counts"]
    assert sum(value for key, value in counts.items() if key.startswith("questions:")) > 0
    assert counts["skipped:abs_dir_pred:no_future"] > 0  # every frame is shown: nothing to predict
    for path in (output / "c_templates").glob("*.json"):
        record = json.loads(path.read_text())
        assert record["video_id"] == path.stem
        for question in record["questions"]:
            assert question["question_type"] in QUESTION_TYPES and question["answer"] in LETTERS
            assert len(question["options"]) == 4


def test_a_rerun_skips_finished_videos_and_tries_the_failed_one_again(perceived, models, videos):
    output, _ = perceived
    written = {path: path.stat().st_mtime_ns for path in (output / "b_perception").glob("*.npz")}
    summary = main([*base_arguments(videos, output, "b,c"), "--objects", OBJECTS, *models])
    assert summary["steps"]["b"]["resumed"] == 2 and summary["steps"]["b"]["done"] == 0
    assert list(summary["steps"]["b"]["failed"]) == ["broken"]
    assert summary["steps"]["c"]["resumed"] == 2
    assert {path: path.stat().st_mtime_ns for path in written} == written


def test_static_videos_from_curation_are_skipped_and_videos_without_objects_named(models, videos, tmp_path):
    output = tmp_path / "qa"
    curated = {"dynamic_train_00000": False, "dynamic_train_00001": True}
    for video_id, dynamic in curated.items():
        objects = [{"name": "the red ball", "agent": False}] if dynamic else []
        (output / "a_curation").mkdir(parents=True, exist_ok=True)
        (output / "a_curation" / f"{video_id}.json").write_text(json.dumps({"dynamic": dynamic, "objects": objects}))
    report = main([*base_arguments(videos, output, "b"), *models])["steps"]["b"]
    assert report["done"] == 1 and report["skipped"] == {"static": 1}
    assert list(report["failed"]) == ["broken"] and "step a has no answer" in report["failed"]["broken"]
    with np.load(output / "b_perception" / "dynamic_train_00001.npz") as data:
        assert list(data["names"]) == ["the red ball"]


def test_future_frames_are_tracked_asked_about_and_cut_from_the_video(models, videos, tmp_path):
    output = tmp_path / "qa"
    perception = json.dumps(LOOSE | {"future_frames": 2})
    types = "abs_dis,abs_dir_pred,rel_dir_pred"  # distances are always asked: every video is converted
    flags = ["--objects", OBJECTS, *models, "--perception", perception, "--question-types", types]
    summary = main([*base_arguments(videos, output, "b,c,e"), *flags])
    assert not any("no_future" in reason for reason in summary["steps"]["c"]["counts"])
    with np.load(output / "b_perception" / "dynamic_train_00000.npz") as data:
        assert data["positions"].shape == (2, 8, 3) and int(data["num_video_frames"]) == 6
        timestamps = data["timestamps"]
    assert load_scene(output / "b_perception" / "dynamic_train_00000.npz").num_video_frames == 6
    shown = read_clip(output / "e_clips" / "dynamic_train_00000.mp4")
    assert len(shown.frames) == 6 and np.allclose(shown.timestamps, timestamps[:6], atol=1e-3)
    link = output / "e_training" / TRAINING_SUBSET / "videos" / "dynamic_train_00000.mp4"
    assert link.resolve() == (output / "e_clips" / "dynamic_train_00000.mp4").resolve()


def test_conversion_writes_conversations_that_the_llava_video_loader_reads(perceived, videos, tmp_path):
    output, _ = perceived
    summary = main([*base_arguments(videos, output, "e"), "--bench"])
    items = json.loads((output / "e_training" / TRAINING_SUBSET / TRAINING_FILE).read_text())
    files = [*(output / "c_templates").glob("*.json"), *(output / "d_free_form").glob("*.json")]
    questions = sum(len(json.loads(path.read_text())["questions"]) for path in files)
    assert len(items) == questions > 0 and summary["steps"]["e"]["counts"]["videos"] == 2
    dataset = LLaVAVideoDataset(output / "e_training", num_frames=4, sources=("dsr_synthetic",))
    assert len(dataset) == len(items)
    sample = dataset[0]
    assert sample.frames.shape == (4, WORLD.height, WORLD.width, 3)
    assert sample.meta["answer"] in LETTERS and len(sample.meta["options"]) == 4
    assert (output / "e_bench" / "benchmark.parquet").is_file()


def curation_reply(body: dict, call: int):
    """A stub LLM: the 'static' caption is static, the 'garbled' one gets prose, the rest two objects."""
    system, caption = body["messages"][0]["content"], body["messages"][1]["content"]
    if "garbled" in caption:
        return completion("I cannot tell from this caption.")
    if "decide whether" in system:
        return completion(json.dumps({"dynamic": "static" not in caption, "reason": "stub"}))
    objects = [{"name": "the red ball", "agent": False}, {"name": "the blue robot", "agent": True}]
    return completion(json.dumps({"objects": objects}))


def test_curation_asks_the_endpoint_and_names_unusable_answers(videos, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-stub")
    captions = tmp_path / "captions.csv"
    captions.write_text(
        "video_id,caption\ndynamic_train_00000,a red ball rolls past a robot\n"
        "dynamic_train_00001,a static room\nbroken,garbled\n"
    )
    with JudgeServer(curation_reply) as server:
        flags = ["--captions", str(captions), "--judge-url", server.base_url, "--judge-model", "stub"]
        flags += ["--judge-key-env", KEY_ENV]
        summary = main([*base_arguments(videos, tmp_path / "qa", "a"), *flags])
        asked = len(server.requests)
        again = main([*base_arguments(videos, tmp_path / "qa", "a"), *flags])
        assert len(server.requests) == asked  # finished videos are not asked again, the garbled answer is cached
    report = summary["steps"]["a"]
    assert (
        report["done"] == 2 and list(report["failed"]) == ["broken"] and "parse_failure" in report["failed"]["broken"]
    )
    assert report["counts"]["dynamic"] == 1 and report["counts"]["static"] == 1
    dynamic = json.loads((tmp_path / "qa" / "a_curation" / "dynamic_train_00000.json").read_text())
    assert dynamic["dynamic"] is True and [o["agent"] for o in dynamic["objects"]] == [False, True]
    static = json.loads((tmp_path / "qa" / "a_curation" / "dynamic_train_00001.json").read_text())
    assert static["dynamic"] is False and static["objects"] == []
    assert again["steps"]["a"]["resumed"] == 2 and list(again["steps"]["a"]["failed"]) == ["broken"]


def test_free_form_questions_come_from_the_endpoint_and_bad_ones_are_dropped(perceived, videos, monkeypatch):
    output, _ = perceived
    monkeypatch.setenv(KEY_ENV, "sk-stub")
    good = {"question": "Does the red ball approach the camera?", "options": ["yes", "no", "it stops", "unknown"]}
    answer = {"questions": [good | {"answer": "B"}, {"question": "bad", "options": ["a", "b"], "answer": "A"}]}
    with JudgeServer(lambda body, call: completion(json.dumps(answer))) as server:
        flags = ["--judge-url", server.base_url, "--judge-model", "stub", "--judge-key-env", KEY_ENV]
        summary = main([*base_arguments(videos, output, "d,e"), *flags])
        prompt = server.requests[0]["body"]["messages"][1]["content"]
    assert "the red ball (object)" in prompt and "the blue robot (agent)" in prompt and "facing" in prompt
    report = summary["steps"]["d"]
    assert report["done"] == 2 and report["counts"]["questions"] == 2 and report["counts"]["skipped:invalid"] == 2
    record = json.loads((output / "d_free_form" / "dynamic_train_00000.json").read_text())
    assert [q["answer"] for q in record["questions"]] == ["B"] and record["skipped"] == {"invalid": 1}
    items = json.loads((output / "e_training" / TRAINING_SUBSET / TRAINING_FILE).read_text())
    free = [item for item in items if item["question_type"] == FREE_FORM_TYPE]
    assert len(free) == 2 and free[0]["conversations"][1]["value"] == "B"


def test_object_positions_from_true_depth_and_masks_sit_inside_the_objects():
    world = make_world(3, "train", 0, WORLD)
    frames = render_world(world, WORLD, room_rng(3, "train", 0, 1))
    rays = np.stack([_ray_directions(world.intrinsics, pose, WORLD.height, WORLD.width) for pose in frames.poses])
    origins = frames.poses[:, None, :3, 3]
    depth = frames.depths.reshape(len(rays), -1)
    z = np.einsum("tpi,ti->tp", rays, frames.poses[:, :3, 2])  # ray length per unit z-depth
    points = (origins + rays * (depth / z)[..., None]).reshape(*frames.depths.shape, 3)
    for k in range(len(world.kinds)):
        positions, seen = object_positions(points, frames.depths > 0, frames.instances == k, min_points=3)
        assert seen.any()
        errors = np.linalg.norm(positions[seen] - world.positions[k, : len(seen)][seen], axis=1)
        assert np.all(errors < world.radii[k] * 1.01)  # surface points: within one radius of the centre


def test_the_upright_world_puts_the_cameras_up_on_plus_z():
    angle = np.radians(30)
    tilt = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    poses = np.tile(np.eye(4), (3, 1, 1))
    poses[:, :3, :3] = tilt  # OpenCV camera: up is -y, here tilted 30 degrees
    rotation = upright_rotation(poses)
    _, upright = to_upright(np.zeros((1, 3)), poses, rotation, metric_scale=2.0)
    assert np.allclose(-upright[:, :3, 1], [0, 0, 1]) and np.allclose(rotation @ rotation.T, np.eye(3))


def test_azimuth_zero_faces_the_camera_and_ninety_faces_its_left():
    pose = np.eye(4)
    pose[:3, :3] = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]])  # looks along +x, right is -y, up is +z
    facing = facing_from_azimuth(np.array([0.0, 90.0, 180.0]), np.repeat(pose[None], 3, 0))
    assert np.allclose(facing, [[-1, 0, 0], [0, 1, 0], [1, 0, 0]])


def test_orient_anything_checkpoints_load_strictly_and_crops_are_black_padded_squares(tmp_path):
    config = OrientationConfig.tiny()
    model = OrientAnything(config)
    assert {key.split(".")[0] for key in model.state_dict()} == {"dinov2", "down_sampler"}
    assert "down_sampler.net1.1.running_mean" in model.state_dict()
    state = model.state_dict()
    released = {}  # the released checkpoint's transformers-4 attention names
    for key, value in state.items():
        for old, new in (("q_proj", "attention.query"), ("k_proj", "attention.key"), ("v_proj", "attention.value")):
            key = key.replace(f"attention.{old}.", f"attention.{new}.")
        released[key.replace("attention.o_proj.", "attention.output.dense.")] = value
    assert "dinov2.encoder.layer.0.attention.attention.query.weight" in released
    torch.save(released, tmp_path / "good.pt")
    loaded = load_orient_anything(tmp_path / "good.pt", config)
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in state.items())
    crop = object_crop(np.full((20, 30, 3), 200, np.uint8), np.pad(np.ones((4, 8), bool), ((2, 14), (3, 19))), 0.8)
    assert crop.shape == (10, 10, 3) and crop[0, 0].sum() == 0 and crop[5, 5].sum() == 600
    estimate = loaded.estimate([crop, crop])
    assert np.all((0 <= estimate.azimuth) & (estimate.azimuth < 360)) and np.all(estimate.confidence <= 1)
    state.pop("down_sampler.net2.0.bias")
    torch.save(state | {"head.extra": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt.*missing \['down_sampler\.net2\.0\.bias'\].*'head\.extra'"):
        load_orient_anything(tmp_path / "bad.pt", config)
