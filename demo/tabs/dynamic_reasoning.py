"""Tab *Dynamic reasoning*: upload a video and ask how things move in it (DSR-Bench's kind of question); the answer
is streamed, and the objects the question is about are found, tracked and drawn on the video.

The question is asked as DSR-Bench asks it (:mod:`utils.data.dsr_bench`): with options (one per line) it is
:func:`~utils.data.prompts.multiple_choice_question`, and the LLM sees DSR-Bench's 32 uniformly sampled frames
(:data:`~utils.data.dsr_bench.DSR_NUM_FRAMES`) unless the user picks the model's own count; the answer comes from
the model's :class:`~evaluation.answer_predictor.UniGRAnswerPredictor`, as in the benchmark.

Tracking (only with ``app.py --detector PATH``, a Grounding DINO folder): the objects named by the user
(comma-separated) or, if none, those the question names (:func:`objects_in_question`) are detected on the first
frame by the dynamic pipeline's :func:`~utils.dynamic.pipeline.perception.detect`, each box becomes a mask with the
model's SAM2 and is carried to every frame (:meth:`~inference.pipeline.UniGRInference.track`); the output video
shows each object's mask, box and name.

Each user's upload lives in that user's ``gr.State`` (:class:`DynamicSession`); the model and detector are shared.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from demo.context import DemoContext, describe
from demo.tabs import register_tab
from evaluation.answer_predictor import UniGRAnswerPredictor
from evaluation.dynamic_scoring import final_choice
from inference.media import VIDEO_SUFFIXES, Media
from inference.outputs import draw_labelled_box, object_colours, overlay_frames
from inference.pipeline import UniGRInference
from inference.region_prompt import UserPrompt
from utils.data.dsr_bench import DSR_NUM_FRAMES, lettered_options
from utils.data.prompts import multiple_choice_question
from utils.dynamic.pipeline.perception import PerceptionConfig, PerceptionModels, detect
from utils.video.encode import write_video

DETECTION = PerceptionConfig()
"""The dynamic pipeline's detection settings (frame 0, box and text thresholds); the tab's slider sets the box one."""

STOP_WORDS = frozenset(
    "a an the at as in on of to from with between and or compared compare than that this after before during "
    "while when where which what how is are was were be does do did will would can could move moves moving moved "
    "relative it its their they facing faces go goes going change changes changed changing become becomes stay "
    "stays turn turns turning rotate rotates travel travels head heads grow grows shrink shrinks".split()
)
"""Words that end a noun phrase of :func:`objects_in_question`."""

NOT_OBJECTS = frozenset(
    "perspective video camera viewer observer direction distance speed velocity orientation way end start beginning "
    "average time moment frame frames scene left right front back side option options answer question".split()
)
"""Heads of phrases that are no trackable object (the camera is the viewpoint, not something in the frame)."""

MAX_PHRASE_WORDS = 4


@dataclass
class DynamicSession:
    """One user's work in this tab: the uploaded video and the last overlay video made of it."""

    media: Media
    video: str | None = None


@dataclass(frozen=True)
class TrackedObjects:
    """Attributes: names (``O``, those found), masks ``(O, T, H, W)`` bool, missing (names the detector did not
    find on the detection frame)."""

    names: list[str]
    masks: np.ndarray
    missing: list[str]


def parse_object_names(text: str | None) -> list[str]:
    """The comma-separated names of ``text``, stripped, in order, each once (case-insensitive)."""
    names: list[str] = []
    for name in (text or "").split(","):
        name = " ".join(name.split())
        if name and name.lower() not in {known.lower() for known in names}:
            names.append(name)
    return names


def objects_in_question(question: str) -> list[str]:
    """The objects a question names: each phrase after ``the`` / ``a`` / ``an`` up to a word of :data:`STOP_WORDS`
    (at most :data:`MAX_PHRASE_WORDS` words), unless its last word is in :data:`NOT_OBJECTS`; each once, in order.

    ``"Following the perspective of the red car, how does the distance to the man in black change?"`` ->
    ``["red car", "man"]``.
    """
    words = re.findall(r"[A-Za-z][A-Za-z'-]*|[^\sA-Za-z]", question)
    found: list[str] = []
    for position, word in enumerate(words):
        if word.lower() not in ("the", "a", "an"):
            continue
        phrase = []
        for following in words[position + 1 : position + 1 + MAX_PHRASE_WORDS]:
            if not following[0].isalpha() or following.lower() in STOP_WORDS:
                break
            phrase.append(following)
        if phrase and phrase[-1].lower() not in NOT_OBJECTS:
            found.append(" ".join(phrase))
    return parse_object_names(",".join(found))


def dsr_question(question: str, options: str | None) -> tuple[str, list[str]]:
    """``(user turn, ["(A) text", ...])``: the question as written, or with options (one per line, lettered or
    not) DSR-Bench's multiple-choice turn; ``ValueError`` for an empty question or unreadable options."""
    question = question.strip()
    if not question:
        raise ValueError("the question is empty")
    if not (options or "").strip():
        return question, []
    lettered = lettered_options(options, "the options")
    return multiple_choice_question(question, lettered), lettered


