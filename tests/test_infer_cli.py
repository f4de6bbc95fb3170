"""``python -m scripts.infer``: one input or a batch of requests, on the shipped tiny model; the real cat clip end
to end (segmentation, and a question about a boxed region), errors reported with exit status 1, batches that
count their failures and still write the good requests' outputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.media import MediaLimits, load_media
from inference.pipeline import UniGRInference
from inference.region_prompt import read_region_file
from scripts import infer
from utils.data.palette import read_index_mask
from utils.synthetic.moving_shapes import WorldConfig, make_video
from utils.video.clip import read_clip
from utils.video.encode import write_video

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "assets" / "unigr_tiny_quickstart"
CAT = ROOT.parent / "shared" / "fixtures" / "video" / "cat.mp4"
CAT_NOTE = "87 frames sampled uniformly down to 12"


@pytest.fixture(scope="module")
def cat() -> Path:
    if not CAT.is_file():
        pytest.skip(f"the real clip {CAT} is not here")
    return CAT


@pytest.fixture(scope="module")
def inference() -> UniGRInference:
    """The model the CLI loads by default, for the answers the CLI must reproduce."""
    return UniGRInference(MODEL, max_new_tokens=8)


@pytest.fixture(scope="module")
def shapes():
    """A moving-shapes video like the tiny model's training data (128 px, 8 frames; object 0 the green triangle)."""
    return make_video(0, "valid", 2, WorldConfig())


@pytest.fixture
def shapes_clip(tmp_path: Path, shapes) -> Path:
    return write_video(tmp_path / "shapes.mp4", shapes.frames, fps=10)


