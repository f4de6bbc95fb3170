"""Turn ScanNet-style scans into scene folders (``utils/scene3d/scene_folder.py``) with a BEV and object markers.

    python scripts/preprocess_scenes.py --layout posed_images --input data/scannet/posed_images \\
        --scans data/scannet/scans --out data/scenes --proposals data/proposals --workers 4
    python scripts/preprocess_scenes.py --layout scannet --input data/scannet/scans --out data/scenes \\
        --objects --proposals gt
    python scripts/preprocess_scenes.py --layout embodiedscan --input data/embodiedscan_infos_val.pkl \\
        --data-root data --out data/scenes --scenes scene0011_00 scene0015_00 --frame-stride 2

Layouts are read by ``utils/scene3d/scannet_layouts.py`` (its docstring gives each one's files).
``--layout gpt4scene`` is refused with the reason: GPT4Scene's image folders have no depth or poses.

``--scans`` is the ScanNet ``scans`` folder (``<scene>/<scene>.txt`` meta for the axis alignment of posed
images; ``<scene>_vh_clean_2.ply`` + segments + aggregation for ``--objects``, ``--bev-source mesh`` and
Mask3D ``pred_masks`` proposals); it defaults to ``--input`` for ``--layout scannet``. ``--proposals`` is a
folder of ``<scene>.npy`` / ``<scene>.npz`` (``read_proposals``) or ``gt`` (the ``--objects`` boxes).

Each scene folder also gets:

    bev_plain.png      the BEV (utils/scene3d/bev.py)
    bev.png            the BEV with each proposal's numbered marker at its box centre
    bev.json           size, metres_per_pixel, world_to_pixel (3x4, aligned world -> pixel u, v, 1) and per
                       proposal its id, label, box and marker pixel
    frame_markers.npz  positions (T, N, 2) of each proposal's marker on every frame (NaN: not shown) and
                       visible_fraction (T, N) (utils/scene3d/markers.py)
    preprocess.json    frames listed / read / kept / dropped (with reasons), notes and seconds

A scene is written in ``<out>/.partial/<scene>`` and moved to ``<out>/<scene>`` when complete, so a rerun
skips finished scenes (those with ``preprocess.json``) and redoes interrupted ones. A scene that fails is
reported and counted and the others go on; ``<out>/preprocess_summary.json`` lists the done, skipped and
failed scenes (with the error), and the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.data.image_io import read_rgb  # noqa: E402
from utils.scene3d.bev import BEVConfig, BEVRender, render_bev, scene_bev  # noqa: E402
from utils.scene3d.geometry import transform  # noqa: E402
from utils.scene3d.markers import (  # noqa: E402
    FrameMarkers,
    MarkerConfig,
    bev_marker_positions,
    draw_markers,
    scene_frame_markers,
)
from utils.scene3d.scannet_layouts import (  # noqa: E402
    PosedFrames,
    read_depth_png,
    read_embodiedscan_infos,
    read_embodiedscan_scene,
    read_ply_vertices,
    read_posed_images,
    read_proposals,
    read_scannet_export,
    refuse_gpt4scene,
    scannet_mesh_path,
    scannet_objects,
)
from utils.scene3d.scene_folder import Boxes, Scene, read_scene, write_scene  # noqa: E402

LAYOUTS = ("posed_images", "scannet", "embodiedscan", "gpt4scene")
FPS = 30.0
"""ScanNet's frame rate: a numeric frame name ``i`` is at ``i / FPS`` seconds."""
MARKER_CHUNK = 64
"""Frames whose depth is read at once for the frame markers."""
DONE_FILE = "preprocess.json"
Mesh = tuple[np.ndarray, np.ndarray | None]
"""A mesh's vertices ``(P, 3)`` and colours ``(P, 3)`` uint8 (or ``None``)."""


