"""Bird's-eye view (BEV) of a scene: a top-down orthographic render of its coloured points, GPT4Scene style.

The points are the valid depth pixels of (a subset of) the frames, back-projected into the aligned
world and coloured from the colour frames (:func:`fuse_frames`), or a mesh's coloured vertices. The
render (:func:`render_bev`) looks down the aligned world's ``-z`` (z up, ScanNet's aligned convention):

- the ceiling goes first: points above ``percentile(z, ceiling_percentile) - ceiling_margin`` (or above
  ``max_height`` when set) are dropped;
- each pixel shows its highest point (a z-buffer by height, with ``np.lexsort``);
- empty pixels take their highest neighbour's colour ``fill_iterations`` times (closing the gaps
  between sparse points);
- scale is ``metres_per_pixel`` (image size from the scene's extent) or ``image_size`` (a square image
  the scene fills, centred).

Pixel ``(u, v)`` = ``world_to_pixel @ (x, y, z, 1)``: ``u`` grows with ``x`` (columns), ``v`` with ``-y``
(rows, so the image is a map with ``+y`` up), and pixel centres sit at integer coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utils.scene3d.geometry import depth_to_points, transform
from utils.scene3d.scene_folder import Scene

NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


@dataclass(frozen=True)
class BEVConfig:
    """How a BEV is rendered (see the module docstring).

    Attributes:
        metres_per_pixel: fixed scale; exactly one of it and ``image_size`` is set.
        image_size: side of a square image the scene is fitted into.
        margin: metres of background around the scene's points.
        ceiling_percentile, ceiling_margin: points above ``percentile(z) - margin`` are the ceiling.
        max_height: drop points above this aligned-world ``z`` instead (metres), or ``None``.
        max_frames: frames fused, evenly spaced over the scene.
        pixel_stride: every ``pixel_stride``-th depth pixel (rows and columns) is fused.
        max_depth: depth beyond this (metres) is not fused (far depth is noisy), or ``None``.
        fill_iterations: gap-filling passes.
        background: RGB of empty pixels.
    """

    metres_per_pixel: float | None = 0.02
    image_size: int | None = None
    margin: float = 0.1
    ceiling_percentile: float = 99.0
    ceiling_margin: float = 0.25
    max_height: float | None = None
    max_frames: int = 32
    pixel_stride: int = 2
    max_depth: float | None = 8.0
    fill_iterations: int = 1
    background: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self) -> None:
        if (self.metres_per_pixel is None) == (self.image_size is None):
            raise ValueError("BEVConfig: set exactly one of metres_per_pixel and image_size")
        if self.metres_per_pixel is not None and self.metres_per_pixel <= 0:
            raise ValueError(f"BEVConfig: metres_per_pixel must be > 0, got {self.metres_per_pixel}")
        if self.image_size is not None and self.image_size < 2:
            raise ValueError(f"BEVConfig: image_size must be >= 2, got {self.image_size}")
        if self.max_frames < 1 or self.pixel_stride < 1 or self.fill_iterations < 0:
            raise ValueError("BEVConfig: max_frames and pixel_stride must be >= 1, fill_iterations >= 0")


@dataclass
class BEVRender:
    """A rendered BEV.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        height: ``(H, W)`` float32 aligned-world ``z`` of each pixel's top point, NaN where empty.
        world_to_pixel: ``(3, 4)`` aligned world ``(x, y, z, 1)`` -> pixel ``(u, v, 1)``.
    """

    image: np.ndarray
    height: np.ndarray
    world_to_pixel: np.ndarray

    @property
    def metres_per_pixel(self) -> float:
        return float(1.0 / self.world_to_pixel[0, 0])

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """``(N, 2)`` float pixel ``(u, v)`` of ``(N, 3)`` aligned-world points."""
        return transform(np.asarray(points, dtype=np.float64), np.vstack([self.world_to_pixel, [0, 0, 0, 1]]))[:, :2]

    def to_json(self) -> dict:
        """The render's geometry as ``bev.json`` records it."""
        return {
            "size": list(self.image.shape[:2]),
            "metres_per_pixel": self.metres_per_pixel,
            "world_to_pixel": self.world_to_pixel.tolist(),
        }


