"""The demo's 3D scene tab without a browser: a scene folder as the model is asked about it (the 3D loaders'
frames, depth and proposals, the benchmarks' wording), its BEV and marked frames (preprocessed or not), the
highlight of the proposals an answer names, uploaded scene .zip files (limits, unsafe names), and the tab's
handlers with a stub model and with the shipped tiny model."""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import app
from demo.context import DemoContext
from demo.tabs.scene3d import asked, build, picked, scene_names, uploaded
from inference.media import MediaLimits
from inference.pipeline import UniGRInference
from inference.scene import (
    HIGHLIGHT,
    SceneZipLimits,
    extract_scene_zip,
    highlight_answer,
    highlight_markers,
    list_scene_folders,
    load_scene_view,
    outline_footprints,
    scene_question,
    scene_sample,
)
from scripts.preprocess_scenes import all_frame_markers, write_bev
from utils.data import scanrefer  # noqa: F401  (registers the loader)
from utils.data.input_settings import InputSettings
from utils.data.registry import LOADERS
from utils.data.scene3d import scene_frame_indices
from utils.scene3d.bev import scene_bev
from utils.scene3d.markers import MarkerConfig
from utils.scene3d.scene_folder import read_scene
from utils.synthetic.rooms import RoomConfig
from utils.synthetic.scene3d_formats import generate_scene_benchmarks

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "assets" / "unigr_tiny_quickstart"
CONFIG = RoomConfig(height=96, width=128, num_frames=12)
NUM_FRAMES = 8
"""Frames the stub model sees (the tiny model's own number)."""


@pytest.fixture(scope="module")
def benchmarks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic rooms as scene folders (``<root>/scenes``) with the 3D benchmarks' files."""
    root = tmp_path_factory.mktemp("scene3d_demo")
    generate_scene_benchmarks(root, "val", 2, seed=7, layout="official", config=CONFIG)
    return root


@pytest.fixture(scope="module")
def room(benchmarks: Path) -> Path:
    return sorted((benchmarks / "scenes").iterdir())[0]


