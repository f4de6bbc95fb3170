"""Prompt tracking: a visual prompt's mask on one frame, carried to every frame of its video as a mask.

One interface, :class:`PromptTracker`: ``track(frames (T, H, W, 3) uint8 RGB, frame, mask (H, W) bool)``
returns ``(T, H, W)`` bool masks, tracked forwards and backwards from the prompt frame. Callers turn a box
or points into a mask first (a filled box; discs around the positive points). Backends, built by name with
:func:`build_tracker` (:data:`TRACKERS`; :func:`available_trackers` lists those that run here):

* ``"sam2"``: SAM2's own video predictor (``sam2.sam2_video_predictor.SAM2VideoPredictor``):
  ``init_state`` on the video, ``add_new_mask`` on the prompt frame, ``propagate_in_video`` forwards and
  then ``reverse=True`` from the prompt frame; each yield is ``(frame index, object ids, mask logits
  (O, 1, H, W))`` at the video's size, kept where the logit is positive. SAM2 is built from an official
  config and ``sam2.1_hiera_*.pt`` checkpoint by :func:`model.sam2_builder.build_sam2` (strict load) with
  the overrides ``sam2.build_sam.build_sam2_video_predictor`` applies (``_target_`` and the
  post-processing ones), except ``fill_hole_area``: it needs SAM2's CUDA extension ``sam2._C``, which
  the PyPI wheel does not build. In sam2 1.1.0, ``init_state`` reads a folder of ``<index>.jpg`` frames
  or an MP4 (``sam2/utils/misc.py: load_video_frames``), so the frames are written to a temporary folder
  as JPEG at quality 100 without chroma subsampling. On the prompt frame the mask is SAM2's own output
  for the mask prompt (the prompt at SAM2's input size, resized back), not the prompt itself.
* ``"cotracker"``: CoTracker3 (``facebookresearch/co-tracker``; not on PyPI, installed by the user).
  ``cotracker.predictor.CoTrackerPredictor(checkpoint, offline=True, v2=False, window_len=60)`` is
  how the repository's ``hubconf.py`` builds ``cotracker3_offline``; it is called on ``video``
  ``(B, T, 3, H, W)`` float in [0, 255] with ``queries`` ``(B, N, 3)`` rows ``(t, x, y)`` in pixels and
  ``backward_tracking=True`` (points tracked before their query frame too), and returns ``tracks``
  ``(B, T, N, 2)`` ``x, y`` in pixels and ``visibility`` ``(B, T, N)`` bool (``cotracker/predictor.py``).
  The checkpoint is a local file (``scaled_offline.pth`` from ``huggingface.co/facebook/cotracker3``),
  never fetched through ``torch.hub``. The queries are up to ``num_points`` pixels of the mask spread
  evenly over it; on each frame a similarity (or affine) transform from their prompt-frame positions to
  their visible tracked positions (``cv2.estimateAffinePartial2D`` / ``cv2.estimateAffine2D``, RANSAC)
  warps the whole prompt mask (``cv2.warpAffine``, nearest neighbour), so the mask keeps its shape. A
  frame where fewer than ``min_visible`` of the points are visible gets an empty mask (the object is
  hidden there).
* ``"optical_flow"``: OpenCV dense optical flow (DIS, or Farneback) between neighbouring frames. For
  frames ``a`` (new) and ``b`` (already masked), ``cv2.DISOpticalFlow.calc(a, b)`` and
  ``cv2.calcOpticalFlowFarneback(a, b)`` return ``flow`` with ``a(p) ~ b(p + flow(p))``, so
  ``cv2.remap`` of ``b``'s mask at ``p + flow(p)`` (backward mapping, bilinear) and a threshold give
  ``a``'s mask; the mask is carried one frame at a time away from the prompt frame. No model, fast, but
  drifts on long clips and loses objects that stop being visible.

Pixel coordinates follow OpenCV's convention (pixel centres at integer ``x, y``), which is also
CoTracker's (its queries are rescaled by ``(size - 1)`` ratios).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import torch
from PIL import Image
from sam2.modeling.sam2_base import SAM2Base

from model.sam2_builder import build_sam2

COTRACKER_INSTALL = "pip install git+https://github.com/facebookresearch/co-tracker"
"""How a user installs CoTracker3 (it is not on PyPI)."""

SAM2_VIDEO_OVERRIDES: dict[str, object] = {
    "model._target_": "sam2.sam2_video_predictor.SAM2VideoPredictor",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability": True,
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta": 0.05,
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh": 0.98,
    "model.binarize_mask_from_pts_for_mem_enc": True,
}
"""What ``build_sam2_video_predictor`` (``apply_postprocessing=True``) sets, less ``fill_hole_area``."""

SAM2_JPEG_QUALITY = 100


class PromptTracker(ABC):
    """Carries a prompt mask given on one frame of a video to every frame of it."""

    name: ClassVar[str]

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this backend cannot run in this environment, or ``None`` when it can."""
        return None

    def track(self, frames: np.ndarray, frame: int, mask: np.ndarray) -> np.ndarray:
        """Masks of the prompted object on every frame.

        Args:
            frames: ``(T, H, W, 3)`` uint8 RGB.
            frame: index of the prompt frame.
            mask: ``(H, W)`` bool prompt on ``frames[frame]``.
        Returns:
            ``(T, H, W)`` bool, tracked forwards and backwards from ``frame``.
        """
        check_prompt(frames, frame, mask)
        return self._track(frames, frame, mask)

    @abstractmethod
    def _track(self, frames: np.ndarray, frame: int, mask: np.ndarray) -> np.ndarray:
        """:meth:`track` on checked inputs."""