def chosen_option(answer: str, options: list[str]) -> str:
    """What the user is told the model chose among ``options`` (the benchmark's reading of the reply)."""
    letter = final_choice(answer, options)
    if letter is None:
        return "No option can be read from the answer."
    return f"The model chose **{options[ord(letter) - ord('A')]}**."


def answering_with(inference: UniGRInference, num_frames: int) -> UniGRInference:
    """``inference`` answering with ``num_frames`` frames for the LLM: itself when it already does, else a shallow
    copy whose answerer shares the loaded model and processor (nothing is loaded again)."""
    answerer = inference.answerer
    if num_frames == answerer.num_frames:
        return inference
    view = copy.copy(inference)
    view.answerer = UniGRAnswerPredictor(
        inference.model_dir,
        num_frames,
        str(answerer.device),
        max_new_tokens=answerer.max_new_tokens,
        loaded=(answerer.model, answerer.processor),
    )
    return view


def load_detector(folder: Path, device: torch.device) -> PerceptionModels:
    """Grounding DINO (transformers' format) from ``folder`` on ``device``, as the dynamic pipeline's perception
    models; only :func:`~utils.dynamic.pipeline.perception.detect`'s parts are set (tracking uses the model's SAM2,
    no geometry or orientation is estimated here)."""
    from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

    detector = GroundingDinoForObjectDetection.from_pretrained(folder).to(device).eval()
    processor = GroundingDinoProcessor.from_pretrained(folder)
    return PerceptionModels(detector, processor, tracker=None, pi3=None, orientation=None, device=device)


def track_objects(
    inference: UniGRInference, detector: PerceptionModels, media: Media, names: list[str], box_threshold: float
) -> TrackedObjects:
    """Each of ``names`` detected on the detection frame (its best box above ``box_threshold``), masked there by
    SAM2 from that box and tracked to every frame of ``media``."""
    config = PerceptionConfig(box_threshold=box_threshold, text_threshold=min(box_threshold, DETECTION.text_threshold))
    frame = min(config.detection_frame, len(media.frames) - 1)
    boxes = detect(detector, media.frames[frame], names, config)
    found, tracks = [], []
    for name, box in zip(names, boxes, strict=True):
        if box is None:
            continue
        centre = (box[:2] + box[2:]) / 2  # a box thinner than a pixel still prompts SAM2 (as box_mask keeps one)
        box = np.concatenate([np.minimum(box[:2], centre - 0.5), np.maximum(box[2:], centre + 0.5)])
        mask = inference.prompt_mask(media, UserPrompt(frame, "box", box=box))
        tracks.append(inference.track(media, frame, mask))
        found.append(name)
    masks = np.stack(tracks) if tracks else np.zeros((0, *media.frames.shape[:3]), dtype=bool)
    return TrackedObjects(found, masks, [name for name in names if name not in found])


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """``(O, T, 4)`` float ``x1, y1, x2, y2`` pixel edges around each ``(O, T, H, W)`` mask; NaN where it is empty."""
    height, width = masks.shape[2:]
    rows, columns = masks.any(axis=3), masks.any(axis=2)  # (O, T, H), (O, T, W)
    top, bottom = rows.argmax(axis=2), height - rows[..., ::-1].argmax(axis=2)
    left, right = columns.argmax(axis=2), width - columns[..., ::-1].argmax(axis=2)
    boxes = np.stack([left, top, right, bottom], axis=-1).astype(np.float64)
    boxes[~rows.any(axis=2)] = np.nan
    return boxes


def draw_tracks(frames: np.ndarray, masks: np.ndarray, names: list[str]) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames with each object's ``(O, T, H, W)`` mask, box and name drawn (its colour)."""
    drawn = np.ascontiguousarray(overlay_frames(frames, masks))
    boxes = mask_boxes(masks)
    for colour, name, track in zip(object_colours(len(names)), names, boxes, strict=True):
        for t in np.flatnonzero(~np.isnan(track[:, 0])):
            draw_labelled_box(drawn[t], track[t], name, colour)
    return drawn


def write_tracks_video(path: Path, frames: np.ndarray, masks: np.ndarray, names: list[str], fps: float) -> Path:
    """An H.264 MP4 of :func:`draw_tracks` (even sizes: an odd last row or column is cut, as 4:2:0 needs)."""
    drawn = draw_tracks(frames, masks, names)
    height, width = drawn.shape[1:3]
    drawn = drawn[:, : height - height % 2, : width - width % 2]
    return write_video(path, drawn, fps=fps, container_options={"movflags": "faststart"})


