"""Tab *3D scene*: choose a scene folder on the server (``app.py --scene-root``) or upload a .zip of one; see its
BEV with numbered proposal markers and a few of the frames the model sees; ask a question (as written, or worded
with the 3D benchmarks' templates); the answer is streamed, and the proposals it names as ``<OBJ###>`` are
highlighted on the BEV and the frames and listed with their boxes.

The model sees the scene as the 3D benchmarks give it (:mod:`inference.scene`): its frames chosen with the
model's saved settings, their posed depth and the proposals. Each user's scene lives in that user's
``gr.State`` (:class:`SceneSession`); an uploaded scene is unpacked into a folder of that request's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from demo.context import DemoContext
from demo.tabs import register_tab
from inference.scene import (
    QUESTION_KINDS,
    TABLE_HEADERS,
    Highlight,
    SceneView,
    SceneZipLimits,
    extract_scene_zip,
    highlight_answer,
    list_scene_folders,
    load_scene_view,
    scene_question,
    scene_sample,
)
from utils.scene3d.object_ids import format_object_id

ZIP_EXPANSION = 2.0
"""An uploaded scene .zip may unpack to this many times the upload limit (JPEG and PNG frames barely compress)."""

HOW_TO_MAKE_SCENES = (
    "Make scene folders with `python scripts/preprocess_scenes.py --layout posed_images --input "
    "data/scannet/posed_images --scans data/scannet/scans --out data/scenes` (its docstring lists the other "
    "layouts), then start `python app.py --scene-root data/scenes`; or upload a .zip of one scene folder."
)


@dataclass
class SceneSession:
    """One user's work in this tab: the scene shown (``view``) and the last answer about it."""

    view: SceneView
    answer: str = ""


def scene_names(scene_root: Path | None) -> list[str]:
    """Names of the scene folders under ``scene_root`` (none without one)."""
    return [] if scene_root is None else [folder.name for folder in list_scene_folders(scene_root)]


def describe_view(view: SceneView, frame_sampling: str) -> str:
    """One paragraph about a scene for the user: its size, what the model sees and where the BEV comes from."""
    scene = view.scene
    bev = (
        "from the scene's bev.png"
        if view.bev_source == "bev.png"
        else "rendered now (scripts/preprocess_scenes.py writes one with the scene)"
    )
    count = len(scene.proposals)
    ids = f" (`<OBJ000>` to `{format_object_id(count - 1)}`)" if count else ""
    return (
        f"**{scene.scene_id}**: {scene.num_frames} frames, {count} proposals{ids}. The model sees "
        f"{len(view.llm_frames)} frames ({frame_sampling}); {len(view.gallery)} of them are shown with their "
        f"markers. BEV {bev}."
    )


