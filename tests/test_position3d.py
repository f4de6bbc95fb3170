"""The 3D position encoder: world points of Qwen's merged video tokens and their sinusoidal code added to them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.builder import build_unigr, load_unigr
from model.encoders.position3d import Position3DEncoder, sinusoidal_position_code
from model.input_assembly import AssemblyContext
from model.visual_tokens import VisualTokens
from utils.data.collate import SampleCollator
from utils.data.schema import Sample, SceneGeometry
from utils.scene3d.geometry import depth_to_points, project_points, transform
from utils.scene3d.token_positions import token_world_positions
from utils.training.trainable import configure_trainable, group_prefixes

ROOM = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "scene3d" / "room"
CELL = 16
"""Depth pixels per merged-token cell side in the exact-cell tests (a 336 x 432 crop, 21 x 27 cells)."""


@pytest.fixture(scope="module")
def room() -> dict[str, np.ndarray]:
    """The real posed RGB-D room: ``intrinsics (8, 3, 3)``, ``poses (8, 4, 4)`` c2w, ``depths (8, 350, 434)``."""
    if not (ROOM / "condition.npz").exists():
        pytest.skip(f"the scene3d room fixture is absent ({ROOM})")
    with np.load(ROOM / "condition.npz", allow_pickle=False) as data:
        return {key: data[key] for key in ("intrinsics", "poses", "depths")}


def _scene(room: dict, frames: list[int], depth: np.ndarray | None = None, axis_alignment=None) -> SceneGeometry:
    depth = room["depths"][frames] if depth is None else depth
    return SceneGeometry(depth, room["intrinsics"][frames], room["poses"][frames], axis_alignment)


def _cropped(room: dict, frames: list[int]) -> np.ndarray:
    """Depth cropped at the top left to exact ``CELL``-pixel cells (the intrinsics stay valid)."""
    return room["depths"][frames, : 21 * CELL, : 27 * CELL].copy()


EXACT_GRID = (1, 42, 54)
"""Qwen's grid of one slot over the cropped depth: 21 x 27 merged tokens of ``CELL`` depth pixels each."""