def tracking_summary(tracked: TrackedObjects) -> str:
    """What the user is told about the tracked objects."""
    parts = []
    if tracked.names:
        seen = tracked.masks.any(axis=(2, 3)).sum(axis=1)
        shown = ", ".join(
            f"**{name}** ({count} of {tracked.masks.shape[1]} frames)" for name, count in zip(tracked.names, seen)
        )
        parts.append(f"Tracked {shown}.")
    if tracked.missing:
        parts.append(f"Not found on the first frame: {', '.join(tracked.missing)}.")
    return " ".join(parts)


def tracking_unavailable(context: DemoContext) -> str | None:
    """Why this app cannot track objects (no ``--detector``, no SAM2 in the model), or ``None``."""
    if context.detector is None:
        return "Tracking the objects needs a Grounding DINO folder: start `python app.py --detector PATH`."
    if not context.inference.can_segment:
        return f"Tracking the objects needs SAM2, which `{context.inference.model_dir.name}` does not have."
    return None


@register_tab("Dynamic reasoning", order=40)
def build(context: DemoContext) -> None:
    inference = context.inference
    own_frames = inference.answerer.num_frames
    frame_choices = [(f"DSR-Bench's {DSR_NUM_FRAMES}", DSR_NUM_FRAMES)]
    if own_frames != DSR_NUM_FRAMES:
        frame_choices.append((f"the model's own {own_frames}", own_frames))
    answerers = {count: answering_with(inference, count) for _, count in frame_choices}
    unavailable = tracking_unavailable(context)
    detector = None if unavailable else load_detector(context.detector, inference.answerer.device)
    state = gr.State(None)
    with gr.Row():
        with gr.Column():
            upload = gr.File(label="Video", file_types=list(VIDEO_SUFFIXES), type="filepath", elem_id="dyn-input")
            info = gr.Markdown(elem_id="dyn-info")
            question = gr.Textbox(
                label="Question",
                placeholder="Following the perspective of the red car, in which direction does the man move?",
                elem_id="dyn-question",
            )
            options = gr.Textbox(
                label="Options, one per line (optional: then asked as DSR-Bench asks, answered with a letter)",
                lines=3,
                elem_id="dyn-options",
            )
            objects = gr.Textbox(
                label="Objects to track, comma-separated (empty: the ones the question names)",
                placeholder="red car, man",
                elem_id="dyn-objects",
            )
            frames = gr.Radio(frame_choices, value=DSR_NUM_FRAMES, label="Frames the model sees", elem_id="dyn-frames")
            threshold = gr.Slider(
                0,
                1,
                value=DETECTION.box_threshold,
                step=0.05,
                label="Detection score threshold",
                elem_id="dyn-threshold",
            )
            ask = gr.Button("Ask", variant="primary", elem_id="dyn-ask")
        with gr.Column():
            answer = gr.Textbox(label="Answer", interactive=False, elem_id="dyn-answer")
            choice = gr.Markdown(elem_id="dyn-choice")
            status = gr.Markdown(unavailable or "", elem_id="dyn-status")
            video = gr.Video(label="Tracked objects", interactive=False, elem_id="dyn-video")

    def uploaded(path: str | None):
        if not path:
            return None, "", "", "", None
        media = context.load(path)
        return DynamicSession(media), describe(media), "", "", None

    def asked(
        session: DynamicSession | None,
        text: str,
        option_text: str,
        names_text: str,
        count: int,
        box_threshold: float,
        progress=gr.Progress(),
    ):
        if session is None:
            raise gr.Error("Upload a video first.")
        try:
            turn, lettered = dsr_question(text, option_text)
            reply = ""
            yield session, "", "", unavailable or "", None
            for reply in answerers[int(count)].ask(inference.sample(session.media, turn)):
                yield session, reply, gr.skip(), gr.skip(), gr.skip()
        except ValueError as error:
            raise gr.Error(str(error)) from error
        picked = chosen_option(reply, lettered) if lettered else ""
        names = parse_object_names(names_text) or objects_in_question(text)
        if unavailable or not names:
            note = unavailable or "No objects to track: name them (comma-separated) or name them in the question."
            yield session, reply, picked, note, None
            return
        yield session, reply, picked, f"Finding and tracking {', '.join(names)} ...", None
        progress(0.5, desc="tracking the objects")
        try:
            tracked = track_objects(inference, detector, session.media, names, float(box_threshold))
        except ValueError as error:
            raise gr.Error(f"Cannot track the objects: {error}") from error
        if not tracked.names:
            yield session, reply, picked, tracking_summary(tracked) + " Try a lower detection threshold.", None
            return
        path = context.new_output_folder() / "tracked.mp4"
        fps = session.media.fps
        session.video = str(write_tracks_video(path, session.media.frames, tracked.masks, tracked.names, fps))
        yield session, reply, picked, tracking_summary(tracked), session.video

    upload.change(uploaded, [upload], [state, info, answer, choice, video])
    inputs = [state, question, options, objects, frames, threshold]
    outputs = [state, answer, choice, status, video]
    ask.click(asked, inputs, outputs, **context.model_event())
    question.submit(asked, inputs, outputs, **context.model_event())
