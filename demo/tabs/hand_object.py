"""Tab *Hand-object*: upload an image, or a video and pick a frame; ask one of HOI-QA's questions (where are the
hands, what is a hand holding, which hand holds an object, where is an object) or a free one; the answer is
streamed, and the boxes it gives are drawn on the frame with their labels.

Preset questions are worded with HOI-QA's templates (:data:`~utils.synthetic.egocentric.QUESTION_TEMPLATES`, the
wordings of HOI-QA's files) with the task tag removed as :mod:`utils.data.hoi_qa` removes it
(:func:`~utils.data.hoi_qa.split_tag`, its default ``task_tags="strip"``), so the demo asks what the benchmark
asks. The model sees the one frame as an image, as HOI-QA's samples are. Boxes are read from the answer with
:func:`~utils.data.box_text.parse_pixel_boxes` (HOI-QA's 0-100 grid boxes, or Qwen2.5-VL's JSON in pixels of the
image the model saw); boxes without a label are named as HOI-QA's loader names them
(:func:`~utils.data.hoi_qa.box_labels`).

Each user's frame lives in that user's ``gr.State`` (:class:`HoiSession`); the model is shared.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import gradio as gr
import numpy as np

from demo.context import UPLOAD_TYPES, DemoContext, describe
from demo.tabs import register_tab
from inference.media import Media
from inference.outputs import draw_labelled_box, object_colours
from inference.pipeline import UniGRInference
from utils.data.box_text import ParsedBoxes, parse_pixel_boxes
from utils.data.hoi_qa import box_labels, classify_task, split_tag
from utils.synthetic.egocentric import QUESTION_TEMPLATES

NOUN = "<noun>"
"""Where a preset's label puts the object the user names."""


@dataclass(frozen=True)
class Preset:
    """One of HOI-QA's questions: its :data:`QUESTION_TEMPLATES` key, the hand it names and its HOI-QA task."""

    template: str
    task: str
    side: str | None = None


PRESETS: dict[str, Preset] = {
    "Where is the left hand?": Preset("handN2handBB", "handN2handBB", "left"),
    "Where is the right hand?": Preset("handN2handBB", "handN2handBB", "right"),
    "Where are both hands?": Preset("bothhands", "handN2handBB"),
    "What is the left hand holding?": Preset("handN2objN", "handN2objN", "left"),
    "What is the right hand holding?": Preset("handN2objN", "handN2objN", "right"),
    "Where is the object in the left hand?": Preset("handN2objBB", "handN2objBB", "left"),
    "Where is the object in the right hand?": Preset("handN2objBB", "handN2objBB", "right"),
    f"Which hand holds the {NOUN}?": Preset("objN2handBB", "objN2handBB"),
    f"Where is the {NOUN}?": Preset("objN2objBB", "objN2objBB"),
}
"""Preset buttons' labels -> the HOI-QA question each asks."""

FREE_QUESTION = "Free question"


@dataclass
class HoiSession:
    """One user's work in this tab: the upload and the frame asked about (0 for an image)."""

    media: Media
    frame: int = 0

    def frame_media(self) -> Media:
        """The chosen frame as a one-image input (HOI-QA asks about single frames)."""
        index = self.frame
        return replace(
            self.media,
            frames=self.media.frames[index : index + 1],
            frame_names=[self.media.frame_names[index]],
            timestamps=None,
            medium="image",
        )


def hoi_question(preset: str, noun: str | None = None, free: str | None = None) -> str:
    """The question of ``preset`` worded as HOI-QA words it (first template, tag removed), with ``noun`` where it
    names an object; :data:`FREE_QUESTION`: ``free`` as written. ``ValueError`` for a missing noun or question."""
    if preset == FREE_QUESTION:
        if not (free or "").strip():
            raise ValueError("the free question is empty")
        return free.strip()
    if preset not in PRESETS:
        raise ValueError(f"unknown question {preset!r}; choose one of {[*PRESETS, FREE_QUESTION]}")
    spec = PRESETS[preset]
    template = QUESTION_TEMPLATES[spec.template][0]
    noun = " ".join((noun or "").split())
    if "{noun}" in template and not noun:
        raise ValueError(f"'{preset}' needs the object's name")
    _, question = split_tag(template.format(noun=noun, side=spec.side))
    return question


def answer_task(preset: str, question: str, answer: str) -> str:
    """The HOI-QA task of an answered question: the preset's, or for a free one what HOI-QA's classifier reads."""
    if preset in PRESETS:
        return PRESETS[preset].task
    tag, bare = split_tag(question)
    return classify_task(tag if tag in ("refer", "vqa", "identify") else None, bare, answer, "the question")


def model_image_size(inference: UniGRInference, media: Media, question: str) -> tuple[int, int]:
    """``(width, height)`` of the image the model sees for ``media``'s one frame (Qwen2.5-VL's resize): what a Qwen
    JSON answer's pixels refer to."""
    inputs, _ = inference.answerer.llm_inputs(inference.sample(media, question))
    _, rows, columns = inputs["image_grid_thw"][0].tolist()
    patch = inference.answerer.processor.image_processor.patch_size
    return columns * patch, rows * patch