def _alignment(angle: float = 0.5, shift=(1.0, -2.0, 0.3)) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:2, :2] = [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    matrix[:3, 3] = shift
    return matrix


@pytest.mark.parametrize("source, target", [(0, 1), (1, 2), (2, 0), (3, 1), (6, 4)])
def test_token_positions_reproject_onto_the_depth_of_another_frame(room, source, target) -> None:
    alignment = _alignment()
    positions, valid = token_world_positions(_scene(room, [source], axis_alignment=alignment), (1, 24, 32))
    assert positions.shape == (12 * 16, 3) and valid.all()
    uv, z = project_points(positions, room["intrinsics"][target], room["poses"][target], alignment)
    height, width = room["depths"].shape[1:]
    u, v = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
    inside = (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    seen = room["depths"][target][v[inside], u[inside]]
    errors = np.abs(z[inside] - seen)[seen > 0] / seen[seen > 0]
    assert len(errors) >= 50, f"only {len(errors)} tokens of frame {source} fall in frame {target}"
    assert np.median(errors) < 0.02


def test_token_positions_are_in_the_aligned_world(room) -> None:
    alignment = _alignment()
    plain, _ = token_world_positions(_scene(room, [0]), (1, 24, 32))
    aligned, _ = token_world_positions(_scene(room, [0], axis_alignment=alignment), (1, 24, 32))
    np.testing.assert_allclose(aligned, transform(plain, alignment), atol=1e-4)


def test_every_pixel_point_of_frame_0_projects_back_to_its_own_pixel(room) -> None:
    intrinsics, pose, depth = room["intrinsics"][0], room["poses"][0], room["depths"][0]
    points, valid = depth_to_points(depth, intrinsics, pose)
    uv, z = project_points(points[valid], intrinsics, pose)
    v, u = np.nonzero(valid)
    assert np.abs(uv - np.stack([u, v], axis=-1)).max() < 0.1  # float32 world points: a few hundredths of a pixel
    np.testing.assert_allclose(z, depth[valid], rtol=1e-5, atol=1e-5)


def test_invalid_depth_never_pulls_a_token_towards_the_camera(room) -> None:
    depth = _cropped(room, [0])
    points, _ = depth_to_points(depth[0], room["intrinsics"][0], room["poses"][0])
    depth[0, 5 * CELL : 6 * CELL, 7 * CELL : 8 * CELL] = 0  # cell (5, 7): every pixel invalid
    depth[0, 10 * CELL : 11 * CELL, 3 * CELL : 3 * CELL + CELL // 2] = 0  # cell (10, 3): its left half invalid
    positions, valid = token_world_positions(_scene(room, [0], depth), EXACT_GRID)
    assert valid.sum() == 21 * 27 - 1
    assert not valid[5 * 27 + 7] and np.isnan(positions[5 * 27 + 7]).all()
    half = points[10 * CELL : 11 * CELL, 3 * CELL + CELL // 2 : 4 * CELL].reshape(-1, 3)
    np.testing.assert_allclose(positions[10 * 27 + 3], half.mean(0), rtol=1e-5)
    camera = room["poses"][0][:3, 3]
    unmasked = np.concatenate([half, np.repeat(camera[None], len(half), 0)]).mean(0)  # depth 0 -> the camera
    assert np.linalg.norm(positions[10 * 27 + 3] - camera) > 1.5 * np.linalg.norm(unmasked - camera)
    whole = points[2 * CELL : 3 * CELL, 4 * CELL : 5 * CELL].reshape(-1, 3).mean(0)  # an untouched cell
    np.testing.assert_allclose(positions[2 * 27 + 4], whole, rtol=1e-5)


def test_a_token_pools_its_two_frames_and_an_odd_last_frame_stands_alone(room) -> None:
    depth = _cropped(room, [0, 1, 2])
    depth[depth <= 0] = 2.0  # every pixel valid: each frame weighs the same in its slot
    positions, valid = token_world_positions(_scene(room, [0, 1, 2], depth), (2, 42, 54))
    assert positions.shape == (2 * 21 * 27, 3) and valid.all()
    alone = [token_world_positions(_scene(room, [t], depth[[t]]), EXACT_GRID)[0] for t in range(3)]
    np.testing.assert_allclose(positions[: 21 * 27], (alone[0] + alone[1]) / 2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(positions[21 * 27 :], alone[2], rtol=1e-6)


def test_a_scene_whose_frames_do_not_match_the_video_is_an_error(room) -> None:
    with pytest.raises(ValueError, match=r"the scene has 3 frames but the video has 1 to 2 \(1 temporal patches"):
        token_world_positions(_scene(room, [0, 1, 2]), (1, 24, 32))


def test_the_code_is_sin_and_cos_of_each_axis_with_a_zero_tail() -> None:
    code = sinusoidal_position_code(torch.tensor([[0, 0, 0], [2, -1, 5]]), 20)  # 3 frequencies per axis, 2 spare
    assert code.shape == (2, 20) and code.dtype == torch.float32
    torch.testing.assert_close(code[0], torch.tensor(([0.0] * 3 + [1.0] * 3) * 3 + [0.0, 0.0]))
    frequencies = [10000 ** (-k / 3) for k in range(3)]
    expected = [f(v * w) for v in (2, -1, 5) for f in (math.sin, math.cos) for w in frequencies] + [0.0, 0.0]
    torch.testing.assert_close(code[1], torch.tensor(expected))
    with pytest.raises(ValueError, match="width of at least 6"):
        sinusoidal_position_code(torch.zeros(1, 3), 5)


VIDEO, IMAGE = 7, 8
TOKENS = VisualTokens(video_token_id=VIDEO, image_token_id=IMAGE, spatial_merge_size=2, temporal_patch_size=2)


def _context(
    scenes: list, rows: list[list[int]], video_grids: list, image_grids: list | None = None
) -> AssemblyContext:
    input_ids = torch.tensor(rows)
    return AssemblyContext(
        input_ids,
        None,
        input_ids == IMAGE,
        input_ids == VIDEO,
        torch.tensor(image_grids) if image_grids else None,
        torch.tensor(video_grids),
        {},
        {"scenes": scenes},
    )


@pytest.mark.parametrize("origin, scale", [(None, 1.0), ((-10.0, -10.0, -3.0), 0.5)])
def test_the_encoder_adds_the_code_at_video_tokens_only(room, origin, scale) -> None:
    depth = room["depths"][[0, 1], ::5, ::5].copy()  # (2, 70, 87): coarser than the frames
    depth[:, :35, :29] = 0  # the top-left token (its cell: rows 0-34, columns 0-28) has no valid depth
    intrinsics = room["intrinsics"][[0, 1]] * np.array([[0.2], [0.2], [1.0]], dtype=np.float32)
    scene = SceneGeometry(depth, intrinsics, room["poses"][[0, 1]])
    video = [1, 2] + [VIDEO] * 6 + [3]
    rows = [video, video, [1, 2] + [IMAGE] * 6 + [3]]  # scene; no scene; images (with a scene)
    context = _context([scene, None, scene], rows, [[1, 4, 6], [1, 4, 6]], [[1, 4, 6]])
    encoder = Position3DEncoder(20, TOKENS, scale=scale, origin=origin)
    assert not list(encoder.parameters())
    embeds = torch.randn(3, 9, 20)
    out = encoder(embeds, context)

    positions, valid = token_world_positions(scene, (1, 4, 6))
    assert valid.tolist() == [False] + [True] * 5
    corner = positions[valid].min(0) if origin is None else np.array(origin)
    voxels = np.floor((np.nan_to_num(positions) - corner) / 0.1)
    expected = scale * sinusoidal_position_code(torch.from_numpy(voxels), 20) * torch.from_numpy(valid)[:, None]
    torch.testing.assert_close(out[0, 2:8] - embeds[0, 2:8], expected)
    assert torch.equal(out[0, 2], embeds[0, 2])  # the token without valid depth gets nothing
    assert torch.equal(out[0, [0, 1, 8]], embeds[0, [0, 1, 8]])
    assert torch.equal(out[1:], embeds[1:])
    assert torch.equal(encoder(embeds, context), out)  # deterministic


def test_the_encoder_names_the_row_whose_scene_does_not_match_its_video(room) -> None:
    context = _context([None, _scene(room, [0, 1, 2])], [[VIDEO] * 6] * 2, [[1, 4, 6], [1, 4, 6]])
    with pytest.raises(ValueError, match="batch row 1: the scene has 3 frames but the video has 1 to 2"):
        Position3DEncoder(20, TOKENS)(torch.zeros(2, 6, 20), context)


@pytest.fixture(scope="module")
def scene_sample(room) -> Sample:
    """Four room frames resized to 112 x 90 with their depth at 87 x 70 (a fifth of the fixture's)."""
    frames = np.stack(
        [np.asarray(Image.open(ROOM / "rgb" / f"{t}.png").convert("RGB").resize((112, 90))) for t in range(4)]
    )
    scale = np.array([[0.2], [0.2], [1.0]], dtype=np.float32)  # every 5th pixel: fx, fy, cx, cy / 5
    scene = SceneGeometry(room["depths"][:4, ::5, ::5], room["intrinsics"][:4] * scale, room["poses"][:4])
    return Sample(
        sample_id="room/test/0",
        frames=frames,
        frame_names=[str(t) for t in range(4)],
        conversation=[{"role": "user", "content": "Where is the chair?"}, {"role": "assistant", "content": "Left."}],
        timestamps=np.arange(4) / 2,
        scene=scene,
    )


def _logits(model, processor, sample: Sample) -> torch.Tensor:
    with torch.no_grad():
        return model(**SampleCollator.for_model(model, processor)([sample])).logits


def test_a_tiny_unigr_with_the_encoder_sees_the_scene_and_nothing_without_one(
    tiny_parts, scene_sample, tmp_path
) -> None:
    model, processor = build_unigr(tiny_parts["backbone"], None, encoders={"position3d": {}})
    plain, _ = build_unigr(tiny_parts["backbone"], None)
    model, plain = model.eval(), plain.eval()
    without_scene = Sample(**{**scene_sample.__dict__, "scene": None})
    assert not torch.allclose(_logits(model, processor, scene_sample), _logits(plain, processor, scene_sample))
    torch.testing.assert_close(
        _logits(model, processor, without_scene), _logits(plain, processor, without_scene), rtol=0, atol=0
    )
    # no parameters: nothing to train in its group, and it comes back from its config alone
    optimizer_groups = configure_trainable(
        model, {group: {"mode": "full"} for group in group_prefixes()}, lr=1e-4, weight_decay=0.0, new_token_ids=[]
    )
    assert not any(group["name"].startswith("encoder_") for group in optimizer_groups)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = load_unigr(tmp_path)
    assert list(loaded.input_assembly.encoders) == ["position3d"]
    torch.testing.assert_close(
        _logits(loaded.eval(), loaded_processor, scene_sample), _logits(model, processor, scene_sample)
    )
