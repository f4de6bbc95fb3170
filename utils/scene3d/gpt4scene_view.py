"""A 3D scene question as GPT4Scene asks it: a marked bird's-eye view, then marked frames, as separate images.

GPT4Scene's evaluation (its ``evaluate/qwen2_vl.py``, ``bulid_message``) sends one user turn holding the
BEV image and the scene's 32 frames, each a separate image whose longer side is scaled down to at most 512
pixels (``int(side * 512 / longer_side)``, aspect kept), followed by the annotation file's ``prompt``
verbatim: no wording about the BEV or the frames is added. The frames are fixed per scene (its
``selected_images_mark_3D_val_32.json`` lists them by scene id); that list is not reproduced here, and 32
frames uniform over the scan stand in for it. The BEV goes first (the paper's "BEV image and video
frames"). Its annotation files are Chat-Scene's (``scanrefer_mask3d_val.json``, ``scanqa_val.json``, ...),
whose fixed prompts are :data:`GPT4SCENE_QUESTIONS`.

:func:`gpt4scene_view` turns a loader's sample into that form:

* ``frames`` ``(1 + T, h, w, 3)``: the BEV first, then ``T`` frames, each with the numbered marker of every
  proposal it shows (:mod:`utils.scene3d.markers`; marker ``k`` is ``<OBJ{k:03d}>``), ``medium="image"``.
  Frames are scaled as GPT4Scene scales them; the BEV is fitted into the same ``h x w`` and padded with the
  BEV's background colour (a wider margin), because :class:`~utils.data.schema.Sample` holds its images in
  one array. Markers are drawn after scaling, so every image has the same marker size.
* The BEV and the marker positions come from the scene folder's preprocessing (``bev_plain.png``,
  ``bev.json``, ``frame_markers.npz``; ``scripts/preprocess_scenes.py``) when it has them, else they are
  computed here (:func:`~utils.scene3d.bev.scene_bev`, :func:`~utils.scene3d.markers.scene_frame_markers`).
* The user turn is rewritten into :data:`GPT4SCENE_QUESTIONS` for the benchmarks that have one fixed prompt
  (ScanRefer, ScanQA, SQA3D) when the loader built it from its template; a turn the annotation file wrote
  (``meta["prompt_source"] == "file"``) and the Multi3DRefer / Scan2Cap turns (Chat-Scene draws one of
  several templates per item) are kept. The answer is kept.
* ``scene`` (posed depth) is dropped: the model sees images only. ``proposals`` and ``meta`` are kept;
  ``meta`` gains ``view`` (``"gpt4scene"``), the chosen ``frame_indices`` and ``marker_positions``
  ``(1 + T, N, 2)`` (pixel ``u, v`` of each marker on each image, NaN where it is not drawn).
"""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
from PIL import Image

from utils.data.schema import Sample
from utils.scene3d.bev import BEVConfig, scene_bev
from utils.scene3d.markers import MarkerConfig, bev_marker_positions, draw_markers, scene_frame_markers
from utils.scene3d.scene_folder import Scene
from utils.video.sampling import uniform_indices

GPT4SCENE_QUESTIONS: dict[str, str] = {
    # Chat-Scene's grounding prompt (ZzZZCHS/Chat-Scene, others/process_annos.py); the description loses one
    # trailing full stop, as there.
    "scanrefer": (
        'According to the given description, "{description}," please provide the ID of the object that closely '
        "matches this description."
    ),
    # Chat-Scene's preprocess/prepare_scanqa_annos.py and prepare_sqa3d_annos.py (SQA3D: situation, a space,
    # then the question).
    "scanqa": "{question} Answer the question using a single word or phrase.",
    "sqa3d": "{question} Answer the question using a single word or phrase.",
}
"""The user turn of each benchmark GPT4Scene evaluates with one fixed prompt (Chat-Scene's annotation files),
by loader name; the images go before it and nothing else is added (see the module docstring)."""

NUM_FRAMES = 32
"""Frames GPT4Scene's released model sees (``..._mark_32_3D_img512``)."""
MAX_SIDE = 512
"""Longest image side GPT4Scene's released model was trained and evaluated with (``image_resolution 512``)."""
BEV_NAME = "bev"
"""``frame_names[0]`` of a view."""
DEFAULT_BEV = BEVConfig()
"""How a BEV is rendered when the scene folder has none: as ``scripts/preprocess_scenes.py`` renders it."""
DEFAULT_MARKERS = MarkerConfig()
"""Marker visibility and size: as ``scripts/preprocess_scenes.py`` computes and draws them."""