def fuse_frames(
    depths: np.ndarray,
    colors: np.ndarray,
    poses: np.ndarray,
    depth_intrinsics: np.ndarray,
    color_intrinsics: np.ndarray,
    axis_alignment: np.ndarray | None = None,
    pixel_stride: int = 1,
    max_depth: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Coloured aligned-world points of the valid depth pixels of posed RGB-D frames.

    Args:
        depths: ``(T, h, w)`` z-depth in metres, 0 invalid.
        colors: ``(T, H, W, 3)`` uint8 RGB (any size; pixels are looked up through ``color_intrinsics``).
        poses: ``(T, 4, 4)`` camera-to-world.
        depth_intrinsics, color_intrinsics: ``(3, 3)``.
        axis_alignment: ``(4, 4)`` world-to-aligned-world, or ``None``.
        pixel_stride: fuse every ``pixel_stride``-th depth row and column.
        max_depth: ignore depth beyond this (metres), or ``None``.
    Returns:
        ``(points (P, 3) float32, colours (P, 3) uint8)``; points outside the colour frame are left out.
    """
    # K of the strided depth image: pixel u' of the strided image is pixel u = stride * u' of the full one.
    strided_k = np.array(depth_intrinsics, dtype=np.float64)
    strided_k[:2] /= pixel_stride
    color_height, color_width = colors.shape[1:3]
    all_points, all_colours = [], []
    for depth, color, pose in zip(depths, colors, poses):
        depth = depth[::pixel_stride, ::pixel_stride]
        if max_depth is not None:
            depth = np.where(depth <= max_depth, depth, 0)
        points, valid = depth_to_points(depth, strided_k, pose, axis_alignment)
        rows, cols = np.nonzero(valid)
        # The same camera ray in the colour image: u_c = fx_c * (u_d - cx_d) / fx_d + cx_c.
        u = color_intrinsics[0, 0] * (cols - strided_k[0, 2]) / strided_k[0, 0] + color_intrinsics[0, 2]
        v = color_intrinsics[1, 1] * (rows - strided_k[1, 2]) / strided_k[1, 1] + color_intrinsics[1, 2]
        u, v = np.rint(u).astype(np.int64), np.rint(v).astype(np.int64)
        inside = (u >= 0) & (u < color_width) & (v >= 0) & (v < color_height)
        all_points.append(points[rows[inside], cols[inside]])
        all_colours.append(color[v[inside], u[inside]])
    return np.concatenate(all_points), np.concatenate(all_colours)


def _world_to_pixel(lower: np.ndarray, upper: np.ndarray, config: BEVConfig) -> tuple[np.ndarray, int, int]:
    """``(world_to_pixel (3, 4), height, width)`` of an image covering ``[lower, upper]`` (x, y) plus the margin."""
    lower, upper = lower - config.margin, upper + config.margin
    if config.metres_per_pixel is not None:
        scale = config.metres_per_pixel
        width, height = (np.ceil((upper - lower) / scale).astype(int) + 1).tolist()
        left, top = lower[0], upper[1]
    else:
        width = height = config.image_size
        scale = float((upper - lower).max()) / (config.image_size - 1)
        centre = (lower + upper) / 2
        half = scale * (config.image_size - 1) / 2
        left, top = centre[0] - half, centre[1] + half
    matrix = np.array(
        [[1 / scale, 0, 0, -left / scale], [0, -1 / scale, 0, top / scale], [0, 0, 0, 1]], dtype=np.float64
    )
    return matrix, height, width


def _fill_gaps(image: np.ndarray, height: np.ndarray, iterations: int) -> None:
    """Give each empty pixel (NaN ``height``) the colour and height of its highest non-empty neighbour, in place."""
    for _ in range(iterations):
        empty = np.isnan(height)
        padded_height = np.pad(np.nan_to_num(height, nan=-np.inf), 1, constant_values=-np.inf)
        padded_image = np.pad(image, ((1, 1), (1, 1), (0, 0)))
        best = np.full(height.shape, -np.inf)
        best_colour = np.zeros_like(image)
        rows, cols = height.shape
        for dy, dx in NEIGHBOURS:  # 8 shifted copies of the whole image
            shifted = padded_height[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols]
            better = empty & (shifted > best)
            best[better] = shifted[better]
            best_colour[better] = padded_image[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols][better]
        filled = empty & np.isfinite(best)
        height[filled] = best[filled]
        image[filled] = best_colour[filled]


def render_bev(points: np.ndarray, colours: np.ndarray, config: BEVConfig = BEVConfig()) -> BEVRender:
    """Top-down render of ``(P, 3)`` aligned-world points with ``(P, 3)`` uint8 colours (module docstring)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(colours) != len(points):
        raise ValueError(f"render_bev: points must be (P, 3) with (P, 3) colours, got {points.shape}, {colours.shape}")
    finite = np.isfinite(points).all(axis=1)
    points, colours = points[finite], np.asarray(colours, dtype=np.uint8)[finite]
    if not len(points):
        raise ValueError("render_bev: no finite points to render")
    z = points[:, 2]
    if config.max_height is not None:
        cut = config.max_height
    else:
        cut = np.percentile(z, config.ceiling_percentile) - config.ceiling_margin
    below = z <= cut
    if not below.any():
        raise ValueError(f"render_bev: every point is above the ceiling cut ({cut:.3f} m)")
    points, colours = points[below], colours[below]
    world_to_pixel, height, width = _world_to_pixel(points[:, :2].min(axis=0), points[:, :2].max(axis=0), config)
    uv = np.rint(transform(points, np.vstack([world_to_pixel, [0, 0, 0, 1]]))[:, :2]).astype(np.int64)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    pixel = uv[inside, 1] * width + uv[inside, 0]
    z, colours = points[inside, 2], colours[inside]
    order = np.lexsort((-z, pixel))  # by pixel, highest point first within each pixel
    pixel, z, colours = pixel[order], z[order], colours[order]
    first = np.r_[True, pixel[1:] != pixel[:-1]]
    image = np.empty((height * width, 3), dtype=np.uint8)
    image[:] = config.background
    heights = np.full(height * width, np.nan, dtype=np.float32)
    image[pixel[first]] = colours[first]
    heights[pixel[first]] = z[first]
    image, heights = image.reshape(height, width, 3), heights.reshape(height, width)
    _fill_gaps(image, heights, config.fill_iterations)
    return BEVRender(image, heights, world_to_pixel)


def bev_frame_indices(num_frames: int, max_frames: int) -> list[int]:
    """Up to ``max_frames`` frame indices evenly spaced over ``num_frames`` (first and last included)."""
    if num_frames <= max_frames:
        return list(range(num_frames))
    return np.unique(np.linspace(0, num_frames - 1, max_frames).round().astype(int)).tolist()


def scene_bev(scene: Scene, config: BEVConfig = BEVConfig()) -> BEVRender:
    """BEV of a scene folder, fused from ``config.max_frames`` of its frames."""
    indices = bev_frame_indices(scene.num_frames, config.max_frames)
    points, colours = fuse_frames(
        scene.read_depths(indices),
        scene.read_colors(indices),
        scene.poses[indices],
        scene.depth_intrinsics,
        scene.color_intrinsics,
        scene.axis_alignment,
        config.pixel_stride,
        config.max_depth,
    )
    return render_bev(points, colours, config)
