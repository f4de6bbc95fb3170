"""A 3D scene folder asked about in the demo: the sample of one question, and the proposals its answer names.

A question about a scene (:func:`scene_sample`) is the sample the 3D benchmarks build
(:class:`~utils.data.scene3d.Scene3DDataset`): the frames the model's saved settings choose
(:func:`~utils.data.scene3d.scene_frame_indices`, without jitter: its ``frame_sampling`` over its ``num_frames``),
their posed depth (``Sample.scene``), the scene's proposals (``<OBJ{k:03d}>`` is row ``k``) and a user turn worded
with the benchmarks' templates (:func:`scene_question`).

What the user sees (:func:`load_scene_view`): the BEV with each proposal's numbered marker (``bev.png`` and
``bev.json`` of a preprocessed scene, else rendered with :func:`~utils.scene3d.bev.scene_bev`) and a few of the
model's frames with the markers of the proposals each shows (``frame_markers.npz``, else computed). The
proposals an answer names (:func:`highlight_answer`) get a ring in :data:`HIGHLIGHT` on both, their footprint
outlined on the BEV, and one table row each (:data:`TABLE_HEADERS`).

A scene comes from a folder of scene folders on the server (:func:`list_scene_folders`) or from an uploaded
.zip of one scene folder (:func:`extract_scene_zip`): member names leaving the destination, links, and archives
over :class:`SceneZipLimits` are refused, naming the member.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from utils.data.image_io import read_json, read_rgb, safe_id_part
from utils.data.scene3d import (
    CAPTION_QUESTION,
    GROUNDING_QUESTION,
    MULTI_GROUNDING_QUESTION,
    QA_QUESTION,
    scene_frame_indices,
    sentence,
)
from utils.data.schema import Sample
from utils.scene3d.bev import BEVConfig, bev_frame_indices, scene_bev
from utils.scene3d.markers import (
    MarkerConfig,
    bev_marker_positions,
    draw_markers,
    marker_radius,
    scene_frame_markers,
)
from utils.scene3d.object_ids import format_object_id, parse_object_ids
from utils.scene3d.scene_folder import Scene, read_scene

QUESTION_KINDS = ("question", "short answer", "ground an object", "ground objects", "describe an object")
"""How the user's text becomes the user turn (:func:`scene_question`): ``question`` as written; ``short answer``
:data:`~utils.data.scene3d.QA_QUESTION` (ScanQA); ``ground an object`` :data:`~utils.data.scene3d.GROUNDING_QUESTION`
(ScanRefer); ``ground objects`` :data:`~utils.data.scene3d.MULTI_GROUNDING_QUESTION` (Multi3DRefer, none or
several); ``describe an object`` :data:`~utils.data.scene3d.CAPTION_QUESTION` (Scan2Cap; the text names one
proposal, ``<OBJ003>`` or ``3``)."""

GALLERY_FRAMES = 6
"""Frames of the model's shown with their markers (evenly spaced among them)."""

HIGHLIGHT = (255, 214, 0)
"""RGB of the ring around a named proposal's marker and of its footprint on the BEV (no marker fill is this)."""

TABLE_HEADERS = ("object", "label", "centre x", "centre y", "centre z", "size x", "size y", "size z", "on frames")
"""Columns of the named proposals' table: the id, its class, its box in metres (aligned world), and the shown
frames (by name) its marker is on."""


@dataclass(frozen=True)
class SceneZipLimits:
    """What an uploaded scene .zip may unpack to: ``max_megabytes`` in all, ``max_files`` files."""

    max_megabytes: float = 800.0
    max_files: int = 20_000


@dataclass
class SceneView:
    """A scene as the demo shows it and asks about it.

    Attributes:
        scene: the scene folder's metadata.
        llm_frames: indices of the frames the model sees (:func:`~utils.data.scene3d.scene_frame_indices`).
        bev: ``(H, W, 3)`` uint8 BEV with every proposal's marker.
        bev_world_to_pixel: ``(3, 4)`` aligned world ``(x, y, z, 1)`` -> BEV pixel ``(u, v, 1)``.
        bev_markers: ``(N, 2)`` marker pixels ``(u, v)`` on the BEV.
        bev_source: ``"bev.png"`` (preprocessed) or ``"rendered"``.
        gallery: indices of the frames shown, a subset of ``llm_frames``.
        frames: ``(G, h, w, 3)`` uint8 those frames with the markers of the proposals they show.
        frame_markers: ``(G, N, 2)`` marker pixels on them, NaN where the proposal is not shown.
    """

    scene: Scene
    llm_frames: list[int]
    bev: np.ndarray
    bev_world_to_pixel: np.ndarray
    bev_markers: np.ndarray
    bev_source: str
    gallery: list[int]
    frames: np.ndarray
    frame_markers: np.ndarray