def check_prompt(frames: np.ndarray, frame: int, mask: np.ndarray) -> None:
    """Raise a ``ValueError`` naming the prompt frame if ``frames`` / ``frame`` / ``mask`` are not a prompt to track."""
    if not (isinstance(frames, np.ndarray) and frames.ndim == 4 and frames.shape[3] == 3 and frames.dtype == np.uint8):
        got = f"{frames.shape} {frames.dtype}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"frames must be a (T, H, W, 3) uint8 array, got {got}")
    num_frames, height, width = frames.shape[:3]
    if not 0 <= frame < num_frames:
        raise ValueError(f"prompt frame {frame} is outside the video's {num_frames} frames")
    if not isinstance(mask, np.ndarray) or mask.dtype != bool or mask.shape != (height, width):
        got = f"{mask.shape} {mask.dtype}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise ValueError(f"the prompt mask on frame {frame} must be a ({height}, {width}) bool array, got {got}")
    if not mask.any():
        raise ValueError(f"the prompt mask on frame {frame} is empty: nothing to track")


class SAM2Tracker(PromptTracker):
    """SAM2 mask propagation with SAM2's own video predictor (see the module docstring).

    Args:
        checkpoint: an official-layout SAM2 checkpoint (``{"model": state_dict}``), loaded strictly.
        config: the sam2 package config name (or a YAML path) the checkpoint was trained with.
        overrides: dotted config overrides on top of it (e.g. the tiny model's sizes).
        device: where SAM2 runs.
    """

    name = "sam2"

    def __init__(
        self,
        checkpoint: str | Path,
        config: str = "configs/sam2.1/sam2.1_hiera_l.yaml",
        overrides: dict[str, object] | None = None,
        device: str | torch.device = "cpu",
    ):
        predictor = build_sam2(config, {**SAM2_VIDEO_OVERRIDES, **(overrides or {})}, checkpoint)
        self.predictor = predictor.to(device).eval()

    @classmethod
    def from_sam2(cls, sam2: SAM2Base, config: str, overrides: dict[str, object] | None = None) -> SAM2Tracker:
        """A tracker with the weights of an already built SAM2 (a UniGR model's segmentation head: its
        ``sam2_config`` and ``sam2_overrides``), in float32 on that SAM2's device."""
        tracker = cls.__new__(cls)
        predictor = build_sam2(config, {**SAM2_VIDEO_OVERRIDES, **(overrides or {})})
        predictor.load_state_dict(sam2.state_dict())
        tracker.predictor = predictor.to(next(sam2.parameters()).device).eval()
        return tracker

    def _track(self, frames: np.ndarray, frame: int, mask: np.ndarray) -> np.ndarray:
        masks = np.zeros(frames.shape[:3], dtype=bool)
        with tempfile.TemporaryDirectory(prefix="sam2_frames_") as folder:
            for t, image in enumerate(frames):
                Image.fromarray(image).save(Path(folder) / f"{t:05d}.jpg", quality=SAM2_JPEG_QUALITY, subsampling=0)
            state = self.predictor.init_state(folder)  # reads every frame now (no asynchronous loading)
        self.predictor.add_new_mask(state, frame_idx=frame, obj_id=1, mask=torch.from_numpy(mask))
        for reverse in (False, True):
            for t, _, logits in self.predictor.propagate_in_video(state, start_frame_idx=frame, reverse=reverse):
                masks[t] = (logits[0, 0] > 0).cpu().numpy()  # logits: (objects, 1, H, W)
        return masks