def answer_boxes(
    answer: str, question: str, task: str, size: tuple[int, int], seen: tuple[int, int]
) -> tuple[ParsedBoxes, str]:
    """``(boxes in pixels of the frame of size (width, height), format)`` read from ``answer`` (grid, Qwen JSON in
    pixels of ``seen``, or none), each box labelled: its own label, else HOI-QA's for ``task``."""
    parsed, form = parse_pixel_boxes(answer, size, seen)
    fallback = box_labels(task, question, len(parsed))
    labels = tuple(own or named for own, named in zip(parsed.labels, fallback, strict=True))
    return replace(parsed, labels=labels), form


def draw_boxes(frame: np.ndarray, boxes: ParsedBoxes) -> np.ndarray:
    """A copy of ``frame`` ``(H, W, 3)`` uint8 with each ``(K, 4)`` pixel box and its label drawn (its colour)."""
    drawn = np.ascontiguousarray(frame.copy())
    for box, label, colour in zip(boxes.boxes, boxes.labels, object_colours(len(boxes)), strict=True):
        draw_labelled_box(drawn, box, label, colour)
    return drawn


def boxes_summary(boxes: ParsedBoxes, form: str) -> str:
    """What the user is told about the boxes read from the answer (and what had to be repaired)."""
    if form == "none" and not boxes.dropped:
        return "The answer gives no box."
    source = "HOI-QA grid boxes" if form == "grid" else "Qwen JSON boxes"
    listed = "; ".join(
        f"**{label}** [{', '.join(str(round(v)) for v in box)}]" for box, label in zip(boxes.boxes, boxes.labels)
    )
    text = (
        f"{len(boxes)} box(es) from {source} (frame pixels): {listed}." if len(boxes) else f"No whole box ({source})."
    )
    repairs = [
        f"{count} {what}"
        for count, what in (
            (boxes.dropped, "partial box(es) left out"),
            (boxes.reordered, "with swapped corners put in order"),
            (boxes.clipped, "clipped to the frame"),
        )
        if count
    ]
    return text + (f" ({', '.join(repairs)})" if repairs else "")


@register_tab("Hand-object", order=50)
def build(context: DemoContext) -> None:
    inference = context.inference
    state = gr.State(None)
    with gr.Row():
        with gr.Column():
            upload = gr.File(label="Image or video", file_types=UPLOAD_TYPES, type="filepath", elem_id="hoi-input")
            info = gr.Markdown(elem_id="hoi-info")
            frame_index = gr.Slider(
                0, 1, value=0, step=1, label="Frame to ask about", interactive=False, elem_id="hoi-frame-index"
            )
            frame = gr.Image(label="Frame", interactive=False, elem_id="hoi-frame")
        with gr.Column():
            preset = gr.Radio(
                [*PRESETS, FREE_QUESTION], value=next(iter(PRESETS)), label="Question", elem_id="hoi-preset"
            )
            noun = gr.Textbox(label=f"The object ({NOUN})", placeholder="cup", elem_id="hoi-noun", visible=False)
            free = gr.Textbox(
                label="Free question", placeholder="What is the person doing?", elem_id="hoi-free", visible=False
            )
            ask = gr.Button("Ask", variant="primary", elem_id="hoi-ask")
            asked_as = gr.Markdown(elem_id="hoi-asked")
            answer = gr.Textbox(label="Answer", interactive=False, elem_id="hoi-answer")
            summary = gr.Markdown(elem_id="hoi-boxes")
            drawn = gr.Image(label="The answer's boxes", interactive=False, elem_id="hoi-drawn")

    def uploaded(path: str | None):
        if not path:
            return None, gr.update(maximum=1, value=0, interactive=False), None, "", "", None, ""
        media = context.load(path)
        count = len(media.frames)
        slider = gr.update(maximum=max(1, count - 1), value=0, interactive=count > 1)
        return HoiSession(media), slider, media.frames[0], describe(media), "", None, ""

    def moved(session: HoiSession | None, index: float):
        if session is None:
            raise gr.Error("Upload an image or a video first.")
        session.frame = int(index)
        return session, session.media.frames[session.frame], "", None, ""

    def chosen(name: str):
        return gr.update(visible=NOUN in name), gr.update(visible=name == FREE_QUESTION)

    def asked(session: HoiSession | None, name: str, noun_text: str, free_text: str):
        if session is None:
            raise gr.Error("Upload an image or a video first.")
        try:
            question = hoi_question(name, noun_text, free_text)
            media = session.frame_media()
            seen = model_image_size(inference, media, question)
            yield f"Asked: *{question}*", "", "", None
            reply = ""
            for reply in inference.ask(inference.sample(media, question)):
                yield gr.skip(), reply, gr.skip(), gr.skip()
            image = media.frames[0]
            boxes, form = answer_boxes(reply, question, answer_task(name, question, reply), image.shape[1::-1], seen)
        except ValueError as error:
            raise gr.Error(str(error)) from error
        yield gr.skip(), reply, boxes_summary(boxes, form), draw_boxes(image, boxes)

    upload.change(uploaded, [upload], [state, frame_index, frame, info, answer, drawn, summary])
    frame_index.release(moved, [state, frame_index], [state, frame, answer, drawn, summary])
    preset.change(chosen, [preset], [noun, free])
    outputs = [asked_as, answer, summary, drawn]
    ask.click(asked, [state, preset, noun, free], outputs, **context.model_event())
    free.submit(asked, [state, preset, noun, free], outputs, **context.model_event())