@dataclass
class Highlight:
    """The proposals an answer names, drawn.

    Attributes:
        ids: proposals named, each once, in order of first mention.
        out_of_range: ids named that are no proposal of the scene.
        bev: ``(H, W, 3)`` uint8 the view's BEV with ``ids`` highlighted.
        frames: ``(G, h, w, 3)`` uint8 the view's frames with ``ids`` highlighted where shown.
        rows: one row of :data:`TABLE_HEADERS` per id.
    """

    ids: tuple[int, ...]
    out_of_range: tuple[int, ...]
    bev: np.ndarray
    frames: np.ndarray
    rows: list[list]


def scene_question(text: str, kind: str, num_proposals: int) -> str:
    """The user turn asking ``text`` about a scene of ``num_proposals`` proposals, worded as ``kind``
    (:data:`QUESTION_KINDS`)."""
    if kind not in QUESTION_KINDS:
        raise ValueError(f"kind must be one of {QUESTION_KINDS}, got {kind!r}")
    text = text.strip()
    if not text:
        raise ValueError("the question is empty")
    if kind == "question":
        return text
    if kind == "short answer":
        return QA_QUESTION.format(question=text)
    if kind == "ground an object":
        return GROUNDING_QUESTION.format(description=sentence(text))
    if kind == "ground objects":
        return MULTI_GROUNDING_QUESTION.format(description=sentence(text))
    named = parse_object_ids(text, num_proposals)
    ids = (int(text),) if text.isdigit() else named.ids + named.out_of_range
    if len(ids) != 1 or ids[0] >= num_proposals:
        raise ValueError(
            f"to describe an object, name one of the scene's {num_proposals} proposals (<OBJ003> or 3), got {text!r}"
        )
    return CAPTION_QUESTION.format(object=format_object_id(ids[0]))


def scene_sample(scene: Scene, indices: list[int], question: str) -> Sample:
    """The sample asking ``question`` (a user turn, :func:`scene_question`) about ``scene`` on frames ``indices``:
    their colour frames, posed depth and the scene's proposals ``(N, 6)``."""
    return Sample(
        sample_id=f"demo/{safe_id_part(scene.scene_id)}",
        frames=scene.read_colors(indices),
        frame_names=[scene.frame_names[i] for i in indices],
        conversation=[{"role": "user", "content": question}],
        timestamps=scene.timestamps[indices],
        scene=scene.geometry(indices),
        proposals=scene.proposals.boxes,
        proposal_labels=[str(label) for label in scene.proposals.labels],
        meta={"scene_id": scene.scene_id, "frame_indices": list(indices)},
    )


