"""BEV render (utils/scene3d/bev.py) and object markers (utils/scene3d/markers.py): the room's BEV has the size its
extent and scale give and is filled, the highest point wins each pixel, the ceiling is dropped, and a proposal's
marker shows on the frames that see its box (near the projected centre), not behind the camera or behind nearer
depth, with the same id and colour on the BEV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from utils.scene3d.bev import BEVConfig, bev_frame_indices, fuse_frames, render_bev
from utils.scene3d.geometry import depth_to_points, project_points
from utils.scene3d.markers import (
    MarkerConfig,
    bev_marker_positions,
    box_surface_samples,
    draw_markers,
    frame_markers,
    mark_frames,
    marker_colour,
    marker_radius,
)

ROOM = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "scene3d" / "room"
HEIGHT, WIDTH = 350, 434


@pytest.fixture(scope="module")
def room() -> dict[str, np.ndarray]:
    """The real posed RGB-D room: colours (8, 350, 434, 3), depths (8, 350, 434) m, poses (8, 4, 4), K (3, 3)."""
    if not (ROOM / "condition.npz").is_file():
        pytest.skip(f"the shared room fixture is absent ({ROOM})")
    with np.load(ROOM / "condition.npz") as data:
        arrays = {key: np.asarray(data[key], dtype=np.float64) for key in ("intrinsics", "poses", "depths")}
    colors = np.stack([np.asarray(Image.open(ROOM / "rgb" / f"{i}.png").convert("RGB")) for i in range(8)])
    return {"colors": colors, "depths": arrays["depths"], "poses": arrays["poses"], "K": arrays["intrinsics"][0]}


@pytest.fixture(scope="module")
def room_points(room: dict) -> tuple[np.ndarray, np.ndarray]:
    return fuse_frames(room["depths"], room["colors"], room["poses"], room["K"], room["K"], pixel_stride=2)


def surface_box(room: dict, frame: int, size: float = 0.4) -> np.ndarray:
    """A ``(6,)`` box centred on the surface seen at ``frame``'s image centre."""
    points, _ = depth_to_points(room["depths"][frame], room["K"], room["poses"][frame])
    return np.r_[points[HEIGHT // 2, WIDTH // 2], size, size, size]


def markers_of(room: dict, boxes: np.ndarray, depths: np.ndarray, poses: np.ndarray):
    return frame_markers(boxes, depths, poses, room["K"], room["K"], (HEIGHT, WIDTH))


def test_room_bev_has_the_size_of_its_extent_at_the_scale_and_is_filled(room_points: tuple) -> None:
    points, colours = room_points
    config = BEVConfig(metres_per_pixel=0.05, margin=0.1)
    render = render_bev(points, colours, config)
    below = points[points[:, 2] <= np.percentile(points[:, 2], 99.0) - 0.25]
    extent = below[:, :2].max(axis=0) - below[:, :2].min(axis=0) + 0.2
    assert render.image.shape[:2] == tuple(int(np.ceil(e / 0.05)) + 1 for e in extent[::-1])
    assert render.metres_per_pixel == pytest.approx(0.05)
    filled = np.isfinite(render.height)
    assert filled.mean() > 0.3
    assert (render.image[~filled] == 255).all() and (render.image[filled] != 255).any(axis=-1).mean() > 0.9


def test_fixed_image_size_gives_a_square_bev_that_holds_the_scene(room_points: tuple) -> None:
    points, colours = room_points
    render = render_bev(points, colours, BEVConfig(metres_per_pixel=None, image_size=256))
    assert render.image.shape == (256, 256, 3)
    uv = render.to_pixels(points)
    kept = points[:, 2] <= np.percentile(points[:, 2], 99.0) - 0.25
    assert (uv[kept] >= -0.5).all() and (uv[kept] < 255.5).all()


def test_highest_point_wins_each_pixel_and_the_ceiling_is_dropped() -> None:
    floor = np.stack(np.meshgrid(np.arange(0, 2, 0.05), np.arange(0, 2, 0.05)), axis=-1).reshape(-1, 2)
    table = np.array([[1.0, 1.0, 0.8], [1.0, 1.0, 0.5]])  # two points over one floor pixel
    ceiling = np.c_[floor, np.full(len(floor), 2.5)]
    points = np.concatenate([np.c_[floor, np.zeros(len(floor))], table, ceiling])
    colours = np.concatenate(
        [np.full((len(floor), 3), 50), [[255, 0, 0], [0, 255, 0]], np.full((len(ceiling), 3), 200)]
    ).astype(np.uint8)
    config = BEVConfig(metres_per_pixel=0.05, margin=0.0, ceiling_percentile=99.0, fill_iterations=0)
    render = render_bev(points, colours, config)
    u, v = np.rint(render.to_pixels(table[:1])[0]).astype(int)
    assert render.image[v, u].tolist() == [255, 0, 0] and render.height[v, u] == pytest.approx(0.8)
    assert not (render.image == 200).all(axis=-1).any()  # no ceiling pixel
    assert np.nanmax(render.height) == pytest.approx(0.8)


def test_gaps_take_their_highest_neighbour() -> None:
    points = np.array([[0.0, 0.0, 0.0], [0.2, 0.0, 1.0], [0.1, 0.0, 0.5], [0.0, 0.1, 0.0]])
    colours = np.array([[10, 10, 10], [20, 20, 20], [30, 30, 30], [40, 40, 40]], dtype=np.uint8)
    config = BEVConfig(metres_per_pixel=0.1, margin=0.0, max_height=2)
    render = render_bev(points[[0, 1, 3]], colours[[0, 1, 3]], config)
    u, v = np.rint(render.to_pixels(points[2:3])[0]).astype(int)
    assert render.image[v, u].tolist() == [20, 20, 20] and render.height[v, u] == pytest.approx(1.0)


def test_bev_frames_are_evenly_spaced_with_both_ends() -> None:
    assert bev_frame_indices(5, 32) == [0, 1, 2, 3, 4]
    assert bev_frame_indices(100, 5) == [0, 25, 50, 74, 99]


def test_box_surface_samples_lie_on_the_box_faces() -> None:
    samples = box_surface_samples(np.array([[1.0, 2.0, 3.0, 2.0, 4.0, 6.0]]), 4)
    assert samples.shape == (1, 6 * 16, 3)
    offsets = np.abs(samples[0] - [1, 2, 3]) / [1, 2, 3]  # 1 on a face, <= 1 everywhere
    assert (offsets <= 1 + 1e-9).all() and np.isclose(offsets.max(axis=1), 1).all()


def test_marker_appears_near_the_projected_centre_on_a_frame_that_sees_the_box(room: dict) -> None:
    box = surface_box(room, 0)
    markers = markers_of(room, box[None], room["depths"], room["poses"])
    assert markers.shown[0, 0] and markers.visible_fraction[0, 0] > 0.3
    centre, _ = project_points(box[None, :3], room["K"], room["poses"][0])
    assert np.hypot(*(markers.positions[0, 0] - centre[0])) < 15
    assert not markers.shown[7, 0]  # frame 7 looks elsewhere
    assert np.isnan(markers.positions[~markers.shown]).all()


def test_marker_is_absent_when_the_box_is_behind_the_camera(room: dict) -> None:
    box = surface_box(room, 0)
    turned = room["poses"][0].copy()
    turned[:3, :3] = turned[:3, :3] @ np.diag([-1.0, 1.0, -1.0])  # the same camera looking the other way
    markers = markers_of(room, box[None], room["depths"][:1], turned[None])
    assert not markers.shown[0, 0] and markers.visible_fraction[0, 0] == 0


def test_marker_is_absent_when_nearer_depth_occludes_the_box(room: dict) -> None:
    box = surface_box(room, 0)
    distance = project_points(box[None, :3], room["K"], room["poses"][0])[1][0]
    wall = np.full((1, HEIGHT, WIDTH), distance / 2)  # something between the camera and the box
    occluded = markers_of(room, box[None], wall, room["poses"][:1])
    assert not occluded.shown[0, 0]
    seen = markers_of(room, box[None], room["depths"][:1], room["poses"][:1])
    assert seen.shown[0, 0]


def test_tolerance_and_threshold_come_from_the_config(room: dict) -> None:
    box = surface_box(room, 0)
    args = (box[None], room["depths"][:1], room["poses"][:1], room["K"], room["K"], (HEIGHT, WIDTH))
    assert frame_markers(*args).shown[0, 0]
    assert not frame_markers(*args, config=MarkerConfig(min_visible_fraction=0.95)).shown[0, 0]


def disc_share(image: np.ndarray, centre: np.ndarray, radius: int, colour: tuple[int, int, int]) -> float:
    """Share of the pixels within ``0.8 * radius`` of ``centre`` that are exactly ``colour``."""
    rows, cols = np.mgrid[: image.shape[0], : image.shape[1]]
    disc = np.hypot(cols - centre[0], rows - centre[1]) <= 0.8 * radius
    return float((image[disc] == colour).all(axis=-1).mean())


def test_marker_has_the_same_id_and_colour_on_the_bev_and_on_the_frames(room: dict, room_points: tuple) -> None:
    boxes = np.stack([surface_box(room, 0), surface_box(room, 3)])
    render = render_bev(*room_points, BEVConfig(metres_per_pixel=0.05))
    bev_positions = bev_marker_positions(render, boxes)
    np.testing.assert_allclose(bev_positions, render.to_pixels(boxes[:, :3]))
    bev = draw_markers(render.image, bev_positions)
    markers = markers_of(room, boxes, room["depths"], room["poses"])
    frames = mark_frames(room["colors"], markers)
    assert markers.shown[0].tolist() == [True, False] and markers.shown[3].tolist() == [False, True]
    assert marker_colour(0) != marker_colour(1)
    for marker_id, frame in ((0, 0), (1, 3)):
        colour = marker_colour(marker_id)
        on_bev = disc_share(bev, bev_positions[marker_id], marker_radius(bev.shape[:2], MarkerConfig()), colour)
        on_frame = disc_share(
            frames[frame], markers.positions[frame, marker_id], marker_radius((HEIGHT, WIDTH), MarkerConfig()), colour
        )
        assert on_bev > 0.4 and on_frame > 0.4
        other = marker_colour(1 - marker_id)
        assert disc_share(bev, bev_positions[marker_id], 10, other) == 0
    np.testing.assert_array_equal(frames[7], room["colors"][7])  # no marker where no box is seen
