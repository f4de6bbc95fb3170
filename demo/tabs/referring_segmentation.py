"""Tab *Referring segmentation*: a video or image and a sentence in; the answer, every ``[SEG]`` drawn over
every frame (an overlay video and the key frame) and the masks as a ZIP of indexed PNGs out."""

from __future__ import annotations

import gradio as gr
import numpy as np

from demo.context import UPLOAD_TYPES, DemoContext, describe
from demo.tabs import register_tab
from inference.outputs import overlay_frames, write_mask_pngs, write_overlay_video, zip_folder
from inference.pipeline import SEGMENTATION_KINDS


def _needs_seg_head(context: DemoContext) -> str | None:
    return None if context.inference.can_segment else "this model has no segmentation head"


@register_tab("Referring segmentation", order=10, available=_needs_seg_head)
def build(context: DemoContext) -> None:
    with gr.Row():
        with gr.Column():
            upload = gr.File(label="Video or image", file_types=UPLOAD_TYPES, type="filepath", elem_id="seg-input")
            text = gr.Textbox(
                label="What to segment",
                placeholder="the cat on the sofa   (or a question: which animal is resting?)",
                elem_id="seg-text",
            )
            kind = gr.Radio(list(SEGMENTATION_KINDS), value="auto", label="Asked as", elem_id="seg-kind")
            run = gr.Button("Segment", variant="primary", elem_id="seg-run")
            info = gr.Markdown(elem_id="seg-info")
        with gr.Column():
            answer = gr.Textbox(label="Answer", interactive=False, elem_id="seg-answer")
            video = gr.Video(label="Masks over every frame", interactive=False, elem_id="seg-video")
            key_frame = gr.Image(label="Frame with the largest mask", interactive=False, elem_id="seg-frame")
            archive = gr.File(label="Masks (indexed PNG per frame, 1 = first [SEG])", elem_id="seg-masks")

    def segment(path: str | None, expression: str, how: str, progress=gr.Progress()) -> tuple:
        progress(0.0, desc="reading the upload")
        media = context.load(path)
        if not expression.strip():
            raise gr.Error("Say what to segment.")
        progress(0.2, desc="answering and segmenting")
        try:
            result = context.inference.segment(media, expression, how)
        except ValueError as error:
            raise gr.Error(str(error)) from error
        progress(0.8, desc="drawing the masks")
        folder = context.new_output_folder()
        write_mask_pngs(folder / "masks", result.masks, media.frame_names)
        zipped = zip_folder(folder / "masks", folder / "masks.zip")
        area = result.masks.sum(axis=(0, 2, 3))
        key = int(np.argmax(area)) if area.any() else 0
        frame = overlay_frames(media.frames[key : key + 1], result.masks[:, key : key + 1])[0]
        clip = None
        if media.medium == "video":
            clip = str(write_overlay_video(folder / "overlay.mp4", media.frames, result.masks, media.fps))
        found = f"{len(result.masks)} object(s) segmented" if len(result.masks) else "no [SEG] in the answer: no mask"
        return result.answer, clip, frame, str(zipped), f"{describe(media)}. {found}."

    run.click(segment, [upload, text, kind], [answer, video, key_frame, archive, info], **context.model_event())
    text.submit(segment, [upload, text, kind], [answer, video, key_frame, archive, info], **context.model_event())
