"""Prompt tracking: each backend carries a prompt mask from its frame to every frame of a video."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from utils.synthetic.moving_shapes import ShapeObject, WorldConfig, make_video, render_video
from utils.visual_prompts.tracking import COTRACKER_INSTALL, available_trackers, build_tracker

ROOT = Path(__file__).resolve().parents[1]
PROMPTED_SAM2 = ROOT / "assets" / "sam2.1_hiera_tiny_prompted.pt"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def moving_square(num_frames: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(T, 64, 80, 3)`` of a red square moving right 4 px a frame over a noisy background, and its masks."""
    square = ShapeObject("red", "square", 18.0, 18.0, 30.0, "right", 4.0)
    frames, masks = render_video(
        [square], WorldConfig(height=64, width=80, num_frames=num_frames), np.random.default_rng(0)
    )
    return frames, masks[0]


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_optical_flow_mask_follows_the_moving_square_both_ways(method: str):
    frames, truth = moving_square()
    masks = build_tracker("optical_flow", method=method).track(frames, 3, truth[3])
    assert masks.shape == truth.shape and masks.dtype == bool
    assert np.array_equal(masks[3], truth[3])
    for t in (0, 6):  # 12 px from the prompt: a copied prompt overlaps the object by a third at most
        assert iou(truth[3], truth[t]) < 0.35
        assert iou(masks[t], truth[t]) > 0.75


# CoTracker3 is not installed here: a stand-in ``cotracker`` package returns known tracks.


class FakeCoTrackerPredictor(torch.nn.Module):
    """Tracks each query by ``motion(points (N, 2), frames from the query frame) -> (N, 2)``, visible except on
    the ``hidden`` frames; records its calls."""

    motion = staticmethod(lambda points, dt: points)
    hidden: tuple[int, ...] = ()
    calls: list[dict] = []

    def __init__(self, checkpoint: str, offline: bool, v2: bool, window_len: int):
        super().__init__()
        self.calls.append({"checkpoint": checkpoint, "offline": offline, "v2": v2, "window_len": window_len})

    def forward(self, video: torch.Tensor, queries: torch.Tensor, backward_tracking: bool = False):
        self.calls.append({"video": video, "queries": queries, "backward_tracking": backward_tracking})
        num_frames = video.shape[1]
        start, points = queries[0, :, 0], queries[0, :, 1:].numpy()
        assert torch.all(start == start[0])
        tracks = np.stack([self.motion(points, t - int(start[0])) for t in range(num_frames)])
        visible = torch.ones(1, num_frames, len(points), dtype=torch.bool)
        visible[0, list(self.hidden), 2:] = False  # all but two points hidden on those frames
        return torch.from_numpy(tracks)[None].float(), visible


@pytest.fixture
def fake_cotracker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[type[FakeCoTrackerPredictor], Path]:
    """The stand-in predictor class (reset) and a checkpoint file for it."""
    package = types.ModuleType("cotracker")
    package.__spec__ = importlib.machinery.ModuleSpec("cotracker", None, is_package=True)
    predictor = types.ModuleType("cotracker.predictor")
    predictor.CoTrackerPredictor = FakeCoTrackerPredictor
    monkeypatch.setitem(sys.modules, "cotracker", package)
    monkeypatch.setitem(sys.modules, "cotracker.predictor", predictor)
    monkeypatch.setattr(FakeCoTrackerPredictor, "calls", [])
    checkpoint = tmp_path / "scaled_offline.pth"
    checkpoint.write_bytes(b"")
    return FakeCoTrackerPredictor, checkpoint


def l_shape(height: int = 48, width: int = 64) -> np.ndarray:
    """A non-convex mask: an L of two bars."""
    mask = np.zeros((height, width), dtype=bool)
    mask[14:34, 20:26] = True
    mask[28:34, 20:40] = True
    return mask


def test_cotracker_warps_the_mask_by_the_tracked_translation(fake_cotracker, monkeypatch: pytest.MonkeyPatch):
    predictor, checkpoint = fake_cotracker
    monkeypatch.setattr(predictor, "motion", staticmethod(lambda points, dt: points + np.array([3.0, -2.0]) * dt))
    frames = np.random.default_rng(0).integers(0, 256, (5, 48, 64, 3), dtype=np.uint8)
    mask = l_shape()
    assert "cotracker" in available_trackers()
    masks = build_tracker("cotracker", checkpoint=checkpoint, num_points=40).track(frames, 2, mask)
    for t in range(5):
        dt = t - 2
        expected = np.zeros_like(mask)
        expected[14 - 2 * dt : 34 - 2 * dt, 20 + 3 * dt : 26 + 3 * dt] = True
        expected[28 - 2 * dt : 34 - 2 * dt, 20 + 3 * dt : 40 + 3 * dt] = True
        assert np.array_equal(masks[t], expected), t
    built, called = predictor.calls
    assert built == {"checkpoint": str(checkpoint), "offline": True, "v2": False, "window_len": 60}
    assert called["backward_tracking"] and called["video"].shape == (1, 5, 3, 48, 64)
    queries = called["queries"][0].numpy()
    assert len(queries) == 40 and np.all(queries[:, 0] == 2)
    assert mask[queries[:, 2].astype(int), queries[:, 1].astype(int)].all()  # every query point inside the mask
    assert np.ptp(queries[:, 2]) >= 15 and np.ptp(queries[:, 1]) >= 15  # spread over both bars