@dataclass(frozen=True)
class Options:
    """What every scene is preprocessed with (picklable, for worker processes)."""

    layout: str
    input: Path
    out: Path
    scans: Path | None
    data_root: Path | None
    frame_stride: int
    proposals: str | None
    objects: bool
    bev_source: str
    bev: BEVConfig
    markers: MarkerConfig


class LazyFrames(Sequence):
    """Frames read from their files one at a time, as ``write_scene`` iterates (a scan's frames need not fit in
    memory at once)."""

    def __init__(self, paths: list[Path], read: Callable[[Path], np.ndarray]) -> None:
        self.paths, self.read = paths, read

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.read(self.paths[index])


def read_frames(options: Options, scene_id: str, entry: dict | None) -> PosedFrames:
    """The scan's posed frames in ``options.layout``."""
    if options.layout == "posed_images":
        return read_posed_images(options.input, scene_id, options.scans, options.frame_stride)
    if options.layout == "scannet":
        return read_scannet_export(options.input, scene_id, options.frame_stride)
    return read_embodiedscan_scene(entry, options.data_root, options.frame_stride)


def check_principal_point(intrinsics: np.ndarray, image_path: Path, what: str) -> None:
    """``ValueError`` naming the file when ``K``'s principal point lies outside the image (intrinsics of
    another resolution, e.g. full-size colour intrinsics with resized frames)."""
    with Image.open(image_path) as image:
        width, height = image.size
    cx, cy = intrinsics[0, 2], intrinsics[1, 2]
    if not (0 <= cx < width and 0 <= cy < height):
        raise ValueError(
            f"{image_path}: {what} intrinsics' principal point ({cx:.1f}, {cy:.1f}) is outside the {width}x{height} "
            "image; the intrinsics are for another resolution"
        )


def timestamps(frame_names: list[str]) -> np.ndarray | None:
    """Seconds of numeric ScanNet frame names (``None`` when some name is not a number)."""
    if all(name.isdigit() for name in frame_names):
        return np.array([int(name) for name in frame_names]) / FPS
    return None


def scene_mesh(options: Options, scene_id: str, required_for: str | None) -> Mesh | None:
    """The ScanNet mesh's vertices and colours, or ``None`` when absent and ``required_for`` is ``None``."""
    path = None if options.scans is None else scannet_mesh_path(options.scans / scene_id, scene_id)
    if path is not None and path.is_file():
        return read_ply_vertices(path)
    if required_for is not None:
        raise FileNotFoundError(f"{scene_id}: {required_for} needs the ScanNet mesh {path or '(give --scans)'}")
    return None