def read_bev(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(bev.png (H, W, 3), world_to_pixel (3, 4), marker pixels (N, 2))`` of a preprocessed scene, or ``None``
    when ``bev.png`` or ``bev.json`` is absent; ``ValueError`` naming the file when they do not fit the scene."""
    image_path, json_path = scene.folder / "bev.png", scene.folder / "bev.json"
    if not (image_path.is_file() and json_path.is_file()):
        return None
    record = read_json(json_path)
    try:
        world_to_pixel = np.asarray(record["world_to_pixel"], dtype=np.float64)
        ids = [int(marker["id"]) for marker in record["markers"]]
        pixels = np.asarray([marker["pixel"] for marker in record["markers"]], dtype=np.float64).reshape(-1, 2)
        size = tuple(int(side) for side in record["size"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{json_path}: not a bev.json of scripts/preprocess_scenes.py ({error!r})") from None
    if world_to_pixel.shape != (3, 4) or ids != list(range(len(scene.proposals))):
        raise ValueError(
            f"{json_path}: {len(ids)} markers (ids {ids[:5]}...) for {len(scene.proposals)} proposals, world_to_pixel "
            f"{world_to_pixel.shape}; preprocess the scene again"
        )
    image = read_rgb(image_path, scene.scene_id, kind="BEV")
    if image.shape[:2] != size:
        raise ValueError(f"{image_path} is {image.shape[0]}x{image.shape[1]}, {json_path} says {size[0]}x{size[1]}")
    return image, world_to_pixel, pixels


def gallery_markers(scene: Scene, gallery: list[int], color_size: tuple[int, int], config: MarkerConfig) -> np.ndarray:
    """``(G, N, 2)`` marker pixels of the proposals on frames ``gallery``: from ``frame_markers.npz`` when the
    scene was preprocessed, else computed (:func:`~utils.scene3d.markers.scene_frame_markers`)."""
    path = scene.folder / "frame_markers.npz"
    if not path.is_file():
        return scene_frame_markers(scene, gallery, config, color_size).positions
    with np.load(path, allow_pickle=False) as data:
        positions = np.asarray(data["positions"], dtype=np.float64)
    expected = (scene.num_frames, len(scene.proposals), 2)
    if positions.shape != expected:
        raise ValueError(f"{path}: positions are {positions.shape}, the scene needs {expected}; preprocess it again")
    return positions[gallery]


def load_scene_view(
    folder: str | Path,
    num_frames: int,
    frame_sampling: str = "uniform",
    gallery_frames: int = GALLERY_FRAMES,
    bev_config: BEVConfig | None = None,
    marker_config: MarkerConfig | None = None,
) -> SceneView:
    """Read scene folder ``folder`` for a model that sees ``num_frames`` frames chosen by ``frame_sampling``
    (see the module docstring), with the default BEV and marker configs unless given; errors name the folder and
    the file."""
    bev_config, marker_config = bev_config or BEVConfig(), marker_config or MarkerConfig()
    scene = read_scene(folder)
    llm_frames = scene_frame_indices(scene, frame_sampling, num_frames)
    preprocessed = read_bev(scene)
    if preprocessed is None:
        render = scene_bev(scene, bev_config)
        markers = bev_marker_positions(render, scene.proposals.boxes)
        bev, world_to_pixel = draw_markers(render.image, markers, marker_config), render.world_to_pixel
    else:
        bev, world_to_pixel, markers = preprocessed
    gallery = [llm_frames[i] for i in bev_frame_indices(len(llm_frames), gallery_frames)]
    colors = scene.read_colors(gallery)
    positions = gallery_markers(scene, gallery, colors.shape[1:3], marker_config)
    frames = np.stack([draw_markers(frame, shown, marker_config) for frame, shown in zip(colors, positions)])
    source = "rendered" if preprocessed is None else "bev.png"
    return SceneView(scene, llm_frames, bev, world_to_pixel, markers, source, gallery, frames, positions)


def highlight_markers(
    image: np.ndarray, positions: np.ndarray, ids: tuple[int, ...], config: MarkerConfig | None = None
) -> np.ndarray:
    """A copy of ``image`` ``(H, W, 3)`` with a thick :data:`HIGHLIGHT` ring round the markers ``ids`` of
    ``positions`` ``(N, 2)`` (NaN rows: not on the image) and those markers drawn again on top."""
    config = config or MarkerConfig()
    canvas = np.ascontiguousarray(image).copy()
    radius = marker_radius(canvas.shape[:2], config)
    named = np.full_like(positions, np.nan, dtype=np.float64)
    named[list(ids)] = positions[list(ids)]
    for centre in named[np.isfinite(named).all(axis=1)]:
        centre = tuple(int(round(c)) for c in centre)
        ring, thickness = round(1.6 * radius), max(3, radius // 2)
        cv2.circle(canvas, centre, ring, (0, 0, 0), thickness + 2, lineType=cv2.LINE_AA)  # dark edge: seen on any fill
        cv2.circle(canvas, centre, ring, HIGHLIGHT, thickness, lineType=cv2.LINE_AA)
    return draw_markers(canvas, named, config)


def outline_footprints(image: np.ndarray, boxes: np.ndarray, world_to_pixel: np.ndarray) -> np.ndarray:
    """A copy of a BEV ``(H, W, 3)`` with the floor footprint of each of ``boxes`` ``(K, 6)`` (centre + size,
    aligned world) outlined in :data:`HIGHLIGHT`; ``world_to_pixel`` ``(3, 4)``."""
    canvas = np.ascontiguousarray(image).copy()
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
    corners = np.concatenate([boxes[:, :3] - boxes[:, 3:] / 2, boxes[:, :3] + boxes[:, 3:] / 2])  # (2K, 3)
    pixels = np.hstack([corners, np.ones((len(corners), 1))]) @ world_to_pixel.T  # (2K, 3): u, v, 1
    low, high = np.split(np.rint(pixels[:, :2]).astype(int), 2)
    thickness = max(2, round(0.006 * min(canvas.shape[:2])))
    for (u1, v1), (u2, v2) in zip(low, high):
        cv2.rectangle(canvas, (u1, v1), (u2, v2), HIGHLIGHT, thickness, lineType=cv2.LINE_AA)
    return canvas


def highlight_answer(view: SceneView, answer: str, config: MarkerConfig | None = None) -> Highlight:
    """The proposals ``answer`` names as ``<OBJ###>`` highlighted on the view's BEV and frames, with their rows."""
    config = config or MarkerConfig()
    scene = view.scene
    named = parse_object_ids(answer, len(scene.proposals))
    boxes = scene.proposals.boxes[list(named.ids)].reshape(-1, 6)
    bev = outline_footprints(view.bev, boxes, view.bev_world_to_pixel)
    bev = highlight_markers(bev, view.bev_markers, named.ids, config)
    frames = np.stack(
        [highlight_markers(f, shown, named.ids, config) for f, shown in zip(view.frames, view.frame_markers)]
    )
    shown = np.isfinite(view.frame_markers[..., 0])  # (G, N)
    rows = []
    for k, box in zip(named.ids, boxes):
        on_frames = ", ".join(scene.frame_names[view.gallery[g]] for g in np.flatnonzero(shown[:, k]))
        rows.append(
            [
                format_object_id(k),
                str(scene.proposals.labels[k]),
                *np.round(box.astype(np.float64), 2).tolist(),
                on_frames,
            ]
        )
    return Highlight(named.ids, named.out_of_range, bev, frames, rows)


def list_scene_folders(root: str | Path) -> list[Path]:
    """The scene folders (with ``scene.npz``) directly under ``root``, by name; hidden ones (``.partial``) left
    out."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"the scene root {root} is not a folder; make one with scripts/preprocess_scenes.py")
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] != "." and (p / "scene.npz").is_file())


def _member_path(member: zipfile.ZipInfo, archive: str) -> PurePosixPath:
    """The member's relative path; ``ValueError`` for a name leaving the archive's folder or a link."""
    path = PurePosixPath(member.filename.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ValueError(f"{archive}: {member.filename!r} points outside the archive's folder")
    if stat.S_ISLNK(member.external_attr >> 16):
        raise ValueError(f"{archive}: {member.filename!r} is a link; zip the scene folder's files themselves")
    return path


def extract_scene_zip(path: str | Path, destination: str | Path, limits: SceneZipLimits = SceneZipLimits()) -> Path:
    """Unpack the one scene folder (the folder holding ``scene.npz``) of the .zip ``path`` into ``destination``;
    returns it. Its files are written under ``destination / <folder name>`` (a ``scene.npz`` at the zip's top:
    the zip's name); other files of the zip are not written. ``ValueError`` naming the zip for an archive that
    is not a zip, holds no or several scene folders, breaks ``limits`` (also while unpacking: sizes stated in
    the archive are not trusted), has unsafe member names or a damaged member."""
    path, destination = Path(path), Path(destination)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{path.name} is not a readable .zip ({error})") from None
    with archive:
        members = [(member, _member_path(member, path.name)) for member in archive.infolist() if not member.is_dir()]
        max_bytes = limits.max_megabytes * 1e6
        if len(members) > limits.max_files or sum(member.file_size for member, _ in members) > max_bytes:
            raise ValueError(
                f"{path.name}: {len(members)} files of {sum(m.file_size for m, _ in members) / 1e6:.0f} MB; at most "
                f"{limits.max_files} files and {limits.max_megabytes:g} MB may be unpacked"
            )
        scenes = sorted({relative.parent for _, relative in members if relative.name == "scene.npz"})
        if len(scenes) != 1:
            found = ", ".join(str(scene) for scene in scenes[:5])
            raise ValueError(
                f"{path.name} holds {len(scenes)} scene folders ({found or 'no scene.npz'}); zip exactly one "
                "scene folder (made by scripts/preprocess_scenes.py)"
            )
        prefix = scenes[0]
        name = prefix.name or safe_id_part(path.stem)
        folder = destination / name
        written = 0
        for member, relative in members:
            if prefix.parts != relative.parts[: len(prefix.parts)]:
                continue  # outside the scene folder
            target = folder.joinpath(*relative.parts[len(prefix.parts) :])
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(member) as source, target.open("wb") as out:
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise ValueError(f"{path.name} unpacks to more than {limits.max_megabytes:g} MB")
                        out.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
                raise ValueError(f"{path.name}: cannot unpack {member.filename!r} ({error})") from None
    return folder
