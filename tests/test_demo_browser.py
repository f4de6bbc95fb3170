"""The demo as a person uses it: ``python app.py`` on a free local port with the quick start's tiny model,
driven in headless Chromium (Playwright with Debian's ``chromium``, which ``scripts/setup_env.sh`` installs).

Screenshots go to each test's output folder; with ``UNIGR_DEMO_SCREENSHOTS=docs/images`` they are also
written there (the README's pictures are made this way).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from utils.synthetic.moving_shapes import WorldConfig, make_video
from utils.video.encode import write_video

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT.parent / "shared" / "fixtures" / "video"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements.txt pins it)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup_env.sh)")

MAX_FRAMES = 12
"""Frames the app decodes per upload in these tests (its --max-frames): keeps SAM2's work small on a CPU."""
WAIT_MS = 120_000
UNSEEN_SEED = 7
"""A synthetic world seed no training run or reported evaluation used (as tests/test_shipped_grounding.py)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_app(log: Path, max_frames: int, *arguments: str) -> Iterator[str]:
    """Run ``python app.py`` on a free local port decoding at most ``max_frames`` frames per upload, with
    ``arguments`` and its output in ``log``; yield its URL once it answers, stop it afterwards (a failure names the
    log's end)."""
    port = _free_port()
    command = [sys.executable, "app.py", "--port", str(port), "--max-frames", str(max_frames), *arguments]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            pytest.fail(f"app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"app.py did not answer on {url}:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python app.py`` with its defaults but a free port and a small frame budget; stopped afterwards."""
    yield from serve_app(tmp_path_factory.mktemp("app") / "app.log", MAX_FRAMES, "--max-new-tokens", "16")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def _page(browser, url: str):
    """A new browser context (its own cookies and Gradio session) on the app."""
    page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
    page.goto(url)
    page.wait_for_selector("#seg-input", timeout=WAIT_MS)
    return page


def _screenshot(page, folder: Path, name: str, readme: bool = False) -> Path:
    """A full-page screenshot in ``folder``; a README picture is also copied to ``$UNIGR_DEMO_SCREENSHOTS``."""
    path = folder / f"{name}.png"
    page.wait_for_timeout(1000)  # outputs fade in
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    extra = os.environ.get("UNIGR_DEMO_SCREENSHOTS")
    if extra and readme:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)
    return path


def _wait_uploaded(page, selector: str, name: str) -> None:
    """Wait until the file component ``selector`` lists ``name`` (it writes the stem and suffix on two lines)."""
    page.wait_for_function(
        f"document.querySelector('{selector}').innerText.replace(/\\s/g, '').includes('{name}')", timeout=WAIT_MS
    )


def _segment(page, clip: Path, expression: str) -> str:
    """Upload ``clip`` in the segmentation tab, ask for ``expression``; returns the answer shown."""
    page.get_by_role("tab", name="Referring segmentation").click()
    page.locator("#seg-input input[type=file]").set_input_files(str(clip))
    page.locator("#seg-text textarea").fill(expression)
    _wait_uploaded(page, "#seg-input", clip.name)
    page.locator("#seg-run").click()
    page.wait_for_function(
        "document.querySelector('#seg-answer textarea').value.length > 0"
        " && document.querySelector('#seg-info').innerText.includes('segmented')"
        " || document.querySelector('#seg-info').innerText.includes('no mask')",
        timeout=WAIT_MS,
    )
    return page.locator("#seg-answer textarea").input_value()


def _needs_clip(name: str) -> Path:
    path = CLIPS / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (../shared/fixtures)")
    return path


def test_segmenting_an_uploaded_clip_shows_the_answer_an_overlay_video_and_the_masks(
    browser, app_url: str, tmp_path: Path
) -> None:
    cat = _needs_clip("cat.mp4")
    page = _page(browser, app_url)
    answer = _segment(page, cat, "the cat")
    assert answer.strip()
    assert f"cat.mp4: video, {MAX_FRAMES} frames" in page.locator("#seg-info").inner_text()
    page.wait_for_selector("#seg-video video", timeout=WAIT_MS)
    assert page.locator("#seg-video video").get_attribute("src").endswith("overlay.mp4")
    link = page.locator("#seg-masks a").first.get_attribute("href")
    with urllib.request.urlopen(urllib.parse.urljoin(app_url, link), timeout=30) as response:
        names = zipfile.ZipFile(io.BytesIO(response.read())).namelist()
    assert len(names) == MAX_FRAMES and all(name.endswith(".png") for name in names)  # one indexed PNG per frame
    _screenshot(page, tmp_path, "demo_referring_segmentation_cat")


def test_the_tiny_model_masks_a_named_shape_of_an_unseen_synthetic_clip(browser, app_url: str, tmp_path: Path) -> None:
    video = make_video(UNSEEN_SEED, "valid_u", 0, WorldConfig())
    clip = write_video(tmp_path / "shapes.mp4", np.repeat(np.repeat(video.frames, 3, 1), 3, 2), fps=4)
    page = _page(browser, app_url)
    answer = _segment(page, clip, video.expressions[1].text)
    assert "[SEG]" in answer
    assert "1 object(s) segmented" in page.locator("#seg-info").inner_text()
    page.wait_for_selector("#seg-video video", timeout=WAIT_MS)
    _screenshot(page, tmp_path, "demo_referring_segmentation", readme=True)


def test_a_box_drawn_on_a_frame_is_masked_tracked_and_asked_about(browser, app_url: str, tmp_path: Path) -> None:
    cat = _needs_clip("cat.mp4")
    page = _page(browser, app_url)
    page.get_by_role("tab", name="Ask about a region").click()
    page.locator("#region-input input[type=file]").set_input_files(str(cat))
    page.wait_for_selector("#region-frame img", timeout=WAIT_MS)
    image = page.locator("#region-frame img")
    size = image.bounding_box()
    image.click(position={"x": size["width"] * 0.2, "y": size["height"] * 0.25})
    page.wait_for_timeout(500)
    image.click(position={"x": size["width"] * 0.8, "y": size["height"] * 0.85})
    page.wait_for_function("document.querySelector('#region-status').innerText.includes(' px')", timeout=WAIT_MS)
    assert "Mask on frame 0" in page.locator("#region-status").inner_text()
    page.locator("#region-track").click()
    page.wait_for_function(
        "document.querySelector('#region-status').innerText.includes('The region is on')", timeout=WAIT_MS
    )
    assert f"of {MAX_FRAMES} frames" in page.locator("#region-status").inner_text()
    page.wait_for_selector("#region-video video", timeout=WAIT_MS)
    page.locator("#region-question textarea").fill("What is <region> doing?")
    page.locator("#region-ask").click()
    page.wait_for_function("document.querySelector('#region-answer textarea').value.length > 0", timeout=WAIT_MS)
    _screenshot(page, tmp_path, "demo_ask_about_a_region", readme=True)


def test_two_sessions_at_once_do_not_see_each_others_uploads_or_answers(browser, app_url: str, tmp_path: Path) -> None:
    cat, dog = _needs_clip("cat.mp4"), _needs_clip("dog.mp4")
    first, second = _page(browser, app_url), _page(browser, app_url)
    _segment(first, cat, "the cat")
    assert second.locator("#seg-answer textarea").input_value() == ""  # nothing of the first session shows
    assert "cat.mp4" not in second.locator("#seg-info").inner_text()
    second.get_by_role("tab", name="Ask about a region").click()
    second.locator("#region-input input[type=file]").set_input_files(str(dog))
    second.wait_for_selector("#region-frame img", timeout=WAIT_MS)
    _segment(second, dog, "the dog")
    assert "dog.mp4" in second.locator("#seg-info").inner_text()
    assert "cat.mp4" in first.locator("#seg-info").inner_text() and "dog" not in first.locator("#seg-info").inner_text()
    first.get_by_role("tab", name="Ask about a region").click()
    assert first.locator("#region-frame img").count() == 0  # the second session's region upload is its own
    assert "dog.mp4" not in first.locator("#region-info").inner_text()
    _screenshot(first, tmp_path, "first_session")
    _screenshot(second, tmp_path, "second_session")


def test_a_corrupt_upload_gets_a_message_and_the_app_keeps_serving(browser, app_url: str, tmp_path: Path) -> None:
    cat = _needs_clip("cat.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(cat.read_bytes()[:2000])  # the header of a real clip, then nothing
    page = _page(browser, app_url)
    page.locator("#seg-input input[type=file]").set_input_files(str(broken))
    page.locator("#seg-text textarea").fill("the cat")
    _wait_uploaded(page, "#seg-input", broken.name)
    page.locator("#seg-run").click()
    page.wait_for_selector(".toast-body", timeout=WAIT_MS)
    message = page.locator(".toast-body").first.inner_text()
    assert "Cannot use this upload" in message and "broken.mp4" in message
    _screenshot(page, tmp_path, "corrupt_upload")
    assert _segment(_page(browser, app_url), cat, "the cat").strip()  # a new session is still served


def test_a_scribble_painted_with_the_brush_becomes_the_regions_mask(browser, app_url: str, tmp_path: Path) -> None:
    cat = _needs_clip("cat.mp4")
    page = _page(browser, app_url)
    page.get_by_role("tab", name="Ask about a region").click()
    page.locator("#region-input input[type=file]").set_input_files(str(cat))
    page.wait_for_selector("#region-frame img", timeout=WAIT_MS)
    page.locator("#region-tool").get_by_text("scribble").click()
    page.get_by_text("Brush (scribble or mask)").click()
    canvas = page.locator("#region-brush canvas").last
    canvas.wait_for(timeout=WAIT_MS)
    size = canvas.bounding_box()
    x, y = size["x"] + size["width"] / 2, size["y"] + size["height"] / 2
    page.mouse.move(x - 30, y - 40)
    page.mouse.down()
    for step in range(10):
        page.mouse.move(x - 30 + 6 * step, y - 40 + 8 * step)
    page.mouse.up()
    page.wait_for_timeout(500)
    page.locator("#region-use-drawing").click()
    page.wait_for_function("document.querySelector('#region-status').innerText.includes(' px')", timeout=WAIT_MS)
    assert "Mask on frame 0" in page.locator("#region-status").inner_text()
    _screenshot(page, tmp_path, "scribble")


def test_an_uploaded_scene_shows_its_bev_and_marked_frames_and_is_asked_about(
    browser, app_url: str, tmp_path: Path
) -> None:
    from utils.synthetic.rooms import RoomConfig, make_room, render_room, room_rng, write_room  # (this test only)

    config = RoomConfig(height=240, width=320, num_frames=12)
    room = make_room(UNSEEN_SEED, "demo", 0, config)
    frames = render_room(room, config, room_rng(UNSEEN_SEED, "demo", 0, 1))
    folder = write_room(tmp_path / "scenes", room, frames, config)
    upload = tmp_path / f"{folder.name}.zip"
    with zipfile.ZipFile(upload, "w") as archive:  # the app has no --scene-root here: a zip of one scene folder
        for file in sorted(folder.rglob("*")):
            archive.write(file, f"{folder.name}/{file.relative_to(folder).as_posix()}")
    page = _page(browser, app_url)
    page.get_by_role("tab", name="3D scene").click()
    assert "scripts/preprocess_scenes.py" in page.locator("#scene-help").inner_text()
    page.locator("#scene-upload input[type=file]").set_input_files(str(upload))
    page.wait_for_selector("#scene-bev img", timeout=WAIT_MS)
    assert f"{folder.name}: {config.num_frames} frames, {len(room.proposals)} proposals" in page.locator(
        "#scene-info"
    ).inner_text().replace("*", "")
    assert page.locator("#scene-frames img").count() > 0
    page.locator("#scene-question textarea").fill("the sofa by the wall")
    page.locator("#scene-kind").get_by_text("ground objects").click()
    page.locator("#scene-ask").click()
    page.wait_for_function("document.querySelector('#scene-answer textarea').value.length > 0", timeout=WAIT_MS)
    page.wait_for_function(
        "document.querySelector('#scene-named').innerText.includes('The answer names')", timeout=WAIT_MS
    )
    _screenshot(page, tmp_path, "demo_3d_scene", readme=True)
