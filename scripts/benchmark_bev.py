"""Seconds per scene of the BEV render and the object markers, on a scene folder made from the real room fixture.

    python scripts/benchmark_bev.py                       # fixture-size frames (434x350), 32 frames, 50 proposals
    python scripts/benchmark_bev.py --scannet-size --frames 64 --proposals 100 --repeats 3

The scene folder is written once (not timed) from ``../shared/fixtures/scene3d/room`` (8 posed RGB-D frames,
cycled to ``--frames``); ``--scannet-size`` resizes them to ScanNet's sizes (colour 1296x968, depth 640x480)
and scales the intrinsics. Proposals are ``--boxes-size`` m boxes centred on random depth points (seeded).
Each row is the median over ``--repeats`` runs of one stage, as ``scripts/preprocess_scenes.py`` runs it:

    bev              read the BEV frames (BEVConfig.max_frames, colour + depth), fuse, render
    bev markers      draw every proposal's marker on the BEV
    frame markers    visibility + positions of every proposal on every frame (reads all depth)
    marked frames    --marked-frames frames read and drawn with their markers (what a sample gets)
    total            the sum: seconds per scene
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.scene3d.bev import BEVConfig, scene_bev  # noqa: E402
from utils.scene3d.geometry import depth_to_points, scale_intrinsics  # noqa: E402
from utils.scene3d.markers import (  # noqa: E402
    MarkerConfig,
    bev_marker_positions,
    draw_markers,
    mark_scene_frames,
    scene_frame_markers,
)
from utils.scene3d.scene_folder import Boxes, Scene, read_scene, write_scene  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROOM = ROOT.parent / "shared" / "fixtures" / "scene3d" / "room"
SCANNET_COLOR, SCANNET_DEPTH = (968, 1296), (480, 640)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=32, help="frames in the scene")
    parser.add_argument("--proposals", type=int, default=50, help="proposal boxes")
    parser.add_argument("--box-size", type=float, default=0.5, help="proposal box side, m")
    parser.add_argument("--marked-frames", type=int, default=8, help="frames drawn with markers")
    parser.add_argument("--scannet-size", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def write_room_scene(folder: Path, args: argparse.Namespace) -> None:
    """The room fixture as a scene folder with ``args.frames`` frames and ``args.proposals`` boxes."""
    with np.load(ROOM / "condition.npz") as data:
        depths, poses = np.asarray(data["depths"]), np.asarray(data["poses"], dtype=np.float64)
        k = np.asarray(data["intrinsics"][0], dtype=np.float64)
    colors = np.stack([np.asarray(Image.open(ROOM / "rgb" / f"{i}.png").convert("RGB")) for i in range(len(depths))])
    rng = np.random.default_rng(args.seed)
    surface = np.concatenate([depth_to_points(d, k, p)[0][::8, ::8].reshape(-1, 3) for d, p in zip(depths, poses)])
    centres = surface[rng.choice(len(surface), args.proposals, replace=False)]
    boxes = np.c_[centres, np.full((args.proposals, 3), args.box_size)]
    color_k = depth_k = k
    if args.scannet_size:
        size = depths.shape[1:]
        colors = np.stack([cv2.resize(c, SCANNET_COLOR[::-1], interpolation=cv2.INTER_LINEAR) for c in colors])
        depths = np.stack([cv2.resize(d, SCANNET_DEPTH[::-1], interpolation=cv2.INTER_NEAREST) for d in depths])
        color_k, depth_k = scale_intrinsics(k, size, SCANNET_COLOR), scale_intrinsics(k, size, SCANNET_DEPTH)
    cycle = np.arange(args.frames) % len(depths)
    write_scene(
        folder,
        [f"{i:05d}" for i in range(args.frames)],
        colors[cycle],
        depths[cycle],
        poses[cycle],
        depth_k,
        color_k,
        Boxes(boxes.astype(np.float32), np.full(args.proposals, "object")),
    )


def timed(stage: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        stage()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main(argv: list[str] | None = None) -> None:
    """Write the scene, time each stage, print seconds per scene."""
    args = parse_args(argv)
    if not (ROOM / "condition.npz").is_file():
        sys.exit(f"the room fixture is absent ({ROOM})")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "room"
        write_room_scene(folder, args)
        scene: Scene = read_scene(folder)
        bev_config, marker_config = BEVConfig(), MarkerConfig()
        render = scene_bev(scene, bev_config)
        marked = list(np.linspace(0, scene.num_frames - 1, min(args.marked_frames, scene.num_frames)).astype(int))
        rows = {
            "bev": timed(lambda: scene_bev(scene, bev_config), args.repeats),
            "bev markers": timed(
                lambda: draw_markers(render.image, bev_marker_positions(render, scene.proposals.boxes), marker_config),
                args.repeats,
            ),
            "frame markers": timed(
                lambda: scene_frame_markers(scene, list(range(scene.num_frames)), marker_config), args.repeats
            ),
            "marked frames": timed(lambda: mark_scene_frames(scene, marked, marker_config), args.repeats),
        }
        colour_size = "x".join(map(str, scene.read_colors([0]).shape[2:0:-1]))
    print(
        f"room fixture, {args.frames} frames ({colour_size} colour), {args.proposals} proposals, "
        f"BEV {render.image.shape[1]}x{render.image.shape[0]} from {min(bev_config.max_frames, args.frames)} frames, "
        f"median of {args.repeats}"
    )
    for name, seconds in rows.items():
        print(f"  {name:<15} {seconds:7.3f} s")
    print(f"  {'total':<15} {sum(rows.values()):7.3f} s per scene")


if __name__ == "__main__":
    main()
