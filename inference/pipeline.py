"""UniGR for a user's own media: segment what a sentence names, answer about what the user points at.

:class:`UniGRInference` loads a UniGR folder once and answers through the benchmarks' predictors
(:class:`~evaluation.video_seg_predictor.UniGRVideoSegPredictor` for masks,
:class:`~evaluation.answer_predictor.UniGRAnswerPredictor` for text), so the prompt templates, the
frames the LLM sees and their resizing are those of training and evaluation. ``scripts/infer.py`` and
the demo (``app.py``) are thin views over it.

A region question goes through three steps: the prompt drawn on one frame becomes a mask (:meth:`prompt_mask`:
SAM2's own image predictor on the model's SAM2 weights for boxes, clicks and scribbles); the mask is
tracked to every frame (:meth:`track`, any :mod:`utils.visual_prompts.tracking` backend; ``sam2`` runs
SAM2's video predictor on the model's SAM2 weights); then the question is asked with the tracked
masks as the region's prompts: region tokens when the model has the region encoder, else drawn as
an overlay (:func:`~utils.visual_prompts.overlays.apply_overlays`) and named by its phrase.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor
from transformers import TextIteratorStreamer

from evaluation.answer_predictor import UniGRAnswerPredictor
from evaluation.video_seg_predictor import UniGRVideoSegPredictor
from inference.media import Media
from inference.region_prompt import OVERLAY_SHAPES, UserPrompt
from utils.data.prompts import REGION_PLACEHOLDER, object_reference, reasoning_seg_question, referring_seg_question
from utils.data.schema import RegionPrompt, Sample
from utils.visual_prompts.overlays import REFERENCE, OverlayStyle, apply_overlays
from utils.visual_prompts.tracking import PromptTracker, SAM2Tracker, build_tracker, spread_points

SEGMENTATION_KINDS = ("auto", "referring", "reasoning")
"""How a segmentation request is worded: ``referring`` ("Please segment {text} in this video."),
``reasoning`` ("{text} Please answer with a segmentation mask ..."), ``auto``: reasoning for a question
(ending in ``?``), referring otherwise."""

OVERLAY_COLOUR = "red"
"""Colour of the overlay a model without a region encoder is shown."""

SCRIBBLE_POINTS = 8
"""Points along a scribble given to SAM2 as positive clicks."""


@dataclass
class Segmentation:
    """Attributes:
    answer: the model's answer (``[SEG]`` tokens kept).
    masks: ``(O, T, H, W)`` bool, one track per ``[SEG]`` in the answer, in order.
    """

    answer: str
    masks: np.ndarray


def segmentation_question(text: str, medium: str, kind: str = "auto") -> str:
    """The user turn for a segmentation request, with the training templates (:data:`SEGMENTATION_KINDS`)."""
    if kind not in SEGMENTATION_KINDS:
        raise ValueError(f"kind must be one of {SEGMENTATION_KINDS}, got {kind!r}")
    text = text.strip()
    if not text:
        raise ValueError("say what to segment: the expression or question is empty")
    if kind == "auto":
        kind = "reasoning" if text.endswith("?") else "referring"
    return reasoning_seg_question(text, medium) if kind == "reasoning" else referring_seg_question([text], medium)


def region_question(question: str, medium: str) -> str:
    """The user turn about one pointed-at object: ``question`` as written when it names the object
    (``<region>`` or ``<object0><region>``), else prefixed with "There is <object0><region> in the video."."""
    question = question.strip()
    if not question:
        raise ValueError("the question is empty")
    references = REFERENCE.findall(question)
    if len(references) > 1 or any(number not in ("", "0") for number in references):
        raise ValueError("a question here is about one pointed-at object: write <region> once (or not at all)")
    if references:
        return question.replace(f"<object0>{REGION_PLACEHOLDER}", REGION_PLACEHOLDER).replace(
            REGION_PLACEHOLDER, object_reference(0), 1
        )
    return f"There is {object_reference(0)} in the {medium}. {question}"


class UniGRInference:
    """One UniGR folder, loaded once, serving segmentation, region questions, click masks and tracking.

    Args:
        model_dir: a UniGR folder.
        device: ``cpu``, ``cuda``, ``cuda:1``, ...; dtype: ``auto`` (bf16 on a GPU), ``fp32`` or ``bf16``.
        num_frames: frames the LLM sees; ``None``: the number the model was trained with.
        max_new_tokens: the longest answer generated.
        tracker: the :mod:`~utils.visual_prompts.tracking` backend carrying a region to the other frames
            (``sam2`` uses the model's own SAM2 weights; ``optical_flow``; ``cotracker`` if installed).
    """

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "cpu",
        dtype: str = "auto",
        num_frames: int | None = None,
        max_new_tokens: int = 256,
        tracker: str = "sam2",
    ):
        self.answerer = UniGRAnswerPredictor(model_dir, num_frames, device, dtype, max_new_tokens)  # loads the model
        model, loaded = self.answerer.model, (self.answerer.model, self.answerer.processor)
        self.model_dir, self.model = Path(model_dir), model
        self.segmenter = (
            UniGRVideoSegPredictor(model_dir, num_frames, device, dtype, max_new_tokens, loaded=loaded)
            if model.seg_head is not None
            else None
        )
        self.region_encoder = "region" in (model.config.encoders or {})
        if tracker == "sam2" and model.seg_head is None:
            raise ValueError(f"{model_dir} has no SAM2 to track with; choose --tracker optical_flow")
        self.tracker_name = tracker
        self._tracker: PromptTracker | None = None
        self._clicks: SAM2ImagePredictor | None = None

    @property
    def can_segment(self) -> bool:
        """Whether the model has a segmentation head (else it only answers)."""
        return self.segmenter is not None

    def sample(self, media: Media, question: str, regions: list[RegionPrompt] | None = None) -> Sample:
        """The :class:`Sample` of one question about ``media`` (no answer: the model gives it)."""
        return Sample(
            sample_id=f"infer/{media.source.name}",
            frames=media.frames,
            frame_names=media.frame_names,
            conversation=[{"role": "user", "content": question}],
            timestamps=media.timestamps,
            medium=media.medium,
            regions=regions or [],
        )

    def segment(self, media: Media, text: str, kind: str = "auto") -> Segmentation:
        """Segment what ``text`` names (or answers) on every frame of ``media``."""
        if self.segmenter is None:
            raise ValueError(f"{self.model_dir} has no segmentation head; it can only answer questions")
        question = segmentation_question(text, media.medium, kind)
        masks, answer = self.segmenter.predict_objects(self.sample(media, question))
        return Segmentation(answer, masks)

    def region_sample(self, media: Media, question: str, masks: np.ndarray, kind: str = "mask") -> Sample:
        """The sample asking ``question`` about the object whose ``(T, H, W)`` masks are given (frames where
        its mask is empty give no prompt): region tokens, or the overlay of a ``kind`` prompt."""
        regions = [RegionPrompt(t, mask=mask) for t, mask in enumerate(masks) if mask.any()]
        if not regions:
            raise ValueError("the region is empty on every frame: point at an object")
        sample = self.sample(media, region_question(question, media.medium), regions)
        if self.region_encoder:
            return sample
        style = OverlayStyle(OVERLAY_SHAPES[kind], OVERLAY_COLOUR)
        return apply_overlays(sample, [style], "overlay", np.random.default_rng(0))

    def ask(self, sample: Sample) -> Iterator[str]:
        """The answer to ``sample``'s question, streamed: each item is the answer so far."""
        inputs, _ = self.answerer.llm_inputs(sample)
        streamer = TextIteratorStreamer(self.answerer.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def generate() -> None:
            try:
                self.model.generate(inputs, max_new_tokens=self.answerer.max_new_tokens, streamer=streamer)
            except BaseException as error:  # shown to the caller below, after the stream ends
                failure.append(error)
                streamer.end()

        thread = threading.Thread(target=generate, daemon=True)
        thread.start()
        answer = ""
        for piece in streamer:
            answer += piece
            yield answer.strip()
        thread.join()
        if failure:
            raise failure[0]

    def answer(self, sample: Sample) -> str:
        """The whole answer to ``sample``'s question (the last item of :meth:`ask`)."""
        return next(iter(deque(self.ask(sample), maxlen=1)), "")

    def prompt_mask(self, media: Media, prompt: UserPrompt) -> np.ndarray:
        """``(H, W)`` bool mask of the object ``prompt`` points at on its frame: the mask as drawn, or SAM2's
        mask for a box, clicks or a scribble (the drawn shape when the model has no SAM2)."""
        height, width = media.frames.shape[1:3]
        prompt.check(len(media.frames), height, width)
        if prompt.kind == "mask" or self.model.seg_head is None:
            return prompt.drawn_mask(height, width)
        predictor = self._click_predictor()
        predictor.set_image(media.frames[prompt.frame])
        points, labels, box = None, None, None
        if prompt.kind == "box":
            box = prompt.box
        elif prompt.kind == "points":
            points, labels = prompt.points, prompt.labels
        else:
            stroke = prompt.mask if prompt.mask is not None else prompt.drawn_mask(height, width)
            points = spread_points(stroke, SCRIBBLE_POINTS)
            labels = np.ones(len(points), np.int64)
        single_click = box is None and len(points) == 1
        with torch.inference_mode():
            masks, scores, _ = predictor.predict(points, labels, box, multimask_output=single_click)
        mask = masks[int(np.argmax(scores))] > 0
        return mask if mask.any() else prompt.drawn_mask(height, width)

    def track(self, media: Media, frame: int, mask: np.ndarray) -> np.ndarray:
        """``(T, H, W)`` bool: ``mask`` on ``frame`` carried to every frame of ``media`` (an image: itself)."""
        if len(media.frames) == 1:
            return mask[None].copy()
        with torch.inference_mode():
            tracked = self._track_with().track(media.frames, frame, mask)
        tracked[frame] = mask  # on its own frame the user's mask is the truth, whatever the tracker re-segments
        return tracked

    def _track_with(self) -> PromptTracker:
        if self._tracker is None:
            if self.tracker_name == "sam2":
                seg = self.model.seg_head.config
                self._tracker = SAM2Tracker.from_sam2(self.model.seg_head.sam2, seg.sam2_config, seg.sam2_overrides)
            else:
                self._tracker = build_tracker(self.tracker_name)
        return self._tracker

    def _click_predictor(self) -> SAM2ImagePredictor:
        if self._clicks is None:
            sam2 = self.model.seg_head.sam2
            predictor = SAM2ImagePredictor(sam2)
            side = sam2.image_size  # SAM2ImagePredictor assumes 1024 px; its feature sizes follow the model's
            predictor._bb_feat_sizes = [(side // 4, side // 4), (side // 8, side // 8), (side // 16, side // 16)]
            self._clicks = predictor
        return self._clicks
