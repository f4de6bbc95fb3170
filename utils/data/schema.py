"""The one sample schema every dataset yields and every collator, predictor and metric reads.

A :class:`Sample` is media (a video, an image, or several images), a conversation and optional typed
targets and prompts. Each task family fills the fields it has; the collator
(:mod:`utils.data.collate`) has one step per field, so adding a family means adding a field and a
step, never a second collator. Dataset-specific facts that no model input depends on (ids, expression
types, source frame indices) stay in ``meta``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MEDIA = ("video", "image")
"""``Sample.medium``: a video goes through Qwen's video path, an image through its image path."""


def mask_box(mask: np.ndarray) -> np.ndarray:
    """``(4,)`` float ``x1, y1, x2, y2`` pixel-edge box of a non-empty ``(H, W)`` mask."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


@dataclass
class RegionPrompt:
    """What a user points at on one frame: a mask, a box or points (at least one of them).

    Attributes:
        frame: index into the sample's frames.
        mask: ``(H, W)`` bool, or ``None``.
        box: ``(4,)`` float ``x1, y1, x2, y2`` in pixels of the frame, or ``None``.
        points: ``(P, 2)`` float ``x, y`` in pixels, or ``None``; ``point_labels`` ``(P,)``: 1 positive, 0 negative.
        region: which ``<region>`` placeholder of the conversation it fills: the ``region``-th
            occurrence (0-based) of :data:`~utils.data.prompts.REGION_PLACEHOLDER` in the user turns,
            written ``<object{region}><region>`` (:func:`~utils.data.prompts.object_reference`).
            Several prompts with the same ``region`` are one object seen on several frames.
    """

    frame: int
    mask: np.ndarray | None = None
    box: np.ndarray | None = None
    points: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    region: int = 0

    def __post_init__(self) -> None:
        if self.mask is None and self.box is None and self.points is None:
            raise ValueError(f"region prompt on frame {self.frame} has no mask, box or points")


@dataclass
class SceneGeometry:
    """Posed RGB-D for a 3D scene seen as video (ScanNet conventions).

    Attributes:
        depth: ``(T, h, w)`` float32 metres, 0 where invalid.
        intrinsics: ``(3, 3)`` or ``(T, 3, 3)`` depth-camera intrinsics.
        poses: ``(T, 4, 4)`` camera-to-world.
        axis_alignment: ``(4, 4)`` world-to-aligned-world, or ``None`` (identity).
    """

    depth: np.ndarray
    intrinsics: np.ndarray
    poses: np.ndarray
    axis_alignment: np.ndarray | None = None

    def take(self, indices: list[int]) -> SceneGeometry:
        """The geometry of frames ``indices`` only (the frames the LLM sees)."""
        intrinsics = self.intrinsics[indices] if self.intrinsics.ndim == 3 else self.intrinsics
        return SceneGeometry(self.depth[indices], intrinsics, self.poses[indices], self.axis_alignment)


@dataclass
class Sample:
    """A video (or image, ``T = 1``) with a conversation and optional targets and prompts.

    Attributes:
        sample_id: unique and stable, ``"<dataset>/<split>/<...>"``; predictions are keyed by it.
        frames: ``(T, H, W, 3)`` uint8 RGB.
        frame_names: ``T`` names of the frames in their source (file stems), in time order.
        conversation: ``[{"role": "user" | "assistant", "content": str}, ...]``, several turns allowed.
        masks: ``(O, T, H, W)`` bool, one track per ``[SEG]`` of the answer, in order; ``None`` if unknown.
        timestamps: ``(T,)`` float seconds of each frame in its source (videos; ``None`` for images).
        medium: ``"video"`` or ``"image"`` (``"image"`` with ``T > 1``: several images, one per frame).
        regions: prompts on frames, for ``<region>`` placeholders or overlays.
        boxes: ``(O, T, 4)`` float pixel boxes per object and frame, NaN where absent; ``None`` if unknown.
        scene: posed RGB-D of a 3D scene, or ``None``.
        proposals: ``(N, 6)`` 3D boxes (centre, size) of object proposals, or ``None``.
        proposal_labels: the detector's class name of each proposal (``N``), or ``None`` if it gave none.
        boxes_3d: per ``[GRD]`` of the answer, in order, the ``(K, 6)`` float32 ground-truth boxes (centre, size,
            in the proposals' frame) it refers to (``K = 0``: nothing in the scene fits); ``None`` if unknown.
            Needs ``proposals`` (the grounding head chooses among them).
        situations: per ``[SIT]`` of the conversation, in order, the speaker's ``(4,)`` float32 pose (``x, y, z`` in the
            proposals' frame, heading in radians from +x about the vertical axis; SQA3D's situation); ``None`` if
            unknown. Needs ``proposals`` (the grounding head points at where they stand and what they face).
        grounding_multi: each ``[GRD]`` may name zero, one or several objects (Multi3DRefer: the grounding
            head's multi-target loss and prediction) rather than at most one (ScanRefer). It is part of the
            task, so inference keeps it (``boxes_3d`` is a target).
        meta: dataset-specific facts (video id, expression ids and type, source frame indices, ...).
            Question-answering samples add ``answer`` (the reference answer text, also the last
            assistant turn), ``category`` (question type, for per-category scores) and, for multiple
            choice, ``options`` (``["(A) ...", "(B) ...", ...]`` as the benchmark writes them).
    """

    sample_id: str
    frames: np.ndarray
    frame_names: list[str]
    conversation: list[dict[str, str]]
    masks: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    medium: str = "video"
    regions: list[RegionPrompt] = field(default_factory=list)
    boxes: np.ndarray | None = None
    scene: SceneGeometry | None = None
    proposals: np.ndarray | None = None
    proposal_labels: list[str] | None = None
    boxes_3d: list[np.ndarray] | None = None
    situations: list[np.ndarray] | None = None
    grounding_multi: bool = False
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.medium not in MEDIA:
            raise ValueError(f"{self.sample_id}: medium must be one of {MEDIA}, got {self.medium!r}")
        num_frames = len(self.frames)
        if self.timestamps is not None:
            self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
            if self.timestamps.shape != (num_frames,):
                raise ValueError(f"{self.sample_id}: {self.timestamps.shape} timestamps for {num_frames} frames")
            if num_frames > 1 and not np.all(np.diff(self.timestamps) > 0):
                raise ValueError(f"{self.sample_id}: frame timestamps must increase")
        if self.masks is not None and self.masks.shape[1:] != (num_frames, *self.frames.shape[1:3]):
            raise ValueError(f"{self.sample_id}: masks {self.masks.shape} do not match frames {self.frames.shape[:3]}")
        for prompt in self.regions:
            if not 0 <= prompt.frame < num_frames:
                raise ValueError(f"{self.sample_id}: region prompt on frame {prompt.frame} of {num_frames}")
        if self.proposal_labels is not None and (
            self.proposals is None or len(self.proposal_labels) != len(self.proposals)
        ):
            raise ValueError(f"{self.sample_id}: proposal_labels must name each of the proposals")
        if self.boxes_3d is not None:
            self.boxes_3d = [self._grounding_boxes(j, boxes) for j, boxes in enumerate(self.boxes_3d)]
        if self.situations is not None:
            if self.proposals is None:
                raise ValueError(f"{self.sample_id}: situation poses need the scene's proposals")
            self.situations = [np.asarray(pose, dtype=np.float32) for pose in self.situations]
            if any(pose.shape != (4,) or not np.isfinite(pose).all() for pose in self.situations):
                raise ValueError(f"{self.sample_id}: each situation must be a finite (x, y, z, heading) pose")

    def _grounding_boxes(self, index: int, boxes: np.ndarray) -> np.ndarray:
        """``boxes_3d[index]`` as ``(K, 6)`` float32, checked (finite, sizes >= 0, at most one box unless multi)."""
        where = f"{self.sample_id}: boxes_3d[{index}]"
        if self.proposals is None:
            raise ValueError(f"{where}: 3D grounding targets need the scene's proposals")
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.ndim != 2 or boxes.shape[1] != 6:
            raise ValueError(f"{where}: expected (K, 6) centre + size boxes, got shape {boxes.shape}")
        if not np.isfinite(boxes).all() or (boxes[:, 3:] < 0).any():
            raise ValueError(f"{where}: a box is not finite or has a negative size")
        if len(boxes) > 1 and not self.grounding_multi:
            raise ValueError(f"{where}: {len(boxes)} boxes for one [GRD]; several targets need grounding_multi")
        return boxes
