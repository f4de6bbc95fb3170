"""Which geometry tokens a synthetic 4D question is about: the GSM's selection targets.

A question (:class:`~utils.dynamic.qa_templates.Query`) is about its target objects, and its observer when that is an
object, over its frames (one frame, or every frame of an interval, and the reference frame of an ``abs_*`` type).
:func:`query_cells` projects those objects' centres with the world's camera into the video's merged token grid (Qwen's
order: slot, row, column; a slot holds ``temporal_patch`` frames) and returns the tokens they fall in. Frames after
the video (direction prediction) count as its last frame; a centre behind the camera or outside the frame gives no
token.
"""

from __future__ import annotations

import numpy as np

from utils.dynamic.qa_templates import Query
from utils.scene3d.geometry import project_points, transform
from utils.synthetic.dynamic_world import DynamicWorld


def query_frames(query: Query, num_video_frames: int) -> list[int]:
    """The video frames ``query`` is about, clipped to the video."""
    frames = set(range(query.frames[0], query.frames[-1] + 1))
    if query.reference is not None:
        frames.add(query.reference)
    return sorted({min(frame, num_video_frames - 1) for frame in frames})


def query_cells(
    world: DynamicWorld, query: Query, frame_size: tuple[int, int], grid: tuple[int, int, int], temporal_patch: int = 2
) -> list[int]:
    """Indices of the merged video tokens (``grid``: ``(slots, rows, columns)`` after merging, ``frame_size`` the
    rendered ``(H, W)``) where ``query``'s objects are at its frames, sorted."""
    slots, rows, columns = grid
    height, width = frame_size
    objects = [*query.targets, *([query.observer] if query.observer is not None else [])]
    cells = set()
    for frame in query_frames(query, world.num_video_frames):
        slot = frame // temporal_patch
        if slot >= slots:
            continue
        pixels, depths = project_points(world.positions[objects, frame], world.intrinsics, world.camera_poses[frame])
        for (u, v), depth in zip(pixels, depths):
            if depth > 0 and 0 <= u < width and 0 <= v < height:
                cells.add((slot * rows + int(v / height * rows)) * columns + int(u / width * columns))
    return sorted(cells)


def asked_position(world: DynamicWorld, query: Query) -> list[float]:
    """Where ``query``'s first target is, seen from the camera, at the first and the last of its frames (clipped to the
    video): per frame its centre's ``x / z``, ``y / z`` (the image direction, OpenCV axes) and ``log z`` (depth in
    metres), 6 numbers."""
    position = []
    for frame in (query.frames[0], query.frames[-1]):
        frame = min(frame, world.num_video_frames - 1)
        x, y, z = transform(world.positions[query.targets[0], frame], np.linalg.inv(world.camera_poses[frame]))
        position += [float(x / z), float(y / z), float(np.log(z))]
    return position
