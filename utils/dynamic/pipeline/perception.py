"""Step (b): each curated object's 3D trajectory (and an agent's facing) through a video, as DSR Suite builds them.

Per video (:func:`perceive_video`), on ``num_frames`` uniformly sampled frames:

1. **detection**: Grounding DINO (transformers' ``GroundingDinoForObjectDetection``) finds each object named by
   step (a) on the detection frame, one text query per object (``"<name>."``), keeping its best box above
   ``box_threshold``; an object it does not find is counted (``not_detected``);
2. **tracking**: the box, filled as a mask, is carried to every frame by a prompt tracker
   (:func:`utils.visual_prompts.tracking.build_tracker`, SAM2's video predictor);
3. **geometry**: Pi3 (:class:`model.geometry.pi3.Pi3Model`) reconstructs point maps, confidences and camera
   poses of the frames (resized to ``pi3_max_pixels``, sides multiples of 14); each object's position per frame
   is the median of its mask's confident points, gaps filled in time, everything turned upright
   (:mod:`utils.dynamic.pipeline.trajectories`); an object seen on fewer than ``min_seen_fraction`` of the
   frames is dropped (``rarely_seen``);
4. **orientation**: for agents, Orient Anything (:mod:`utils.dynamic.orientation`) on the object's crop of every
   frame where it is seen; azimuths with at least ``min_orientation_confidence`` give the facing in the world
   (:func:`~utils.dynamic.orientation.facing_from_azimuth` with the frame's camera), other frames are
   interpolated; an agent with no confident frame keeps no facing (``no_orientation``).

The result is ``<output>/b_perception/<video id>.npz`` (:func:`save_tracks`): ``names (N,)``, ``agents (N,)``
bool, ``positions (N, T, 3)``, ``forward (N, T, 3)`` (NaN rows for objects without a facing), ``seen (N, T)``,
``camera_poses (T, 4, 4)``, ``timestamps (T,)`` seconds and ``num_video_frames`` (the shown ones).
:func:`load_scene` reads it as the templates' :class:`~utils.dynamic.qa_templates.DynamicScene`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

from model.geometry.pi3 import Pi3Model
from utils.dynamic.orientation import OrientAnything, facing_from_azimuth, object_crop
from utils.dynamic.pipeline.runner import save_npz_atomic
from utils.dynamic.pipeline.trajectories import fill_gaps, object_positions, to_upright, upright_rotation
from utils.dynamic.qa_templates import DynamicScene, Track
from utils.video.clip import read_clip
from utils.video.sampling import FrameSampling
from utils.visual_prompts.tracking import PromptTracker

STEP = "b_perception"


@dataclass(frozen=True)
class PerceptionConfig:
    """Settings of step (b) (see the module docstring).

    Attributes:
        num_frames: frames sampled uniformly from the video (at least 5).
        detection_frame: index among them where objects are detected.
        box_threshold / text_threshold: Grounding DINO's box and text scores.
        pi3_max_pixels: Pi3's input area (sides rounded to multiples of 14).
        confidence_threshold: ``sigmoid(conf)`` a point needs (Pi3's demo uses 0.1).
        min_points: confident mask points a frame needs to place the object.
        min_seen_fraction: share of the frames an object must be placed on to be kept.
        min_orientation_confidence: Orient Anything confidence an azimuth needs.
        metric_scale: metres per reconstruction unit (Pi3's scale is arbitrary; 1: leave it).
        future_frames: the last sampled frames are not shown (step (e) trims the video before them); the
            trajectories go on through them, so direction prediction questions can be asked. 0: all shown.
    """

    num_frames: int = 32
    detection_frame: int = 0
    box_threshold: float = 0.3
    text_threshold: float = 0.25
    pi3_max_pixels: int = 255_000
    confidence_threshold: float = 0.1
    min_points: int = 10
    min_seen_fraction: float = 0.5
    min_orientation_confidence: float = 0.5
    metric_scale: float = 1.0
    future_frames: int = 0

    def __post_init__(self) -> None:
        shown = self.num_frames - self.future_frames
        if shown < 5 or self.future_frames < 0 or not 0 <= self.detection_frame < shown:
            raise ValueError(f"need at least 5 shown frames and detection_frame among them, got {self}")


@dataclass
class PerceptionModels:
    """One set of models on one device (a worker of step (b))."""

    detector: GroundingDinoForObjectDetection
    processor: GroundingDinoProcessor
    tracker: PromptTracker
    pi3: Pi3Model
    orientation: OrientAnything | None
    device: torch.device


def perception_path(output: Path, video_id: str) -> Path:
    return output / STEP / f"{video_id}.npz"


@torch.no_grad()
def detect(
    models: PerceptionModels, image: np.ndarray, names: list[str], config: PerceptionConfig
) -> list[np.ndarray | None]:
    """Per name, the best ``(x0, y0, x1, y1)`` pixel box on ``image`` ``(H, W, 3)`` uint8 above the thresholds, or
    ``None``; one query per name (``"<name>."``, lower case, as Grounding DINO expects)."""
    texts = [f"{name.lower().strip().rstrip('.')}." for name in names]
    inputs = models.processor(images=[image] * len(names), text=texts, return_tensors="pt", padding=True)
    outputs = models.detector(**inputs.to(models.device))
    results = models.processor.post_process_grounded_object_detection(
        outputs,
        inputs["input_ids"],
        threshold=config.box_threshold,
        text_threshold=config.text_threshold,
        target_sizes=[image.shape[:2]] * len(names),
    )
    boxes = []
    for result in results:
        if len(result["scores"]) == 0:
            boxes.append(None)
            continue
        boxes.append(result["boxes"][result["scores"].argmax()].cpu().numpy())
    return boxes


def box_mask(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool: the pixels whose centres lie in ``box`` ``(x0, y0, x1, y1)`` (at least one pixel)."""
    x0, y0, x1, y1 = box
    columns, rows = np.arange(width) + 0.5, np.arange(height) + 0.5
    mask = ((rows >= y0) & (rows <= y1))[:, None] & ((columns >= x0) & (columns <= x1))[None]
    if not mask.any():
        mask[int(np.clip((y0 + y1) / 2, 0, height - 1)), int(np.clip((x0 + x1) / 2, 0, width - 1))] = True
    return mask


def pi3_size(height: int, width: int, max_pixels: int, patch: int = 14) -> tuple[int, int]:
    """Pi3's input ``(h, w)``: the aspect ratio kept, area at most ``max_pixels``, sides multiples of ``patch``."""
    scale = np.sqrt(max_pixels / (height * width))
    return max(1, int(height * scale / patch)) * patch, max(1, int(width * scale / patch)) * patch


@torch.no_grad()
def reconstruct(pi3: Pi3Model, frames: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """``(points (T, h, w, 3), confidence (T, h, w) in [0, 1], camera_poses (T, 4, 4))`` of ``frames``
    ``(T, H, W, 3)`` uint8 resized to ``size``, from Pi3 (its world: its first camera; bfloat16 autocast on CUDA)."""
    device = next(pi3.parameters()).device
    pixels = torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float() / 255.0  # (T, 3, H, W)
    pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):  # as Pi3 runs
        output = pi3(pixels[None])
    return (
        output.points[0].float().cpu().numpy(),
        torch.sigmoid(output.conf[0, ..., 0]).double().cpu().numpy(),
        output.camera_poses[0].double().cpu().numpy(),
    )


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(T, H, W)`` bool masks at ``size`` ``(h, w)`` (nearest)."""
    resized = F.interpolate(torch.from_numpy(masks).float()[:, None], size=size, mode="nearest")
    return resized[:, 0].numpy() > 0.5


def agent_facing(
    models: PerceptionModels,
    frames: np.ndarray,
    masks: np.ndarray,
    poses: np.ndarray,
    times: np.ndarray,
    config: PerceptionConfig,
) -> np.ndarray | None:
    """``(T, 3)`` world facing of the object of ``masks`` ``(T, H, W)`` from Orient Anything on its crops (see the
    module docstring), or ``None`` when no frame gives a confident azimuth."""
    visible = np.flatnonzero(masks.reshape(len(masks), -1).any(1))
    if models.orientation is None or len(visible) == 0:
        return None
    ratio = models.orientation.config.foreground_ratio
    estimate = models.orientation.estimate([object_crop(frames[t], masks[t], ratio) for t in visible])
    confident = np.zeros(len(frames), bool)
    confident[visible] = estimate.confidence >= config.min_orientation_confidence
    if not confident.any():
        return None
    azimuth = np.zeros(len(frames))
    azimuth[visible] = estimate.azimuth
    facing = facing_from_azimuth(azimuth, poses)
    yaw = fill_gaps(np.arctan2(facing[:, 1], facing[:, 0]), confident, times, angular=True)
    return np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], axis=1)


def perceive_video(
    path: Path, objects: list[dict], models: PerceptionModels, config: PerceptionConfig
) -> tuple[dict[str, np.ndarray], Counter]:
    """The tracks of ``objects`` (``[{"name", "agent"}]``) in the video at ``path`` (see the module docstring) and
    the counts of objects dropped or left without a facing, by reason."""
    clip = read_clip(path, FrameSampling("uniform", num_frames=config.num_frames))
    frames, times = clip.frames, clip.timestamps
    if len(frames) < config.num_frames:
        raise ValueError(f"{path}: {len(frames)} frames decoded, {config.num_frames} asked for")
    counts: Counter = Counter()
    size = pi3_size(*frames.shape[1:3], config.pi3_max_pixels)
    points, confidence, pi3_poses = reconstruct(models.pi3, frames, size)
    rotation = upright_rotation(pi3_poses)
    points, poses = to_upright(points, pi3_poses, rotation, config.metric_scale)
    boxes = detect(models, frames[config.detection_frame], [entry["name"] for entry in objects], config)
    kept: dict[str, list] = {"names": [], "agents": [], "positions": [], "forward": [], "seen": []}
    for entry, box in zip(objects, boxes):
        if box is None:
            counts["not_detected"] += 1
            continue
        prompt = box_mask(box, *frames.shape[1:3])
        masks = models.tracker.track(frames, config.detection_frame, prompt)  # (T, H, W)
        positions, seen = object_positions(
            points, confidence >= config.confidence_threshold, resize_masks(masks, size), config.min_points
        )
        if seen.mean() < config.min_seen_fraction:
            counts["rarely_seen"] += 1
            continue
        forward = agent_facing(models, frames, masks, poses, times, config) if entry["agent"] else None
        if entry["agent"] and forward is None:
            counts["no_orientation"] += 1
        kept["names"].append(entry["name"])
        kept["agents"].append(bool(entry["agent"]))
        kept["positions"].append(fill_gaps(positions, seen, times))
        kept["forward"].append(np.full((len(frames), 3), np.nan) if forward is None else forward)
        kept["seen"].append(seen)
    count = len(kept["names"])
    arrays = {
        "names": np.array(kept["names"], dtype=str),
        "agents": np.array(kept["agents"], dtype=bool),
        "positions": np.array(kept["positions"]).reshape(count, len(frames), 3),
        "forward": np.array(kept["forward"]).reshape(count, len(frames), 3),
        "seen": np.array(kept["seen"], dtype=bool).reshape(count, len(frames)),
        "camera_poses": poses,
        "timestamps": times,
        "num_video_frames": np.array(len(frames) - config.future_frames),
    }
    counts["objects_kept"] += count
    return arrays, counts


def save_tracks(output: Path, video_id: str, arrays: dict[str, np.ndarray]) -> None:
    save_npz_atomic(perception_path(output, video_id), arrays)


def load_scene(path: Path) -> DynamicScene:
    """The tracks saved by step (b) at ``path`` as a :class:`DynamicScene`."""
    with np.load(path) as data:
        tracks = [
            Track(str(name), positions, None if np.isnan(forward).any() else forward)
            for name, positions, forward in zip(data["names"], data["positions"], data["forward"])
        ]
        return DynamicScene(tracks, data["camera_poses"], data["timestamps"], int(data["num_video_frames"]))