MOTION_MODELS = {"similarity": (cv2.estimateAffinePartial2D, 2), "affine": (cv2.estimateAffine2D, 3)}
"""Per motion model, its OpenCV estimator and the fewest point pairs it needs."""


def spread_points(mask: np.ndarray, num_points: int) -> np.ndarray:
    """``(N, 2)`` float32 ``x, y`` of ``min(num_points, area)`` mask pixels, evenly spaced in raster order."""
    ys, xs = np.nonzero(mask)
    keep = np.unique(np.linspace(0, len(xs) - 1, min(num_points, len(xs))).round().astype(int))
    return np.stack([xs[keep], ys[keep]], axis=1).astype(np.float32)


def warp_along_tracks(
    mask: np.ndarray,
    frame: int,
    points: np.ndarray,
    tracks: np.ndarray,
    visible: np.ndarray,
    motion: str = "similarity",
    min_visible: float = 0.1,
    ransac_threshold: float = 3.0,
) -> np.ndarray:
    """The prompt mask warped onto each frame by the motion of points tracked from it.

    Args:
        mask: ``(H, W)`` bool prompt on frame ``frame``.
        points: ``(N, 2)`` ``x, y`` of the tracked points on the prompt frame.
        tracks: ``(T, N, 2)`` their ``x, y`` on every frame.
        visible: ``(T, N)`` bool, whether each point is visible on each frame.
        motion: a :data:`MOTION_MODELS` name.
        min_visible: a frame where fewer than this share of the points is visible gets an empty mask.
    Returns:
        ``(T, H, W)`` bool; ``mask`` itself on the prompt frame. Where the transform cannot be estimated
        (too few or degenerate visible points), the mask moves by the points' median displacement.
    """
    estimate, fewest = MOTION_MODELS[motion]
    height, width = mask.shape
    source = mask.astype(np.uint8)
    needed = max(1, math.ceil(min_visible * len(points)))
    masks = np.zeros((len(tracks), height, width), dtype=bool)
    for t in range(len(tracks)):
        if t == frame:
            masks[t] = mask
            continue
        seen = visible[t]
        if seen.sum() < needed:
            continue  # the object is hidden on this frame
        before, after = points[seen].astype(np.float32), tracks[t, seen].astype(np.float32)
        matrix = None
        if len(before) >= fewest:
            matrix, _ = estimate(before, after, method=cv2.RANSAC, ransacReprojThreshold=ransac_threshold)
        if matrix is None:
            shift = np.median(after - before, axis=0)
            matrix = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])
        masks[t] = cv2.warpAffine(source, matrix, (width, height), flags=cv2.INTER_NEAREST, borderValue=0) > 0
    return masks


class CoTrackerTracker(PromptTracker):
    """CoTracker3 point tracks inside the mask, and the mask warped along them (see the module docstring).

    Args:
        checkpoint: a local CoTracker3 offline checkpoint (e.g. ``scaled_offline.pth``).
        device: where CoTracker runs.
        num_points: at most this many query points, spread evenly over the mask's pixels.
        window_len: CoTracker3 offline's window (60 for the released offline model).
        motion: ``"similarity"`` (translation, rotation, uniform scale) or ``"affine"``.
        min_visible: share of the points that must be visible on a frame for the object to be there.
        ransac_threshold: RANSAC inlier distance in pixels.
    """

    name = "cotracker"

    def __init__(
        self,
        checkpoint: str | Path,
        device: str | torch.device = "cpu",
        num_points: int = 256,
        window_len: int = 60,
        motion: str = "similarity",
        min_visible: float = 0.1,
        ransac_threshold: float = 3.0,
    ):
        reason = self.unavailable_reason()
        if reason is not None:
            raise ImportError(reason)
        if motion not in MOTION_MODELS:
            raise ValueError(f"motion must be one of {sorted(MOTION_MODELS)}, got {motion!r}")
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(
                f"CoTracker3 checkpoint {checkpoint} not found (e.g. scaled_offline.pth from "
                "https://huggingface.co/facebook/cotracker3)"
            )
        predictor_class = importlib.import_module("cotracker.predictor").CoTrackerPredictor
        predictor = predictor_class(checkpoint=str(checkpoint), offline=True, v2=False, window_len=window_len)
        self.predictor = predictor.to(device)
        self.device = torch.device(device)
        self.num_points = num_points
        self.motion = motion
        self.min_visible = min_visible
        self.ransac_threshold = ransac_threshold

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("cotracker") is None:
            return f"CoTracker3 (package cotracker, not on PyPI) is not installed: `{COTRACKER_INSTALL}`"
        return None

    @torch.no_grad()
    def _track(self, frames: np.ndarray, frame: int, mask: np.ndarray) -> np.ndarray:
        points = spread_points(mask, self.num_points)  # (N, 2) x, y
        queries = torch.cat([torch.full((len(points), 1), float(frame)), torch.from_numpy(points)], dim=1)
        video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float()  # (1, T, 3, H, W) in [0, 255]
        tracks, visible = self.predictor(
            video.to(self.device), queries=queries[None].to(self.device), backward_tracking=True
        )  # (1, T, N, 2), (1, T, N)
        return warp_along_tracks(
            mask,
            frame,
            points,
            tracks[0].float().cpu().numpy(),
            visible[0].cpu().numpy().reshape(len(frames), len(points)).astype(bool),
            self.motion,
            self.min_visible,
            self.ransac_threshold,
        )