def test_cotracker_scales_the_mask_with_its_points(fake_cotracker, monkeypatch: pytest.MonkeyPatch):
    predictor, checkpoint = fake_cotracker
    centre = np.array([30.0, 24.0])
    monkeypatch.setattr(predictor, "motion", staticmethod(lambda points, dt: centre + (points - centre) * 1.5**dt))
    frames = np.zeros((3, 48, 64, 3), dtype=np.uint8)
    mask = l_shape()
    masks = build_tracker("cotracker", checkpoint=checkpoint).track(frames, 0, mask)
    for t in (1, 2):
        scale = 1.5**t
        matrix = np.array([[scale, 0, centre[0] * (1 - scale)], [0, scale, centre[1] * (1 - scale)]])
        expected = cv2.warpAffine(mask.astype(np.uint8), matrix, (64, 48), flags=cv2.INTER_NEAREST) > 0
        assert masks[t].sum() > 1.5 * mask.sum()
        assert iou(masks[t], expected) > 0.95


def test_cotracker_empties_the_mask_where_its_points_are_hidden(fake_cotracker, monkeypatch: pytest.MonkeyPatch):
    predictor, checkpoint = fake_cotracker
    monkeypatch.setattr(predictor, "hidden", (0,))
    frames = np.zeros((3, 48, 64, 3), dtype=np.uint8)
    masks = build_tracker("cotracker", checkpoint=checkpoint).track(frames, 1, l_shape())
    assert not masks[0].any()
    assert np.array_equal(masks[2], l_shape())


def test_missing_cotracker_is_an_import_error_saying_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "cotracker", None)  # import cotracker fails, find_spec finds nothing
    assert "cotracker" not in available_trackers()
    assert {"sam2", "optical_flow"} <= set(available_trackers())
    with pytest.raises(ImportError, match=r"not on PyPI.*" + COTRACKER_INSTALL.replace(".", r"\.").replace("+", r"\+")):
        build_tracker("cotracker", checkpoint=tmp_path / "scaled_offline.pth")


@pytest.fixture(scope="module")
def tiny_sam2_tracker():
    seg = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "model" / "tiny.yaml").model.seg)
    return build_tracker("sam2", checkpoint=PROMPTED_SAM2, config=seg["sam2_config"], overrides=seg["sam2_overrides"])


def test_sam2_tracks_both_ways_with_the_shipped_prompted_tiny_sam2(tiny_sam2_tracker, monkeypatch):
    video = make_video(0, "valid_u", 1, WorldConfig(height=96, width=128, num_frames=5))  # SAM2 sees 128 x 128
    prompt = video.masks[0, 2]
    predictor = tiny_sam2_tracker.predictor
    visited = []
    propagate = predictor.propagate_in_video

    def spy(state, start_frame_idx, reverse):
        for output in propagate(state, start_frame_idx=start_frame_idx, reverse=reverse):
            visited.append((output[0], reverse))
            yield output

    monkeypatch.setattr(predictor, "propagate_in_video", spy)
    masks = tiny_sam2_tracker.track(video.frames, 2, prompt)
    assert masks.shape == (5, 96, 128) and masks.dtype == bool
    assert iou(masks[2], prompt) > 0.8  # SAM2's output for the mask prompt, back at the video's size
    assert sorted(visited) == [(0, True), (1, True), (2, False), (2, True), (3, False), (4, False)]


def test_unknown_tracker_name_is_an_error_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown tracker 'xmem'.*'cotracker', 'optical_flow', 'sam2'"):
        build_tracker("xmem")


def test_unknown_and_missing_options_are_errors_naming_them():
    with pytest.raises(ValueError, match=r"'optical_flow' has no options \['window'\]"):
        build_tracker("optical_flow", window=5)
    with pytest.raises(ValueError, match=r"'sam2' needs the options \['checkpoint'\]"):
        build_tracker("sam2")
    with pytest.raises(ValueError, match="'dis' or 'farneback'"):
        build_tracker("optical_flow", method="lucas-kanade")


def test_empty_prompt_mask_is_an_error_naming_the_frame():
    frames, truth = moving_square(4)
    tracker = build_tracker("optical_flow")
    with pytest.raises(ValueError, match="prompt mask on frame 3 is empty"):
        tracker.track(frames, 3, np.zeros_like(truth[3]))
    with pytest.raises(ValueError, match=r"prompt mask on frame 1 must be a \(64, 80\) bool array"):
        tracker.track(frames, 1, truth[1, :32])
    with pytest.raises(ValueError, match="prompt frame 4 is outside the video's 4 frames"):
        tracker.track(frames, 4, truth[0])
