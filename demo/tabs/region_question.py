"""Tab *Ask about a region*: point at an object on any frame — two clicks for a box, clicks for SAM2's
mask, or a scribble / mask drawn with the brush — see the mask, carry it to every frame (shown as a
video), and ask a question about it; the answer is streamed.

Everything a user does lives in that user's ``gr.State`` (:class:`RegionSession`); the model is shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import gradio as gr
import numpy as np

from demo.context import UPLOAD_TYPES, DemoContext, describe
from demo.tabs import register_tab
from inference.media import Media
from inference.outputs import overlay_masks, write_overlay_video
from inference.region_prompt import PROMPT_KINDS, UserPrompt

TOOL_HELP = {
    "box": "click two opposite corners of a box on the frame",
    "points": "click on the object (tick 'background click' to click off it); SAM2 turns the clicks into a mask",
    "scribble": "draw a stroke through the object in the brush editor, then press 'Use drawing'",
    "mask": "paint over the object in the brush editor, then press 'Use drawing'",
}
POSITIVE, NEGATIVE = (40, 220, 40), (230, 40, 40)


@dataclass
class RegionSession:
    """One user's work in this tab.

    Attributes:
        media: the uploaded input.
        frame: the frame being prompted.
        clicks: ``[(x, y, label)]`` on that frame (label 1 on the object, 0 off it).
        prompt: the prompt that made ``mask``.
        mask: ``(H, W)`` bool mask of the object on ``frame``.
        tracked: ``(T, H, W)`` bool: ``mask`` carried to every frame.
        video: the overlay video of ``tracked``.
    """

    media: Media
    frame: int = 0
    clicks: list[tuple[float, float, int]] = field(default_factory=list)
    prompt: UserPrompt | None = None
    mask: np.ndarray | None = None
    tracked: np.ndarray | None = None
    video: str | None = None

    def reset_prompt(self) -> None:
        self.clicks, self.prompt, self.mask, self.tracked, self.video = [], None, None, None, None


def shown_frame(session: RegionSession) -> np.ndarray:
    """The prompted frame with the mask, the box and the clicks drawn on it."""
    frame = session.media.frames[session.frame]
    if session.mask is not None:
        frame = overlay_masks(frame, session.mask[None])
    frame = np.ascontiguousarray(frame)
    radius = max(3, round(0.012 * max(frame.shape[:2])))
    if session.prompt is not None and session.prompt.kind == "box":
        x1, y1, x2, y2 = np.round(session.prompt.box).astype(int).tolist()
        cv2.rectangle(frame, (x1, y1), (x2, y2), POSITIVE, max(2, radius // 2))
    for x, y, label in session.clicks:
        cv2.circle(frame, (round(x), round(y)), radius, POSITIVE if label else NEGATIVE, -1)
    return frame


def drawn_layer(editor: dict | None) -> np.ndarray | None:
    """``(H, W)`` bool of what the brush painted in a ``gr.ImageEditor`` value, or ``None`` if nothing."""
    if not editor or not editor.get("layers"):
        return None
    painted = np.zeros(np.asarray(editor["layers"][0]).shape[:2], dtype=bool)
    for layer in editor["layers"]:
        layer = np.asarray(layer)
        painted |= layer[..., 3] > 0 if layer.ndim == 3 and layer.shape[2] == 4 else layer.any(-1)
    return painted if painted.any() else None


@register_tab("Ask about a region", order=20)
def build(context: DemoContext) -> None:
    inference = context.inference
    state = gr.State(None)
    with gr.Row():
        with gr.Column():
            upload = gr.File(label="Video or image", file_types=UPLOAD_TYPES, type="filepath", elem_id="region-input")
            info = gr.Markdown(elem_id="region-info")
            frame_index = gr.Slider(
                0, 1, value=0, step=1, label="Frame to point on", interactive=False, elem_id="region-frame-index"
            )
            tool = gr.Radio(list(PROMPT_KINDS), value="box", label="Point with", elem_id="region-tool")
            negative = gr.Checkbox(label="background click (points)", value=False, elem_id="region-negative")
            tool_help = gr.Markdown(TOOL_HELP["box"], elem_id="region-tool-help")
            frame = gr.Image(label="Click on the frame", interactive=False, elem_id="region-frame")
            with gr.Accordion("Brush (scribble or mask)", open=False):
                brush = gr.ImageEditor(
                    label="Draw on the frame", type="numpy", sources=(), layers=False, elem_id="region-brush"
                )
                use_drawing = gr.Button("Use drawing", elem_id="region-use-drawing")
            clear = gr.Button("Clear the prompt", elem_id="region-clear")
        with gr.Column():
            status = gr.Markdown(elem_id="region-status")
            track = gr.Button("Track to every frame", elem_id="region-track")
            video = gr.Video(label="The region on every frame", interactive=False, elem_id="region-video")
            question = gr.Textbox(
                label="Question (write <region> where the object goes, or just ask)",
                placeholder="What is <region> doing?",
                elem_id="region-question",
            )
            ask = gr.Button("Ask", variant="primary", elem_id="region-ask")
            answer = gr.Textbox(label="Answer", interactive=False, elem_id="region-answer")

    def uploaded(path: str | None):
        if not path:
            return None, gr.update(maximum=1, value=0, interactive=False), None, None, "", "", None, ""
        media = context.load(path)
        session = RegionSession(media)
        background = {"background": media.frames[0], "layers": [], "composite": None}
        slider = gr.update(maximum=max(1, len(media.frames) - 1), value=0, interactive=len(media.frames) > 1)
        return session, slider, shown_frame(session), background, describe(media), "Point at an object.", None, ""

    def need(session: RegionSession | None) -> RegionSession:
        if session is None:
            raise gr.Error("Upload a video or an image first.")
        return session

    def mask_status(session: RegionSession) -> str:
        if session.mask is None:
            return "Point at an object."
        return f"Mask on frame {session.frame}: {int(session.mask.sum())} px. Track it, or ask."

    def moved(session: RegionSession | None, index: float):
        session = need(session)
        session.frame = int(index)
        session.reset_prompt()
        background = {"background": session.media.frames[session.frame], "layers": [], "composite": None}
        return session, shown_frame(session), background, mask_status(session), None

    def make_mask(session: RegionSession, prompt: UserPrompt) -> None:
        try:
            session.mask = inference.prompt_mask(session.media, prompt)
        except ValueError as error:
            raise gr.Error(str(error)) from error
        session.prompt, session.tracked, session.video = prompt, None, None

    def clicked(session: RegionSession | None, how: str, off: bool, event: gr.SelectData):
        session = need(session)
        if how not in ("box", "points"):
            raise gr.Error(f"With '{how}', {TOOL_HELP[how]}.")
        x, y = (float(v) for v in event.index)
        if how == "box":
            session.clicks = [*session.clicks[-1:], (x, y, 1)] if len(session.clicks) < 2 else [(x, y, 1)]
            if len(session.clicks) == 2:
                (x1, y1, _), (x2, y2, _) = session.clicks
                make_mask(session, UserPrompt(session.frame, "box", box=[x1, y1, x2, y2]))
                session.clicks = []
        else:
            session.clicks.append((x, y, 0 if off else 1))
            points = [(cx, cy) for cx, cy, _ in session.clicks]
            labels = [label for _, _, label in session.clicks]
            if any(labels):
                make_mask(session, UserPrompt(session.frame, "points", points=points, labels=labels))
        return session, shown_frame(session), mask_status(session), session.video

    def drew(session: RegionSession | None, how: str, editor: dict | None):
        session = need(session)
        if how not in ("scribble", "mask"):
            raise gr.Error(f"With '{how}', {TOOL_HELP[how]}.")
        painted = drawn_layer(editor)
        if painted is None:
            raise gr.Error("Nothing is drawn: paint on the frame in the brush editor first.")
        if painted.shape != session.media.frames.shape[1:3]:
            raise gr.Error("The drawing does not match the frame's size; draw again on this frame.")
        session.clicks = []
        make_mask(session, UserPrompt(session.frame, how, mask=painted))
        return session, shown_frame(session), mask_status(session), None

    def cleared(session: RegionSession | None):
        session = need(session)
        session.reset_prompt()
        return session, shown_frame(session), mask_status(session), None

    def tracked(session: RegionSession, progress: gr.Progress) -> RegionSession:
        if session.mask is None:
            raise gr.Error("Point at an object first.")
        if session.tracked is None:
            progress(0.1, desc="tracking the region to every frame")
            session.tracked = inference.track(session.media, session.frame, session.mask)
            if session.media.medium == "video":
                path = context.new_output_folder() / "region.mp4"
                session.video = str(
                    write_overlay_video(path, session.media.frames, session.tracked[None], session.media.fps)
                )
        return session

    def tracked_only(session: RegionSession | None, progress=gr.Progress()):
        session = tracked(need(session), progress)
        shown = int(session.tracked.any(axis=(1, 2)).sum())
        return session, session.video, f"The region is on {shown} of {len(session.tracked)} frames."

    def asked(session: RegionSession | None, text: str, progress=gr.Progress()):
        session = tracked(need(session), progress)
        try:
            sample = inference.region_sample(session.media, text, session.tracked, session.prompt.kind)
            for partial in inference.ask(sample):
                yield session, session.video, partial
        except ValueError as error:
            raise gr.Error(str(error)) from error

    upload.change(uploaded, [upload], [state, frame_index, frame, brush, info, status, video, answer])
    frame_index.release(moved, [state, frame_index], [state, frame, brush, status, video])
    tool.change(lambda how: TOOL_HELP[how], [tool], [tool_help])
    frame.select(clicked, [state, tool, negative], [state, frame, status, video], **context.model_event())
    use_drawing.click(drew, [state, tool, brush], [state, frame, status, video], **context.model_event())
    clear.click(cleared, [state], [state, frame, status, video])
    track.click(tracked_only, [state], [state, video, status], **context.model_event())
    ask.click(asked, [state, question], [state, video, answer], **context.model_event())
    question.submit(asked, [state, question], [state, video, answer], **context.model_event())