def scene_boxes(options: Options, scene_id: str, axis_alignment: np.ndarray) -> tuple[Boxes, Boxes | None, Mesh | None]:
    """``(proposals, ground-truth objects or None, mesh or None)`` of a scene (mesh vertices in the aligned world)."""
    needs_mesh = "--objects" if options.objects else "--bev-source mesh" if options.bev_source == "mesh" else None
    mesh = scene_mesh(options, scene_id, needs_mesh)
    if mesh is not None:
        mesh = (transform(mesh[0], axis_alignment), mesh[1])
    objects = scannet_objects(options.scans / scene_id, scene_id, axis_alignment) if options.objects else None
    if options.proposals is None:
        proposals = Boxes(np.zeros((0, 6), dtype=np.float32), np.zeros(0, dtype=str))
    elif options.proposals == "gt":
        if objects is None:
            raise ValueError("--proposals gt needs --objects")
        proposals = Boxes(objects.boxes, objects.labels, None, objects.object_ids)
    else:
        folder = Path(options.proposals)
        candidates = [folder / f"{scene_id}.npz", folder / f"{scene_id}.npy"]
        path = next((candidate for candidate in candidates if candidate.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{scene_id}: no {scene_id}.npz or {scene_id}.npy in {folder}")
        proposals = read_proposals(path, None if mesh is None else mesh[0])
    return proposals, objects, mesh


def all_frame_markers(scene: Scene, config: MarkerConfig) -> FrameMarkers:
    """Marker positions of the scene's proposals on all its frames, ``MARKER_CHUNK`` frames of depth at a time."""
    color_size = scene.read_colors([0]).shape[1:3]
    chunks = [
        scene_frame_markers(scene, list(range(start, min(start + MARKER_CHUNK, scene.num_frames))), config, color_size)
        for start in range(0, scene.num_frames, MARKER_CHUNK)
    ]
    return FrameMarkers(
        np.concatenate([chunk.positions for chunk in chunks]),
        np.concatenate([chunk.visible_fraction for chunk in chunks]),
    )


def write_bev(folder: Path, render: BEVRender, proposals: Boxes, config: MarkerConfig) -> None:
    """``bev_plain.png``, ``bev.png`` (with markers) and ``bev.json`` of a scene folder."""
    positions = bev_marker_positions(render, proposals.boxes)
    Image.fromarray(render.image).save(folder / "bev_plain.png")
    Image.fromarray(draw_markers(render.image, positions, config)).save(folder / "bev.png")
    markers = [
        {"id": k, "label": str(label), "box": box.tolist(), "pixel": pixel.tolist()}
        for k, (label, box, pixel) in enumerate(zip(proposals.labels, proposals.boxes, positions))
    ]
    (folder / "bev.json").write_text(json.dumps({**render.to_json(), "markers": markers}, indent=1) + "\n")


def process_scene(options: Options, scene_id: str, entry: dict | None) -> str | None:
    """Preprocess one scene into ``<out>/<scene_id>``; ``None`` on success, else the error (never raises)."""
    try:
        start = time.perf_counter()
        final = options.out / scene_id
        if final.exists():
            raise FileExistsError(f"{final} exists without {DONE_FILE}; it was not written by this script")
        frames = read_frames(options, scene_id, entry)
        check_principal_point(frames.color_intrinsics, frames.color_paths[0], "colour")
        check_principal_point(frames.depth_intrinsics, frames.depth_paths[0], "depth")
        proposals, objects, mesh = scene_boxes(options, scene_id, frames.axis_alignment)
        partial = options.out / ".partial" / scene_id
        if partial.exists():
            shutil.rmtree(partial)  # an interrupted earlier run of this script
        write_scene(
            partial,
            frames.frame_names,
            LazyFrames(frames.color_paths, lambda path: read_rgb(path, scene_id, kind="frame")),
            LazyFrames(frames.depth_paths, lambda path: read_depth_png(path, frames.depth_units)),
            frames.poses,
            frames.depth_intrinsics,
            frames.color_intrinsics,
            proposals,
            frames.axis_alignment,
            timestamps(frames.frame_names),
            objects,
        )
        scene = read_scene(partial)
        if options.bev_source == "mesh":
            if mesh[1] is None:
                raise ValueError(f"{scene_id}: the mesh has no vertex colours for --bev-source mesh")
            render = render_bev(mesh[0], mesh[1], options.bev)
        else:
            render = scene_bev(scene, options.bev)
        write_bev(partial, render, scene.proposals, options.markers)
        markers = all_frame_markers(scene, options.markers)
        np.savez(partial / "frame_markers.npz", positions=markers.positions, visible_fraction=markers.visible_fraction)
        report = {
            **frames.report(),
            "layout": options.layout,
            "proposals": len(proposals),
            "objects": None if objects is None else len(objects),
            "bev_source": options.bev_source,
            "seconds": round(time.perf_counter() - start, 3),
        }
        (partial / DONE_FILE).write_text(json.dumps(report, indent=1) + "\n")
        partial.rename(final)
        return None
    except Exception as error:  # one scene's failure is reported and counted; the others go on
        return f"{type(error).__name__}: {error}"


def parse_args(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser and the parsed flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", choices=LAYOUTS, required=True)
    parser.add_argument("--input", type=Path, required=True, help="posed_images root, scans root or info file")
    parser.add_argument("--out", type=Path, required=True, help="root of the scene folders")
    parser.add_argument("--scans", type=Path, default=None, help="ScanNet scans folder (meta, meshes)")
    parser.add_argument("--data-root", type=Path, default=None, help="embodiedscan: root of the info's paths")
    parser.add_argument("--scenes", nargs="+", default=None, help="only these scene ids")
    parser.add_argument("--frame-stride", type=int, default=1, help="read every k-th frame")
    parser.add_argument("--workers", type=int, default=1, help="scenes preprocessed in parallel")
    parser.add_argument("--proposals", default=None, help="folder of <scene>.npy/.npz proposals, or 'gt'")
    parser.add_argument("--objects", action=argparse.BooleanOptionalAction, default=False, help="ScanNet GT objects")
    parser.add_argument("--bev-source", choices=("depth", "mesh"), default="depth")
    parser.add_argument("--bev-metres-per-pixel", type=float, default=0.02)
    parser.add_argument("--bev-size", type=int, default=None, help="square BEV of this side instead of a fixed scale")
    parser.add_argument("--bev-frames", type=int, default=32, help="frames fused into the BEV")
    return parser, parser.parse_args(argv)


def list_scenes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, dict | None]:
    """``{scene id: EmbodiedScan entry or None}`` to preprocess, in order."""
    if not args.input.exists():
        parser.error(f"--input {args.input} does not exist")
    if args.layout == "embodiedscan":
        scenes = read_embodiedscan_infos(args.input)
    else:
        scenes = {path.name: None for path in sorted(args.input.iterdir()) if path.is_dir() and path.name[0] != "."}
    if args.scenes is not None:
        unknown = [scene for scene in args.scenes if scene not in scenes]
        if unknown:
            parser.error(f"--scenes {unknown} are not in {args.input}")
        scenes = {scene: scenes[scene] for scene in args.scenes}
    return scenes


def main(argv: list[str] | None = None) -> int:
    """Preprocess the scenes; exit status 1 when any failed."""
    parser, args = parse_args(argv)
    if args.layout == "gpt4scene":
        try:
            refuse_gpt4scene(args.input)
        except (ValueError, FileNotFoundError) as error:
            parser.error(str(error))
    if args.workers < 1 or args.frame_stride < 1:
        parser.error("--workers and --frame-stride must be >= 1")
    bev = BEVConfig(
        metres_per_pixel=None if args.bev_size else args.bev_metres_per_pixel,
        image_size=args.bev_size,
        max_frames=args.bev_frames,
    )
    options = Options(
        args.layout,
        args.input,
        args.out,
        args.scans if args.scans is not None or args.layout != "scannet" else args.input,
        args.data_root if args.data_root is not None else args.input.parent,
        args.frame_stride,
        args.proposals,
        args.objects,
        args.bev_source,
        bev,
        MarkerConfig(),
    )
    scenes = list_scenes(parser, args)
    skipped = [scene for scene in scenes if (args.out / scene / DONE_FILE).is_file()]
    todo = [scene for scene in scenes if scene not in skipped]
    args.out.mkdir(parents=True, exist_ok=True)
    done, failed = [], {}
    with tqdm(total=len(todo), desc="scenes", unit="scene") as bar:

        def record(scene_id: str, error: str | None) -> None:
            if error is None:
                done.append(scene_id)
            else:
                failed[scene_id] = error
                tqdm.write(f"{scene_id} failed: {error}")
            bar.update()

        if args.workers == 1:
            for scene_id in todo:
                record(scene_id, process_scene(options, scene_id, scenes[scene_id]))
        else:
            with ProcessPoolExecutor(args.workers) as pool:
                futures = {pool.submit(process_scene, options, s, scenes[s]): s for s in todo}
                for future in as_completed(futures):
                    record(futures[future], future.result())
    summary = {"done": sorted(done), "skipped": skipped, "failed": failed}
    (args.out / "preprocess_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{len(done)} scenes done, {len(skipped)} already done, {len(failed)} failed (see {args.out})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