@pytest.fixture(scope="module")
def preprocessed(room: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``room`` with what scripts/preprocess_scenes.py adds: bev.png, bev.json and frame_markers.npz."""
    folder = Path(shutil.copytree(room, tmp_path_factory.mktemp("preprocessed") / room.name))
    scene = read_scene(folder)
    write_bev(folder, scene_bev(scene), scene.proposals, MarkerConfig())
    markers = all_frame_markers(scene, MarkerConfig())
    np.savez(folder / "frame_markers.npz", positions=markers.positions, visible_fraction=markers.visible_fraction)
    return folder


class StubInference:
    """What the tab uses of :class:`~inference.pipeline.UniGRInference`: the answerer's frame settings and
    :meth:`ask`, here streaming ``answers`` and keeping the samples asked."""

    def __init__(self, answers: list[str]) -> None:
        self.answerer = SimpleNamespace(num_frames=NUM_FRAMES, settings=InputSettings())
        self.answers, self.samples = answers, []

    def ask(self, sample):
        self.samples.append(sample)
        yield from self.answers


def _context(tmp_path: Path, scene_root: Path | None, answers: list[str] = ()) -> DemoContext:
    return DemoContext(StubInference(list(answers)), MediaLimits(), tmp_path / "outputs", 1, scene_root)


def _zip(folder: Path, path: Path, prefix: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, f"{prefix}{file.relative_to(folder).as_posix()}")
    return path


def _annulus(image: np.ndarray, centre: np.ndarray, inner: float, outer: float) -> np.ndarray:
    """The RGB pixels of ``image`` between ``inner`` and ``outer`` px of ``centre`` ``(u, v)``."""
    rows, cols = np.mgrid[: image.shape[0], : image.shape[1]]
    distance = np.hypot(cols - centre[0], rows - centre[1])
    return image[(distance >= inner) & (distance <= outer)]


# --- the question and the sample --------------------------------------------------------------------------


def test_scene_questions_are_worded_with_the_3d_benchmarks_templates() -> None:
    assert scene_question(" What is on the table? ", "question", 5) == "What is on the table?"
    assert scene_question("what colour is the sofa?", "short answer", 5) == (
        "what colour is the sofa? Answer the question using a single word or phrase."
    )
    assert scene_question("the red chair", "ground an object", 5) == (
        "Identify the object according to the following description.\nThe red chair"
    )
    assert scene_question("the chairs", "ground objects", 5).endswith(
        "\nThe chairs\nThere may be no corresponding object, or there may be one or more objects."
    )
    assert scene_question("<OBJ003>", "describe an object", 5) == "Describe the object <OBJ003> in detail."
    assert scene_question("4", "describe an object", 5) == "Describe the object <OBJ004> in detail."
    for text, kind in [("  ", "question"), ("<OBJ005>", "describe an object"), ("<OBJ1> <OBJ2>", "describe an object")]:
        with pytest.raises(ValueError):
            scene_question(text, kind, 5)
    with pytest.raises(ValueError, match="kind must be one of"):
        scene_question("the chair", "segment", 5)


@pytest.mark.parametrize("frame_sampling", ["uniform", "mc-ratio90"])
def test_the_model_sees_the_frames_the_3d_loaders_choose_with_its_settings(
    benchmarks: Path, frame_sampling: str
) -> None:
    dataset = LOADERS["scanrefer"].build(
        benchmarks, "val", num_frames=4, train=False, seed=0, frame_sampling=frame_sampling
    )
    loaded = dataset[0]
    scene = read_scene(benchmarks / "scenes" / loaded.meta["scene_id"])
    assert scene_frame_indices(scene, frame_sampling, 4) == loaded.meta["frame_indices"]


def test_a_scene_sample_has_the_chosen_frames_their_posed_depth_and_every_proposal(room: Path) -> None:
    scene = read_scene(room)
    indices = scene_frame_indices(scene, "uniform", NUM_FRAMES)
    sample = scene_sample(scene, indices, "Where is the bed?")
    assert len(indices) == NUM_FRAMES and sample.frames.shape == (NUM_FRAMES, CONFIG.height, CONFIG.width, 3)
    np.testing.assert_array_equal(sample.frames, scene.read_colors(indices))
    np.testing.assert_array_equal(sample.scene.poses, scene.poses[indices])
    np.testing.assert_array_equal(sample.scene.depth, scene.read_depths(indices))
    np.testing.assert_array_equal(sample.proposals, scene.proposals.boxes)
    assert sample.conversation == [{"role": "user", "content": "Where is the bed?"}]
    assert sample.frame_names == [scene.frame_names[i] for i in indices]


# --- what the user sees ----------------------------------------------------------------------------------


def test_a_preprocessed_scene_shows_its_bev_png_and_its_stored_frame_markers(preprocessed: Path) -> None:
    view = load_scene_view(preprocessed, NUM_FRAMES)
    assert view.bev_source == "bev.png"
    np.testing.assert_array_equal(view.bev, np.asarray(Image.open(preprocessed / "bev.png").convert("RGB")))
    with np.load(preprocessed / "frame_markers.npz") as stored:
        np.testing.assert_array_equal(view.frame_markers, stored["positions"][view.gallery])
    assert set(view.gallery) <= set(view.llm_frames) and len(view.gallery) == 6


def test_an_unprocessed_scene_renders_the_same_bev_with_a_marker_per_proposal(room: Path, preprocessed: Path) -> None:
    rendered, stored = load_scene_view(room, NUM_FRAMES), load_scene_view(preprocessed, NUM_FRAMES)
    assert rendered.bev_source == "rendered" and len(rendered.bev_markers) == len(rendered.scene.proposals)
    np.testing.assert_array_equal(rendered.bev, stored.bev)
    np.testing.assert_allclose(rendered.bev_markers, stored.bev_markers)
    np.testing.assert_allclose(rendered.frame_markers, stored.frame_markers)  # computed on the shown frames only
    assert rendered.frames.shape == (6, CONFIG.height, CONFIG.width, 3)


def test_a_bev_json_that_does_not_fit_the_scene_is_named(preprocessed: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(preprocessed, tmp_path / preprocessed.name))
    record = (folder / "bev.json").read_text()
    (folder / "bev.json").write_text(record.replace('"id": 0,', '"id": 99,', 1))
    with pytest.raises(ValueError, match=r"bev\.json.*preprocess the scene again"):
        load_scene_view(folder, NUM_FRAMES)


def test_highlighting_rings_only_the_named_markers() -> None:
    image = np.full((120, 360, 3), 255, np.uint8)
    positions = np.array([[60.0, 60.0], [180.0, 60.0], [300.0, 60.0]])
    config = MarkerConfig()
    drawn = highlight_markers(image, positions, (0, 2), config)
    radius = max(config.min_radius, round(config.radius_fraction * 120))
    for marker, named in [(0, True), (1, False), (2, True)]:
        ring = _annulus(drawn, positions[marker], 1.3 * radius, 1.9 * radius)
        assert (ring == HIGHLIGHT).all(axis=1).any() == named
    assert (drawn[:, 120:240] == 255).all()  # the unnamed marker is not drawn at all


def test_footprints_outline_the_named_boxes_on_the_bev() -> None:
    image = np.zeros((40, 40, 3), np.uint8)
    world_to_pixel = np.array([[1.0, 0, 0, 0], [0, -1.0, 0, 30], [0, 0, 0, 1]])  # u = x, v = 30 - y
    drawn = outline_footprints(image, np.array([[10.0, 10.0, 0.5, 10.0, 12.0, 1.0]]), world_to_pixel)
    assert tuple(drawn[14, 10]) == HIGHLIGHT and tuple(drawn[26, 10]) == HIGHLIGHT  # y = 16 and y = 4 edges
    assert tuple(drawn[20, 5]) == HIGHLIGHT and tuple(drawn[20, 15]) == HIGHLIGHT  # x = 5 and x = 15 edges
    assert not drawn[20, 10].any() and not drawn[5, 5].any()


def test_the_highlight_follows_the_ids_actually_in_the_answer(room: Path) -> None:
    view = load_scene_view(room, NUM_FRAMES)
    scene, shown = view.scene, np.isfinite(view.frame_markers[..., 0])
    highlight = highlight_answer(view, "The chair is <OBJ002>; see also <obj1> and <OBJ 042>, and <OBJ002> again.")
    assert highlight.ids == (2, 1) and highlight.out_of_range == (42,)
    assert [row[:2] for row in highlight.rows] == [
        ["<OBJ002>", scene.proposals.labels[2]],
        ["<OBJ001>", scene.proposals.labels[1]],
    ]
    np.testing.assert_allclose(highlight.rows[0][2:8], scene.proposals.boxes[2], atol=0.006)
    assert highlight.rows[1][8] == ", ".join(scene.frame_names[view.gallery[g]] for g in np.flatnonzero(shown[:, 1]))
    changed = (highlight.frames != view.frames).any(axis=(1, 2, 3))
    np.testing.assert_array_equal(changed, shown[:, [1, 2]].any(axis=1))  # only frames showing a named proposal
    for k in range(len(scene.proposals)):
        ring = _annulus(highlight.bev, view.bev_markers[k], 1.4 * 7, 1.8 * 7)
        if k in (1, 2):
            assert (ring == HIGHLIGHT).all(axis=1).any()
    nothing = highlight_answer(view, "It is a bedroom.")
    assert nothing.ids == () and nothing.rows == []
    np.testing.assert_array_equal(nothing.bev, view.bev)
    np.testing.assert_array_equal(nothing.frames, view.frames)


# --- scenes on the server and uploaded -------------------------------------------------------------------


def test_only_scene_folders_are_listed_from_the_scene_root(benchmarks: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(benchmarks / "scenes", tmp_path / "scenes"))
    shutil.copytree(root / sorted(p.name for p in root.iterdir())[0], root / ".partial")
    (root / "notes").mkdir()
    assert [p.name for p in list_scene_folders(root)] == sorted(p.name for p in (benchmarks / "scenes").iterdir())
    with pytest.raises(FileNotFoundError, match="preprocess_scenes.py"):
        list_scene_folders(tmp_path / "absent")


def test_a_zipped_scene_folder_is_unpacked_inside_the_destination(room: Path, tmp_path: Path) -> None:
    nested = _zip(room, tmp_path / "upload.zip", f"export/{room.name}/")
    with zipfile.ZipFile(nested, "a") as archive:
        archive.writestr("export/README.txt", "not part of the scene")
    folder = extract_scene_zip(nested, tmp_path / "a")
    assert folder == tmp_path / "a" / room.name and read_scene(folder).num_frames == CONFIG.num_frames
    assert not (tmp_path / "a" / "README.txt").exists()
    flat = extract_scene_zip(_zip(room, tmp_path / "my room.zip", ""), tmp_path / "b")
    assert flat == tmp_path / "b" / "my_room" and (flat / "proposals.npz").is_file()


def test_unsafe_or_oversized_zips_are_refused_before_anything_is_written(room: Path, tmp_path: Path) -> None:
    scene = _zip(room, tmp_path / "scene.zip", "scene/")

    def with_member(name: str, info: zipfile.ZipInfo | None = None) -> Path:
        path = tmp_path / f"bad{len(list(tmp_path.glob('bad*.zip')))}.zip"
        shutil.copy(scene, path)
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(info or name, "x")
        return path

    link = zipfile.ZipInfo("scene/color/link.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    for path, message in [
        (with_member("../escaped.txt"), "points outside"),
        (with_member("/etc/escaped.txt"), "points outside"),
        (with_member("C:/escaped.txt"), "points outside"),
        (with_member("", link), "is a link"),
        (with_member("other/scene.npz"), "holds 2 scene folders"),
    ]:
        with pytest.raises(ValueError, match=message):
            extract_scene_zip(path, tmp_path / "out")
    with pytest.raises(ValueError, match="at most 5 files"):
        extract_scene_zip(scene, tmp_path / "out", SceneZipLimits(max_files=5))
    with pytest.raises(ValueError, match="0.01 MB may be unpacked"):
        extract_scene_zip(scene, tmp_path / "out", SceneZipLimits(max_megabytes=0.01))
    not_zip = tmp_path / "scene.npz.zip"
    not_zip.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .zip"):
        extract_scene_zip(not_zip, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "escaped.txt").exists()


# --- the tab's handlers ----------------------------------------------------------------------------------


def test_without_a_scene_root_the_tab_says_how_to_make_scenes(tmp_path: Path) -> None:
    context = DemoContext(StubInference([]), MediaLimits(), tmp_path)
    with gr.Blocks() as blocks:
        build(context)
    help_text = [b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "scene-help"]
    assert len(help_text) == 1 and "scripts/preprocess_scenes.py" in help_text[0].value
    assert scene_names(None) == []
    with pytest.raises(gr.Error, match="no scene folder"):
        picked(context, "scene_val_0000")


def test_with_a_scene_root_the_tab_lists_its_scenes_and_a_missing_one_stops_the_app(
    benchmarks: Path, tmp_path: Path
) -> None:
    with gr.Blocks() as blocks:
        build(_context(tmp_path, benchmarks / "scenes"))
    by_id = {b.elem_id: b for b in blocks.blocks.values() if getattr(b, "elem_id", None)}
    assert [value for _, value in by_id["scene-choice"].choices] == scene_names(benchmarks / "scenes")
    assert len(scene_names(benchmarks / "scenes")) == 2 and "scene-help" not in by_id
    with pytest.raises(SystemExit, match=f"--scene-root {tmp_path / 'absent'} is not a folder"):
        app.main(["--scene-root", str(tmp_path / "absent")])


def test_picking_a_scene_of_the_server_shows_its_bev_and_marked_frames(benchmarks: Path, tmp_path: Path) -> None:
    root = benchmarks / "scenes"
    context = _context(tmp_path, root)
    name = scene_names(root)[1]
    session, info, bev, gallery, answer, named, table = picked(context, name)
    assert session.view.scene.scene_id == name and f"**{name}**" in info and f"sees {NUM_FRAMES} frames" in info
    assert bev.ndim == 3 and len(gallery) == 6 and gallery[0][1].startswith("frame ")
    assert answer == "" and named == "" and table.empty
    for bad in ["../scenes/" + name, str(root / name)]:
        with pytest.raises(gr.Error, match="There is no scene folder"):
            picked(context, bad)


def test_asking_streams_the_answer_then_highlights_the_proposals_it_names(benchmarks: Path, tmp_path: Path) -> None:
    answers = ["It is", "It is <OBJ001>", "It is <OBJ001> and <OBJ003>."]
    context = _context(tmp_path, benchmarks / "scenes", answers)
    session = picked(context, scene_names(benchmarks / "scenes")[0])[0]
    outputs = list(asked(context, session, "the red chair", "ground an object"))
    assert [out[1] for out in outputs] == ["", *answers, answers[-1]]
    assert all(out[2] is not None and not isinstance(out[2], np.ndarray) for out in outputs[1:-1])  # skipped
    _, answer, bev, gallery, named, table = outputs[-1]
    assert list(table["object"]) == ["<OBJ001>", "<OBJ003>"] and "`<OBJ001>`" in named
    assert session.answer == answers[-1] and not np.array_equal(bev, session.view.bev)
    sample = context.inference.samples[0]
    assert sample.conversation[0]["content"].endswith("description.\nThe red chair")
    assert sample.meta["frame_indices"] == session.view.llm_frames and len(sample.frames) == NUM_FRAMES


def test_asking_without_a_scene_or_a_question_is_refused(benchmarks: Path, tmp_path: Path) -> None:
    context = _context(tmp_path, benchmarks / "scenes", ["<OBJ000>"])
    with pytest.raises(gr.Error, match="Choose or upload a scene first"):
        list(asked(context, None, "where is the bed?", "question"))
    session = picked(context, scene_names(benchmarks / "scenes")[0])[0]
    with pytest.raises(gr.Error, match="the question is empty"):
        list(asked(context, session, "   ", "question"))
    assert context.inference.samples == []


def test_each_upload_is_unpacked_into_its_own_folder(room: Path, tmp_path: Path) -> None:
    context = _context(tmp_path, None)
    upload = _zip(room, tmp_path / "room.zip", f"{room.name}/")
    first, second = uploaded(context, str(upload))[0], uploaded(context, str(upload))[0]
    folders = [first.view.scene.folder, second.view.scene.folder]
    assert folders[0] != folders[1] and all(f.is_relative_to(context.output_root) for f in folders)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not really")
    with pytest.raises(gr.Error, match="Cannot use this upload: broken.zip is not a readable .zip"):
        uploaded(context, str(broken))


def test_the_tiny_model_answers_a_question_about_a_synthetic_scene(benchmarks: Path, tmp_path: Path) -> None:
    inference = UniGRInference(MODEL, max_new_tokens=6, tracker="optical_flow")
    context = DemoContext(inference, MediaLimits(), tmp_path / "outputs", 1, benchmarks / "scenes")
    session = picked(context, scene_names(benchmarks / "scenes")[0])[0]
    assert len(session.view.llm_frames) == inference.answerer.num_frames
    outputs = list(asked(context, session, "the sofa", "ground objects"))
    answer, table = outputs[-1][1], outputs[-1][5]
    assert answer.strip() and outputs[-2][1] == answer  # streamed, then the same answer with its highlight
    assert list(table["object"]) == [f"<OBJ{k:03d}>" for k in highlight_answer(session.view, answer).ids]