def gallery_items(view: SceneView, frames: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """``(frame, caption)`` of each shown frame."""
    return [(frame, f"frame {view.scene.frame_names[t]}") for frame, t in zip(frames, view.gallery)]


def proposal_table(rows: list[list]) -> pd.DataFrame:
    """The named proposals' rows under :data:`~inference.scene.TABLE_HEADERS`."""
    return pd.DataFrame(rows, columns=list(TABLE_HEADERS))


def named_summary(highlight: Highlight, labels: np.ndarray) -> str:
    """What the answer names, for the user (ids in backticks: Markdown would take ``<OBJ003>`` for HTML)."""
    if not highlight.ids and not highlight.out_of_range:
        return "The answer names no proposal (`<OBJ###>`)."
    named = ", ".join(f"`{format_object_id(k)}` ({labels[k]})" for k in highlight.ids)
    text = f"The answer names {named}: highlighted below." if highlight.ids else "The answer names no proposal."
    if highlight.out_of_range:
        missing = ", ".join(f"`{format_object_id(k)}`" for k in highlight.out_of_range)
        text += f" {missing}: no such proposal in this scene ({len(labels)})."
    return text


def open_scene(context: DemoContext, folder: Path, hide: Path) -> tuple:
    """``(session, info, BEV, gallery, answer, named, table)`` of a newly opened scene folder; a ``gr.Error``
    (``hide``, a server path, left out of its message) when it cannot be read."""
    answerer = context.inference.answerer
    try:
        view = load_scene_view(folder, answerer.num_frames, answerer.settings.frame_sampling)
    except (FileNotFoundError, ValueError) as error:
        raise gr.Error(f"Cannot use this scene: {error}".replace(f"{hide}/", "")) from error
    info = describe_view(view, answerer.settings.frame_sampling)
    empty = proposal_table([])
    return SceneSession(view), info, view.bev, gallery_items(view, view.frames), "", "", empty


def picked(context: DemoContext, name: str | None) -> tuple:
    """The scene folder ``name`` of the server's scene root, opened (:func:`open_scene`)."""
    scene_root = context.scene_root
    if not name:
        raise gr.Error("Choose a scene.")
    if name not in scene_names(scene_root):  # only the listed folders: a request cannot name another path
        raise gr.Error(f"There is no scene folder {name!r} on this server.")
    return open_scene(context, scene_root / name, scene_root)


def uploaded(context: DemoContext, path: str | None) -> tuple:
    """The uploaded .zip of one scene folder, unpacked into a fresh folder of this request's and opened."""
    if not path:
        raise gr.Error("Upload a .zip of one scene folder.")
    destination = context.new_output_folder()
    limits = SceneZipLimits(max_megabytes=ZIP_EXPANSION * context.limits.max_megabytes)
    try:
        folder = extract_scene_zip(path, destination, limits)
    except ValueError as error:
        raise gr.Error(f"Cannot use this upload: {error}") from error
    return open_scene(context, folder, destination)


def asked(context: DemoContext, session: SceneSession | None, text: str, kind: str) -> Iterator[tuple]:
    """``(session, answer, BEV, gallery, named, table)``: the markers and table cleared, the answer streamed, then
    the proposals it names highlighted."""
    if session is None:
        raise gr.Error("Choose or upload a scene first.")
    view = session.view
    try:
        question = scene_question(text, kind, len(view.scene.proposals))
        sample = scene_sample(view.scene, view.llm_frames, question)
        yield session, "", view.bev, gallery_items(view, view.frames), "", proposal_table([])
        answer = ""
        for answer in context.inference.ask(sample):
            yield session, answer, gr.skip(), gr.skip(), gr.skip(), gr.skip()
    except (FileNotFoundError, ValueError) as error:
        raise gr.Error(str(error)) from error
    session.answer = answer
    highlight = highlight_answer(view, answer)
    labels = view.scene.proposals.labels
    table = proposal_table(highlight.rows)
    yield session, answer, highlight.bev, gallery_items(view, highlight.frames), named_summary(highlight, labels), table


@register_tab("3D scene", order=30)
def build(context: DemoContext) -> None:
    scene_root = context.scene_root
    state = gr.State(None)
    with gr.Row():
        with gr.Column():
            if not scene_names(scene_root):
                gr.Markdown(f"No scene folder on this server. {HOW_TO_MAKE_SCENES}", elem_id="scene-help")
            with gr.Row():
                choice = gr.Dropdown(
                    scene_names(scene_root),
                    value=None,
                    label=f"Scene in {scene_root.name}" if scene_root else "Scene (app.py --scene-root)",
                    interactive=scene_root is not None,
                    elem_id="scene-choice",
                )
                refresh = gr.Button(
                    "Refresh the list", size="sm", visible=scene_root is not None, elem_id="scene-refresh"
                )
            upload = gr.File(
                label="... or a .zip of one scene folder", file_types=[".zip"], type="filepath", elem_id="scene-upload"
            )
            info = gr.Markdown(elem_id="scene-info")
            bev = gr.Image(label="Bird's-eye view (numbers: <OBJ###> ids)", interactive=False, elem_id="scene-bev")
            frames = gr.Gallery(label="Frames the model sees", columns=3, height="auto", elem_id="scene-frames")
        with gr.Column():
            question = gr.Textbox(
                label="Question (or, to ground: what to find)",
                placeholder="Where is the chair closest to the door?   (ground: the brown chair by the window)",
                elem_id="scene-question",
            )
            kind = gr.Radio(list(QUESTION_KINDS), value="question", label="Asked as", elem_id="scene-kind")
            ask = gr.Button("Ask", variant="primary", elem_id="scene-ask")
            answer = gr.Textbox(label="Answer", interactive=False, elem_id="scene-answer")
            named = gr.Markdown(elem_id="scene-named")
            table = gr.Dataframe(
                headers=list(TABLE_HEADERS),
                interactive=False,
                label="Proposals the answer names (box centre and size in metres)",
                elem_id="scene-proposals",
            )

    def choose(name: str | None):
        return picked(context, name)

    def upload_scene(path: str | None):
        return uploaded(context, path)

    def ask_scene(session: SceneSession | None, text: str, how: str):
        yield from asked(context, session, text, how)

    opened = [state, info, bev, frames, answer, named, table]
    choice.input(choose, [choice], opened)
    refresh.click(lambda: gr.update(choices=scene_names(scene_root)), None, [choice])
    upload.upload(upload_scene, [upload], opened)
    answered = [state, answer, bev, frames, named, table]
    ask.click(ask_scene, [state, question, kind], answered, **context.model_event())
    question.submit(ask_scene, [state, question, kind], answered, **context.model_event())
