"""How 3D proposals look in the LLM's video tokens: pixel masks, token weights and colour, on the real posed room."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from utils.data.schema import SceneGeometry
from utils.scene3d.geometry import depth_to_points
from utils.scene3d.proposal_views import APPEARANCE_DIM, box_pixel_masks, pixel_stride, proposal_views, token_cells

ROOM = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "scene3d" / "room"
GRID = (2, 8, 10)  # 4 frames in 2 slots, 4 x 5 merged tokens


@pytest.fixture(scope="module")
def room() -> tuple[SceneGeometry, np.ndarray]:
    """The first 4 frames of the real posed room: geometry and colour frames (PIL-free: the arrays in the npz)."""
    if not ROOM.is_dir():
        pytest.skip(f"the real room fixture is absent ({ROOM})")
    from PIL import Image

    condition = np.load(ROOM / "condition.npz")
    geometry = SceneGeometry(condition["depths"][:4], condition["intrinsics"][:4], condition["poses"][:4])
    frames = np.stack([np.asarray(Image.open(ROOM / "rgb" / f"{i}.png").convert("RGB")) for i in range(4)])
    return geometry, frames


def points_of(geometry: SceneGeometry, frame: int) -> tuple[np.ndarray, np.ndarray]:
    return depth_to_points(geometry.depth[frame], geometry.intrinsics[frame], geometry.poses[frame])


def box_around(points: np.ndarray) -> np.ndarray:
    """``(6,)`` centre + size of the axis-aligned box just holding ``points`` ``(n, 3)``."""
    low, high = points.min(axis=0), points.max(axis=0)
    return np.concatenate([(low + high) / 2, (high - low) + 1e-3])


def test_pixel_masks_are_the_pixels_whose_depth_point_lies_in_the_box(room) -> None:
    geometry, _ = room
    points, valid = points_of(geometry, 0)
    patch = points[100:140, 150:200][valid[100:140, 150:200]]
    box = box_around(patch)
    masks = box_pixel_masks(geometry, box[None])
    assert masks.shape == (1, 4, *geometry.depth.shape[1:])
    low, high = box[:3] - box[3:] / 2, box[3:] / 2 + box[:3]
    expected = valid & np.all((points >= low) & (points <= high), axis=-1)
    assert np.array_equal(masks[0, 0], expected)
    assert masks[0, 0, 100:140, 150:200][valid[100:140, 150:200]].all()


def test_masks_resize_to_the_colour_frames_by_nearest_neighbour(room) -> None:
    geometry, _ = room
    points, valid = points_of(geometry, 1)
    box = box_around(points[valid][:5000])
    full = box_pixel_masks(geometry, box[None])
    half = box_pixel_masks(geometry, box[None], size=(175, 217))
    assert half.shape == (1, 4, 175, 217)
    assert np.array_equal(half[0, 1], full[0, 1][1::2, 1::2][:175, :217])


def test_a_box_holding_the_whole_scene_weighs_every_token_with_valid_pixels_fully(room) -> None:
    geometry, frames = room
    everything = np.array([0, 0, 0, 1e4, 1e4, 1e4], dtype=np.float64)
    nowhere = np.array([500, 500, 500, 1, 1, 1], dtype=np.float64)
    views = proposal_views(geometry, frames, np.stack([everything, nowhere]), GRID)
    assert views.token_weights.shape == (2, 2 * 4 * 5) and views.appearance.shape == (2, APPEARANCE_DIM)
    assert np.allclose(views.token_weights[0].numpy(), 1.0)  # the fixture's depth is valid almost everywhere
    assert np.all(views.token_weights[1].numpy() == 0) and np.all(views.appearance[1].numpy() == 0)


def test_token_weights_are_each_tokens_share_of_valid_pixels_in_the_box(room) -> None:
    geometry, frames = room
    points, valid = points_of(geometry, 0)
    box = box_around(points[valid][points[valid][:, 2] < np.median(points[valid][:, 2])])  # the lower half
    views = proposal_views(geometry, frames, box[None], GRID, max_pixels=10**9)  # every pixel
    height, width = geometry.depth.shape[1:]
    cells = token_cells(height, width, 4, 5)
    inside = box_pixel_masks(geometry, box[None])[0]  # (T, h, w)
    ok = geometry.depth > 0
    expected = np.zeros((2, 20))
    for slot in range(2):
        frames_of_slot = slice(2 * slot, 2 * slot + 2)
        hits = np.bincount(cells[None].repeat(2, 0)[inside[frames_of_slot]], minlength=20)
        total = np.bincount(cells[None].repeat(2, 0)[ok[frames_of_slot]], minlength=20)
        expected[slot] = hits / np.maximum(total, 1)
    np.testing.assert_allclose(views.token_weights[0].numpy(), expected.reshape(-1), atol=1e-6)
    assert 0 < expected.mean() < 1


def test_appearance_is_the_colour_mean_and_spread_of_the_pixels_in_the_box(room) -> None:
    geometry, frames = room
    painted = frames.copy()
    painted[..., :] = (255, 0, 51)
    everything = np.array([[0, 0, 0, 1e4, 1e4, 1e4]])
    views = proposal_views(geometry, painted, everything, GRID)
    mean, spread, share = views.appearance[0, :3], views.appearance[0, 3:6], views.appearance[0, 6]
    np.testing.assert_allclose(mean.numpy(), [1.0, 0.0, 0.2], atol=1e-6)
    np.testing.assert_allclose(spread.numpy(), 0.0, atol=1e-3)
    assert share.item() == pytest.approx(np.log1p(1000.0), rel=1e-3)


def test_large_depth_maps_are_sampled_with_a_stride_and_bad_shapes_are_refused(room) -> None:
    assert pixel_stride(480, 640) == 5 and pixel_stride(96, 128) == 1
    geometry, frames = room
    with pytest.raises(ValueError, match="3 colour frames for 4 depth maps"):
        proposal_views(geometry, frames[:3], np.zeros((1, 6)), GRID)
    with pytest.raises(ValueError, match="do not make 3 temporal patches"):
        proposal_views(geometry, frames, np.zeros((1, 6)), (3, 8, 10))