class OpticalFlowTracker(PromptTracker):
    """The mask carried frame to frame along OpenCV dense optical flow (see the module docstring).

    Args:
        method: ``"dis"`` (``cv2.DISOpticalFlow``, medium preset) or ``"farneback"``.
        threshold: a warped (bilinear) mask value at least this is inside the mask.
    """

    name = "optical_flow"

    def __init__(self, method: str = "dis", threshold: float = 0.5):
        if method not in ("dis", "farneback"):
            raise ValueError(f"optical flow method must be 'dis' or 'farneback', got {method!r}")
        self.method = method
        self.threshold = threshold

    def flow(self, new: np.ndarray, known: np.ndarray) -> np.ndarray:
        """``(H, W, 2)`` float32 flow with ``new(p) ~ known(p + flow(p))`` between two ``(H, W)`` uint8 grey frames."""
        if self.method == "dis":
            return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(new, known, None)
        return cv2.calcOpticalFlowFarneback(new, known, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    def _track(self, frames: np.ndarray, frame: int, mask: np.ndarray) -> np.ndarray:
        grey = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in frames]
        height, width = mask.shape
        grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
        masks = np.zeros(frames.shape[:3], dtype=bool)
        masks[frame] = mask
        for step, stop in ((1, len(frames)), (-1, -1)):
            current = mask
            for t in range(frame + step, stop, step):
                flow = self.flow(grey[t], grey[t - step])
                warped = cv2.remap(
                    current.astype(np.float32),
                    grid_x + flow[..., 0],
                    grid_y + flow[..., 1],
                    cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT,
                    borderValue=0,
                )
                current = masks[t] = warped >= self.threshold
        return masks


TRACKERS: dict[str, type[PromptTracker]] = {
    tracker.name: tracker for tracker in (SAM2Tracker, CoTrackerTracker, OpticalFlowTracker)
}
"""Every tracker backend by name."""


def available_trackers() -> list[str]:
    """Names of the trackers that can run in this environment."""
    return [name for name, tracker in TRACKERS.items() if tracker.unavailable_reason() is None]


def build_tracker(name: str, **options: object) -> PromptTracker:
    """The tracker ``name`` (a :data:`TRACKERS` key) built with ``options`` (its constructor's arguments).

    Raises ``ValueError`` for an unknown name or unknown / missing options and ``ImportError`` (saying how
    to install it) for a backend whose package is missing.
    """
    if name not in TRACKERS:
        raise ValueError(f"unknown tracker {name!r}; known trackers: {sorted(TRACKERS)}")
    tracker = TRACKERS[name]
    reason = tracker.unavailable_reason()
    if reason is not None:
        raise ImportError(f"tracker {name!r} is unavailable: {reason}")
    parameters = dict(inspect.signature(tracker.__init__).parameters)
    parameters.pop("self")
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise ValueError(f"tracker {name!r} has no options {unknown}; its options: {sorted(parameters)}")
    required = {key for key, parameter in parameters.items() if parameter.default is inspect.Parameter.empty}
    missing = sorted(required - set(options))
    if missing:
        raise ValueError(f"tracker {name!r} needs the options {missing}")
    return tracker(**options)