def scaled_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """``(h, w)`` with the longer side at most ``max_side``, aspect kept, as GPT4Scene scales (truncating; an
    image already small enough is kept)."""
    longer = max(height, width)
    if longer <= max_side:
        return height, width
    factor = max_side / longer
    return max(1, int(height * factor)), max(1, int(width * factor))


def scale_pixels(positions: np.ndarray, scale: tuple[float, float], offset: tuple[float, float] = (0, 0)) -> np.ndarray:
    """``(..., 2)`` pixel ``u, v`` (centres at integers) after the image is scaled by ``scale`` ``(x, y)`` and
    shifted by ``offset`` ``(x, y)``; NaN stays NaN."""
    factor, shift = np.asarray(scale, np.float64), np.asarray(offset, np.float64)
    return (np.asarray(positions, np.float64) + 0.5) * factor - 0.5 + shift


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(height, width, 3)``: area averaging to shrink, bilinear to enlarge."""
    if image.shape[:2] == (height, width):
        return np.ascontiguousarray(image)
    shrinking = height * width < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def fit_image(
    image: np.ndarray, height: int, width: int, background: tuple[int, int, int]
) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    """``(canvas (height, width, 3), scale (x, y), offset (x, y))``: ``(H, W, 3)`` ``image`` scaled to fit, aspect
    kept, centred on a ``background`` canvas."""
    factor = min(height / image.shape[0], width / image.shape[1])
    fitted_h = min(height, max(1, round(image.shape[0] * factor)))
    fitted_w = min(width, max(1, round(image.shape[1] * factor)))
    top, left = (height - fitted_h) // 2, (width - fitted_w) // 2
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = background
    canvas[top : top + fitted_h, left : left + fitted_w] = resize_image(image, fitted_h, fitted_w)
    return canvas, (fitted_w / image.shape[1], fitted_h / image.shape[0]), (left, top)


def scene_bev_with_markers(scene: Scene, config: BEVConfig = DEFAULT_BEV) -> tuple[np.ndarray, np.ndarray]:
    """``(BEV (H, W, 3) uint8 without markers, marker pixels (N, 2))``: the preprocessed ``bev_plain.png`` and
    ``bev.json`` when the scene folder has both, else rendered with ``config``."""
    image_path, json_path = scene.folder / "bev_plain.png", scene.folder / "bev.json"
    if not (image_path.is_file() and json_path.is_file()):
        render = scene_bev(scene, config)
        return render.image, bev_marker_positions(render, scene.proposals.boxes)
    with Image.open(image_path) as image:
        bev = np.asarray(image.convert("RGB"))
    markers = json.loads(json_path.read_text()).get("markers")
    if not isinstance(markers, list) or len(markers) != len(scene.proposals):
        found = len(markers) if isinstance(markers, list) else "no"
        raise ValueError(
            f"{json_path}: {found} markers for {len(scene.proposals)} proposals; rerun scripts/preprocess_scenes.py"
        )
    try:
        positions = np.array([marker["pixel"] for marker in markers], dtype=np.float64).reshape(-1, 2)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{json_path}: every marker needs a 'pixel' [u, v] ({error})") from None
    return bev, positions


def scene_marker_positions(scene: Scene, indices: list[int], config: MarkerConfig = DEFAULT_MARKERS) -> np.ndarray:
    """``(T, N, 2)`` marker pixels of the scene's proposals on its frames ``indices`` (NaN where not shown): the
    preprocessed ``frame_markers.npz`` when the scene folder has it, else computed with ``config``."""
    path = scene.folder / "frame_markers.npz"
    if not path.is_file():
        return scene_frame_markers(scene, indices, config).positions
    with np.load(path, allow_pickle=False) as data:
        positions = np.asarray(data["positions"], dtype=np.float64)
    if positions.shape != (scene.num_frames, len(scene.proposals), 2):
        raise ValueError(
            f"{path}: positions {positions.shape} do not fit {scene.num_frames} frames and {len(scene.proposals)} "
            "proposals; rerun scripts/preprocess_scenes.py"
        )
    return positions[indices]


def first_user_turn(sample: Sample) -> int:
    """Index of the sample's first user turn (``ValueError`` naming the sample when it has none)."""
    for index, turn in enumerate(sample.conversation):
        if turn["role"] == "user":
            return index
    raise ValueError(f"{sample.sample_id}: the conversation has no user turn")