def run_cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    """``main`` in-process with the tiny model's short answers: ``(exit status, stdout, stderr)``."""
    code = infer.main([str(arg) for arg in args] + ["--max-new-tokens", "8"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def mask_files(out: Path) -> list[Path]:
    return sorted((out / "masks").glob("*.png"))


def check_overlay_video(path: Path, num_frames: int, height: int, width: int) -> None:
    clip = read_clip(path)
    assert clip.frames.shape == (num_frames, height, width, 3)


# --- the cat clip, end to end ---------------------------------------------------------------------------------------


def test_segmenting_the_cat_clip_as_a_user_would_prints_the_answer_and_writes_masks_overlay_and_result(
    tmp_path: Path, cat: Path
) -> None:
    out = tmp_path / "cat"
    command = [sys.executable, "-m", "scripts.infer", "--input", str(cat), "--prompt", "the cat", "--out", str(out)]
    command += ["--max-frames", "12", "--max-new-tokens", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "result.json").read_text())
    assert done.stdout == result["answer"] + "\n"  # the answer alone on stdout; paths and progress on stderr
    assert result["input"] == str(cat.resolve()) and result["prompt"] == "the cat"
    assert (result["task"], result["frames"], result["notes"]) == ("segment", 12, [CAT_NOTE])
    assert result["objects"] == result["answer"].count("[SEG]")
    assert (result["masks"], result["overlay"]) == (str(out / "masks"), str(out / "overlay.mp4"))
    assert f"masks: {out / 'masks'}" in done.stderr and f"overlay: {out / 'overlay.mp4'}" in done.stderr
    names = load_media(cat, MediaLimits(max_frames=12)).frame_names
    assert [p.stem for p in mask_files(out)] == names  # one PNG per decoded frame, named after it
    for path in mask_files(out):
        ids = read_index_mask(path)
        assert ids.shape == (480, 368) and ids.max() <= result["objects"]
    check_overlay_video(out / "overlay.mp4", 12, 480, 368)


def test_a_question_about_a_boxed_region_of_the_cat_answers_tracks_it_and_records_the_region(
    tmp_path: Path, cat: Path, capsys: pytest.CaptureFixture, inference: UniGRInference
) -> None:
    box = tmp_path / "box.json"
    box.write_text(json.dumps({"frame": 3, "box": [100, 150, 300, 400]}))
    out = tmp_path / "region"
    args = ["--input", cat, "--prompt", "What is <region> doing?", "--region", box, "--out", out, "--max-frames", 12]
    code, stdout, stderr = run_cli(capsys, *args)
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    assert stdout == result["answer"] + "\n"
    assert (result["task"], result["region"], result["frames"]) == ("region", {"frame": 3, "kind": "box"}, 12)
    assert result["notes"] == [CAT_NOTE] and "objects" not in result
    ids = np.stack([read_index_mask(path) for path in mask_files(out)])
    assert ids.shape == (12, 480, 368) and set(np.unique(ids)) <= {0, 1}
    assert ids[3].any()  # the object where the box was drawn
    check_overlay_video(out / "overlay.mp4", 12, 480, 368)
    # The same steps through the library give the same masks and answer.
    media = load_media(cat, MediaLimits(max_frames=12))
    user = read_region_file(box)
    tracked = inference.track(media, user.frame, inference.prompt_mask(media, user))
    np.testing.assert_array_equal(ids, tracked.astype(np.uint8))
    sample = inference.region_sample(media, "What is <region> doing?", tracked, "box")
    assert result["answer"] == inference.answer(sample)


def test_max_frames_and_max_side_limit_what_is_decoded_and_written(
    tmp_path: Path, cat: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "small"
    code, _, stderr = run_cli(
        capsys, "--input", cat, "--prompt", "the cat", "--out", out, "--max-frames", 4, "--max-side", 240
    )
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    assert result["frames"] == 4
    assert result["notes"] == [
        "87 frames sampled uniformly down to 4",
        "frames scaled from 368x480 to 184x240 (limit 240 px)",
    ]
    assert [read_index_mask(p).shape for p in mask_files(out)] == [(240, 184)] * 4
    check_overlay_video(out / "overlay.mp4", 4, 240, 184)


# --- other inputs and tasks -----------------------------------------------------------------------------------------


def test_an_image_is_segmented_into_one_mask_png_and_an_overlay_png(
    tmp_path: Path, shapes, capsys: pytest.CaptureFixture
) -> None:
    image = tmp_path / "shapes.png"
    Image.fromarray(shapes.frames[0]).save(image)
    out = tmp_path / "image"
    code, stdout, stderr = run_cli(capsys, "--input", image, "--prompt", "the green triangle", "--out", out)
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    assert stdout == result["answer"] + "\n" and result["frames"] == 1 and result["objects"] >= 1
    assert [p.name for p in mask_files(out)] == ["shapes.png"]
    ids = read_index_mask(out / "masks" / "shapes.png")
    assert ids.shape == (128, 128) and (ids == 1).any()
    assert result["overlay"] == str(out / "overlay.png") and not (out / "overlay.mp4").exists()
    with Image.open(out / "overlay.png") as overlay:
        assert overlay.size == (128, 128) and overlay.mode == "RGB"


def test_a_frame_folder_s_masks_are_named_after_its_frame_files(
    tmp_path: Path, shapes, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(shapes.frames):
        Image.fromarray(frame).save(folder / f"{5 * t:05d}.png")
    out = tmp_path / "folder"
    code, _, stderr = run_cli(capsys, "--input", folder, "--prompt", "the green triangle", "--out", out)
    assert code == 0, stderr
    assert [p.stem for p in mask_files(out)] == [f"{5 * t:05d}" for t in range(8)]
    check_overlay_video(out / "overlay.mp4", 8, 128, 128)


def write_region(tmp_path: Path, kind: str, shapes) -> Path:
    """A region file of ``kind`` on the green triangle (object 0) on frame 2 of the shapes clip."""
    ys, xs = np.nonzero(shapes.masks[0][2])
    cx, cy = float(xs.mean()), float(ys.mean())
    if kind == "mask png":
        path = tmp_path / "triangle.png"
        Image.fromarray(shapes.masks[0][0].astype(np.uint8) * 255).save(path)  # a mask image is on frame 0
        return path
    if kind == "mask":
        Image.fromarray(shapes.masks[0][2].astype(np.uint8) * 255).save(tmp_path / "drawn.png")
        spec = {"frame": 2, "mask": "drawn.png"}
    elif kind == "points":
        spec = {"frame": 2, "points": [[cx, cy]], "labels": [1]}
    else:
        spec = {"frame": 2, "scribble": [[cx - 3, cy], [cx + 3, cy]]}
    path = tmp_path / f"{kind}.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize(("kind", "frame"), [("points", 2), ("scribble", 2), ("mask", 2), ("mask png", 0)])
def test_clicks_a_scribble_or_a_mask_from_a_region_file_are_asked_about_and_tracked(
    tmp_path: Path, shapes, shapes_clip: Path, capsys: pytest.CaptureFixture, kind: str, frame: int
) -> None:
    region = write_region(tmp_path, kind, shapes)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        capsys, "--input", shapes_clip, "--prompt", "What colour is it?", "--region", region, "--out", out
    )
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    assert stdout == result["answer"] + "\n"
    assert result["region"] == {"frame": frame, "kind": "mask" if kind == "mask png" else kind}
    assert len(mask_files(out)) == 8 and read_index_mask(mask_files(out)[frame]).any()


def test_the_answer_task_writes_only_the_result_with_its_answer(
    tmp_path: Path, shapes_clip: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "answer"
    code, stdout, stderr = run_cli(
        capsys, "--input", shapes_clip, "--prompt", "What shapes are there?", "--task", "answer", "--out", out
    )
    assert code == 0, stderr
    assert [p.name for p in out.iterdir()] == ["result.json"]
    result = json.loads((out / "result.json").read_text())
    assert stdout == result["answer"] + "\n" and result["task"] == "answer"
    assert "masks" not in result and "overlay" not in result and "masks:" not in stderr


# --- errors ---------------------------------------------------------------------------------------------------------


def missing(tmp_path: Path, clip: Path) -> list[object]:
    return ["--input", tmp_path / "gone.mp4", "--prompt", "the cat"]


def noise(tmp_path: Path, clip: Path) -> list[object]:
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    return ["--input", tmp_path / "noise.mp4", "--prompt", "the cat"]


def truncated(tmp_path: Path, clip: Path) -> list[object]:
    data = CAT.read_bytes() if CAT.is_file() else clip.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])
    return ["--input", tmp_path / "cut.mp4", "--prompt", "the cat"]


def text_file(tmp_path: Path, clip: Path) -> list[object]:
    (tmp_path / "notes.txt").write_text("a cat")
    return ["--input", tmp_path / "notes.txt", "--prompt", "the cat"]


def too_long(tmp_path: Path, clip: Path) -> list[object]:
    return ["--input", clip, "--prompt", "the cat", "--max-seconds", "0.5"]


def point_outside(tmp_path: Path, clip: Path) -> list[object]:
    (tmp_path / "r.json").write_text(json.dumps({"frame": 0, "points": [[500, 5]]}))
    return ["--input", clip, "--prompt", "What is it?", "--region", tmp_path / "r.json"]


def frame_outside(tmp_path: Path, clip: Path) -> list[object]:
    (tmp_path / "r.json").write_text(json.dumps({"frame": 8, "box": [1, 1, 50, 50]}))
    return ["--input", clip, "--prompt", "What is it?", "--region", tmp_path / "r.json"]


def bad_json(tmp_path: Path, clip: Path) -> list[object]:
    (tmp_path / "r.json").write_text("{'box': [1, 2, 3, 4]}")
    return ["--input", clip, "--prompt", "What is it?", "--region", tmp_path / "r.json"]


def region_with_segment(tmp_path: Path, clip: Path) -> list[object]:
    (tmp_path / "r.json").write_text(json.dumps({"box": [1, 1, 50, 50]}))
    return ["--input", clip, "--prompt", "the cat", "--region", tmp_path / "r.json", "--task", "segment"]


def region_task_without_region(tmp_path: Path, clip: Path) -> list[object]:
    return ["--input", clip, "--prompt", "What is it?", "--task", "region"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (missing, r"gone\.mp4: no such file or folder"),
        (noise, r"not a readable video: .*noise\.mp4"),
        (truncated, r"not a readable video: .*cut\.mp4"),
        (text_file, r"notes\.txt: \.txt is not a video or image type"),
        (too_long, r"the video is 0\.8 s long; the limit is 0\.5 s"),
        (point_outside, r"points \[\[500\.0, 5\.0\]\] are outside the 128x128 frame"),
        (frame_outside, "frame 8 is outside the input's 8 frames"),
        (bad_json, r"r\.json: not valid JSON"),
        (region_with_segment, "a region task needs a region, and a region needs the region task"),
        (region_task_without_region, "a region task needs a region, and a region needs the region task"),
    ],
)
def test_an_input_or_region_that_cannot_be_used_exits_with_status_1_and_says_why(
    tmp_path: Path,
    shapes_clip: Path,
    capsys: pytest.CaptureFixture,
    make: Callable[[Path, Path], list[object]],
    message: str,
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, *make(tmp_path, shapes_clip), "--out", out)
    assert code == 1
    last = stderr.splitlines()[-1]  # after the model's loading progress
    assert last.startswith("error: ") and re.search(message, last), stderr
    assert stdout == "" and not (out / "result.json").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--input", "clip.mp4", "--out", "out"],  # no prompt
        ["--input", "clip.mp4", "--prompt", "  ", "--out", "out"],  # a blank prompt
        ["--batch", "list.json", "--prompt", "the cat", "--out", "out"],
        ["--batch", "list.json", "--region", "box.json", "--out", "out"],
        ["--input", "clip.mp4", "--batch", "list.json", "--prompt", "x", "--out", "out"],
        ["--input", "clip.mp4", "--prompt", "the cat"],  # no output folder
        ["--input", "clip.mp4", "--prompt", "the cat", "--out", "out", "--task", "dance"],
    ],
)
def test_a_wrong_command_line_is_a_usage_error(args: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        infer.main(args)
    assert stop.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_a_folder_that_is_not_a_model_is_refused_and_the_default_says_how_to_make_it(
    tmp_path: Path, shapes_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--input", str(shapes_clip), "--prompt", "the cat", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match=r"nomodel is not a UniGR model folder \(no config.json\)\.$"):
        infer.main(["--model", str(tmp_path / "nomodel"), *args])
    monkeypatch.setattr(infer, "DEFAULT_MODEL", tmp_path / "quickstart_model")
    with pytest.raises(SystemExit, match=r"Make it with: python scripts/quickstart\.py"):
        infer.main(args)


# --- batches --------------------------------------------------------------------------------------------------------


def test_a_batch_counts_its_failed_requests_writes_the_good_ones_and_exits_with_status_1(
    tmp_path: Path, shapes, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "requests"  # paths in the list are relative to its folder
    folder.mkdir()
    write_video(folder / "clip.mp4", shapes.frames, fps=10)
    (folder / "noise.mp4").write_bytes(np.random.default_rng(3).bytes(3000))
    Image.fromarray(shapes.masks[0][1].astype(np.uint8)).save(folder / "drawn.png")
    (folder / "mask.json").write_text(json.dumps({"frame": 1, "mask": "drawn.png"}))
    requests = [
        {"input": "clip.mp4", "prompt": "the green triangle", "name": "segment"},
        {"input": "missing.mp4", "prompt": "the cat"},
        {"input": "clip.mp4", "prompt": "What is <region>?", "region": {"frame": 1, "mask": "drawn.png"}},
        {"input": "noise.mp4", "prompt": "the cat", "name": "noise"},
        {"input": "clip.mp4", "prompt": "What colour is it?", "region": "mask.json", "name": "region file"},
        {"input": "clip.mp4", "prompt": "What?", "region": {"frame": 0, "points": [[500, 5]]}, "name": "outside"},
        {"input": "clip.mp4", "prompt": "the cat", "task": "dance", "name": "dance"},
        {"input": "clip.mp4", "name": "no prompt"},
        {"input": "clip.mp4", "prompt": "What shapes?", "task": "answer", "name": "answer"},
    ]
    (folder / "list.json").write_text(json.dumps(requests))
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, "--batch", folder / "list.json", "--out", out)
    assert code == 1
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["requests"], summary["failed"]) == (9, 5)
    assert stdout.endswith(f"4 of 9 requests done; summary: {out / 'summary.json'}\n")
    results = {r["name"]: r for r in summary["results"]}
    unnamed_ones_by_index = ["segment", "0001", "0002", "noise", "region file", "outside", "dance", "no prompt"]
    assert list(results) == [*unnamed_ones_by_index, "answer"]
    errors = {name: r["error"] for name, r in results.items() if "error" in r}
    assert sorted(errors) == ["0001", "dance", "no prompt", "noise", "outside"]
    assert "missing.mp4: no such file or folder" in errors["0001"] and "not a readable video" in errors["noise"]
    assert "are outside the 128x128 frame" in errors["outside"] and "task must be one of" in errors["dance"]
    assert "say what to segment" in errors["no prompt"]
    assert all(f"{name}: error: {error}" in stderr for name, error in errors.items())
    assert results["noise"]["input"] == "noise.mp4"
    for name in errors:
        assert not (out / name / "result.json").exists()
    for name in ("segment", "0002", "region file", "answer"):
        record = json.loads((out / name / "result.json").read_text())
        assert {"name": name, **record} == results[name]
        assert f"{name}: {record['answer']}\n" in stdout
    assert results["segment"]["input"] == str(folder / "clip.mp4")
    assert results["0002"]["region"] == results["region file"]["region"] == {"frame": 1, "kind": "mask"}
    for name in ("segment", "0002", "region file"):
        assert len(mask_files(out / name)) == 8 and (out / name / "overlay.mp4").is_file()
    assert read_index_mask(mask_files(out / "0002")[1]).any()
    assert not (out / "answer" / "masks").exists()


def test_a_batch_whose_requests_all_succeed_exits_with_status_0(
    tmp_path: Path, shapes_clip: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "list.json").write_text(json.dumps([{"input": shapes_clip.name, "prompt": "the green triangle"}]))
    code, stdout, _ = run_cli(capsys, "--batch", tmp_path / "list.json", "--out", tmp_path / "out")
    assert code == 0 and "1 of 1 requests done" in stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["failed"] == 0 and summary["results"][0]["name"] == "0000"
    assert (tmp_path / "out" / "0000" / "result.json").is_file()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the request list"),
        ("[{'input': 'clip.mp4'}]", "cannot read the request list"),
        ('{"input": "clip.mp4"}', "expected a JSON list of objects with an 'input' each"),
        ('[{"input": "clip.mp4"}, {"prompt": "the cat"}]', "expected a JSON list of objects with an 'input' each"),
        ('["clip.mp4"]', "expected a JSON list of objects with an 'input' each"),
    ],
)
def test_a_request_list_that_cannot_be_read_exits_with_status_1_before_running_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture, content: str | None, message: str
) -> None:
    path = tmp_path / "list.json"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "out"
    code, _, stderr = run_cli(capsys, "--batch", path, "--out", out)
    assert code == 1 and stderr.splitlines()[-1].startswith(f"error: {path}: {message}")
    assert not (out / "summary.json").exists()


def test_a_batch_request_whose_input_is_not_a_path_is_counted_as_failed(
    tmp_path: Path, shapes_clip: Path, capsys: pytest.CaptureFixture
) -> None:
    requests = [{"input": 3, "prompt": "the cat"}, {"input": shapes_clip.name, "prompt": "the green triangle"}]
    (tmp_path / "list.json").write_text(json.dumps(requests))
    code, _, _ = run_cli(capsys, "--batch", tmp_path / "list.json", "--out", tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert code == 1 and (summary["requests"], summary["failed"]) == (2, 1)
    assert (tmp_path / "out" / "0001" / "result.json").is_file()


def test_a_region_in_original_pixels_still_points_at_its_object_when_frames_are_scaled_down(
    tmp_path: Path, cat: Path, capsys: pytest.CaptureFixture
) -> None:
    box = tmp_path / "box.json"
    box.write_text(json.dumps({"frame": 0, "box": [200, 300, 360, 470]}))  # lower right of the 368x480 frame
    out = tmp_path / "out"
    args = ["--input", cat, "--prompt", "What is <region>?", "--region", box, "--out", out]
    code, _, stderr = run_cli(capsys, *args, "--max-frames", 4, "--max-side", 240)
    assert code == 0, stderr
    ids = read_index_mask(mask_files(out)[0])
    ys, xs = np.nonzero(ids)
    assert ids.shape == (240, 184) and xs.min() >= 90 and ys.min() >= 140  # the box at half size: [100, 150, ...]