def gpt4scene_question(sample: Sample) -> str:
    """The sample's user turn in GPT4Scene's wording (:data:`GPT4SCENE_QUESTIONS`; see the module docstring)."""
    turn = sample.conversation[first_user_turn(sample)]["content"]
    kind = sample.sample_id.split("/", 1)[0]
    if kind not in GPT4SCENE_QUESTIONS or sample.meta.get("prompt_source") == "file":
        return turn
    template = GPT4SCENE_QUESTIONS[kind]
    if kind == "scanrefer":
        description = sample.meta.get("description")
        if not isinstance(description, str) or not description.strip():
            raise ValueError(f"{sample.sample_id}: a ScanRefer sample needs meta['description'], got {description!r}")
        description = description.strip()
        return template.format(description=description[:-1] if description.endswith(".") else description)
    prefix, _, suffix = template.partition("{question}")
    if not (turn.startswith(prefix) and turn.endswith(suffix) and len(turn) > len(prefix) + len(suffix)):
        raise ValueError(f"{sample.sample_id}: the question turn {turn[:80]!r} does not end with {suffix!r}")
    return template.format(question=turn[len(prefix) : len(turn) - len(suffix)].strip())


def gpt4scene_view(
    sample: Sample,
    scene: Scene,
    num_frames: int | None = NUM_FRAMES,
    max_side: int = MAX_SIDE,
    bev_config: BEVConfig = DEFAULT_BEV,
    marker_config: MarkerConfig = DEFAULT_MARKERS,
) -> Sample:
    """The sample as GPT4Scene asks it (see the module docstring).

    Args:
        sample: a 3D scene sample of ``scene`` (a :class:`~utils.data.scene3d.Scene3DDataset` item).
        scene: its scene folder.
        num_frames: frames chosen uniformly over the scene (GPT4Scene: 32, the same for every question of a
            scene); ``None``: the sample's own frames (``meta["frame_indices"]``).
        max_side: the longest side of every image.
        bev_config: how a BEV is rendered when the scene folder has none (its ``background`` pads the BEV).
        marker_config: marker visibility (when the folder has no ``frame_markers.npz``) and size.
    Returns:
        A sample with ``frames`` ``(1 + T, h, w, 3)`` (BEV first), ``frame_names`` ``["bev", ...]``,
        ``medium="image"``, no timestamps and no ``scene``.
    """
    if max_side < 1 or (num_frames is not None and num_frames < 1):
        raise ValueError(f"{sample.sample_id}: max_side and num_frames must be >= 1, got {max_side}, {num_frames}")
    sampled = sample.meta.get("frame_indices")
    if num_frames is None:
        if sampled is None:
            raise ValueError(f"{sample.sample_id}: num_frames=None needs the sample's meta['frame_indices']")
        indices = [int(i) for i in sampled]
    else:
        indices = uniform_indices(scene.num_frames, num_frames)
    frames = sample.frames if sampled is not None and list(sampled) == indices else scene.read_colors(indices)
    height, width = scaled_size(*frames.shape[1:3], max_side)
    frame_positions = scale_pixels(
        scene_marker_positions(scene, indices, marker_config),
        (width / frames.shape[2], height / frames.shape[1]),
    )
    bev, bev_positions = scene_bev_with_markers(scene, bev_config)
    bev, bev_scale, bev_offset = fit_image(bev, height, width, bev_config.background)
    bev_positions = scale_pixels(bev_positions, bev_scale, bev_offset)
    images = [draw_markers(bev, bev_positions, marker_config)]
    images += [
        draw_markers(resize_image(frame, height, width), positions, marker_config)
        for frame, positions in zip(frames, frame_positions)
    ]
    conversation = [dict(turn) for turn in sample.conversation]
    conversation[first_user_turn(sample)]["content"] = gpt4scene_question(sample)
    return replace(
        sample,
        frames=np.stack(images),
        frame_names=[BEV_NAME] + [scene.frame_names[i] for i in indices],
        conversation=conversation,
        timestamps=None,
        medium="image",
        masks=None,
        boxes=None,
        regions=[],
        scene=None,
        meta={
            **sample.meta,
            "view": "gpt4scene",
            "frame_indices": indices,
            "marker_positions": np.concatenate([bev_positions[None], frame_positions]),
        },
    )
