"""J (region similarity) and F (boundary F-measure): hand-made cases, and exact equality with the DAVIS-toolkit-style
reference (``evaluation.metrics.davis_reference``) on real DAVIS masks and random / edge-case masks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from evaluation.metrics import davis_reference
from evaluation.metrics.jf import (
    boundary_f_measure,
    boundary_radius,
    disk_footprint,
    footprint_rectangles,
    jf_per_frame,
    jf_scores,
    region_similarity,
    seg2bmap,
    summarize,
)

H480, W480 = 480, 854
DAVIS_DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "davis"
SEQUENCES = ("car-shadow", "libby", "drift-straight")


def _rect(top: int, left: int, height: int, width: int, shape: tuple[int, int] = (H480, W480)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + height, left : left + width] = True
    return mask


# --------------------------------------------------------------------------- hand-made cases


def test_both_empty_scores_one_for_j_and_f():
    empty = np.zeros((2, 40, 60), dtype=bool)
    np.testing.assert_array_equal(region_similarity(empty, empty), [1.0, 1.0])
    np.testing.assert_array_equal(boundary_f_measure(empty, empty), [1.0, 1.0])


def test_empty_prediction_with_nonempty_gt_scores_zero():
    gt = _rect(10, 10, 20, 30, shape=(64, 64))[None]
    pred = np.zeros_like(gt)
    np.testing.assert_array_equal(region_similarity(pred, gt), [0.0])
    np.testing.assert_array_equal(boundary_f_measure(pred, gt), [0.0])


def test_nonempty_prediction_with_empty_gt_scores_zero():
    pred = _rect(10, 10, 20, 30, shape=(64, 64))[None]
    gt = np.zeros_like(pred)
    np.testing.assert_array_equal(region_similarity(pred, gt), [0.0])
    np.testing.assert_array_equal(boundary_f_measure(pred, gt), [0.0])


def test_identical_masks_score_one():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 50, 70)) > 0.5
    np.testing.assert_array_equal(region_similarity(masks, masks), np.ones(3))
    np.testing.assert_array_equal(boundary_f_measure(masks, masks), np.ones(3))


def test_overlapping_rectangles_have_exact_iou():
    gt = _rect(10, 10, 20, 20, shape=(64, 64))  # 400 px
    pred = _rect(20, 10, 20, 20, shape=(64, 64))  # 400 px, 200 shared
    assert region_similarity(pred[None], gt[None])[0] == pytest.approx(200 / 600, abs=1e-12)


def test_per_frame_scores_are_independent():
    gt = np.stack([_rect(10, 10, 20, 20, (64, 64)), np.zeros((64, 64), bool), _rect(0, 0, 8, 8, (64, 64))])
    pred = np.stack([_rect(20, 10, 20, 20, (64, 64)), np.zeros((64, 64), bool), np.zeros((64, 64), bool)])
    np.testing.assert_allclose(region_similarity(pred, gt), [1 / 3, 1.0, 0.0])
    f = boundary_f_measure(pred, gt)
    assert f.shape == (3,)
    assert f[1] == 1.0 and f[2] == 0.0


def test_two_dimensional_input_is_treated_as_one_frame():
    gt = _rect(10, 10, 20, 20, (64, 64))
    assert region_similarity(gt, gt).shape == (1,)
    assert boundary_f_measure(gt, gt).shape == (1,)


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError):
        region_similarity(np.zeros((1, 4, 4), bool), np.zeros((1, 4, 5), bool))


def test_one_pixel_shift_keeps_f_at_one_but_lowers_j_at_480p():
    gt = _rect(100, 200, 150, 250)
    pred = np.roll(gt, 1, axis=1)
    j = region_similarity(pred[None], gt[None])[0]
    f = boundary_f_measure(pred[None], gt[None])[0]
    assert f == 1.0
    assert j == pytest.approx((150 * 249) / (150 * 251), abs=1e-12)


def test_shift_within_tolerance_band_keeps_f_one_and_beyond_it_lowers_f():
    assert boundary_radius(H480, W480) == 8
    gt = _rect(100, 200, 150, 250)
    at_band = np.roll(gt, 8, axis=1)
    past_band = np.roll(gt, 9, axis=1)
    assert boundary_f_measure(at_band[None], gt[None])[0] == 1.0
    assert boundary_f_measure(past_band[None], gt[None])[0] < 1.0
    # With a 1-pixel absolute tolerance, even a 2-pixel shift is penalised.
    assert boundary_f_measure(np.roll(gt, 2, axis=1)[None], gt[None], bound_th=1)[0] < 1.0


def test_bound_pix_is_ceil_of_fraction_of_diagonal():
    assert boundary_radius(480, 854) == math.ceil(0.008 * math.hypot(480, 854)) == 8
    assert boundary_radius(100, 100) == 2  # 0.008 * 141.4 = 1.13
    assert boundary_radius(1080, 1920) == 18  # 0.008 * 2202.9 = 17.6
    assert boundary_radius(480, 854, bound_th=3) == 3
    assert boundary_radius(480, 854, bound_th=2.5) == 2.5


def test_seg2bmap_marks_pixels_that_differ_from_right_bottom_or_bottom_right_neighbour():
    seg = np.zeros((5, 6), dtype=bool)
    seg[2, 3] = True
    expected = np.zeros_like(seg)
    expected[[2, 1, 2, 1], [3, 3, 2, 2]] = True  # itself, above, left, above-left
    np.testing.assert_array_equal(seg2bmap(seg), expected)


def test_seg2bmap_treats_outside_of_image_as_same_as_edge_pixel():
    full = np.ones((4, 5), dtype=bool)
    assert not seg2bmap(full).any()
    corner = np.zeros((4, 5), dtype=bool)
    corner[-1, -1] = True  # bottom-right pixel is never a boundary itself
    expected = np.zeros_like(corner)
    expected[[3, 2, 2], [3, 4, 3]] = True
    np.testing.assert_array_equal(seg2bmap(corner), expected)


@pytest.mark.parametrize("radius", [0, 1, 2, 2.5, 3, 8.0, 17.6])
def test_disk_footprint_matches_skimage_disk(radius):
    skm = pytest.importorskip("skimage.morphology")
    np.testing.assert_array_equal(disk_footprint(radius), skm.disk(radius).astype(bool))


@pytest.mark.parametrize("radius", [0, 1, 1.5, 2, 2.5, 3.7, 8.0, 12, 18.0, 30])
def test_footprint_rectangles_rebuild_the_disk_with_cv2_anchor(radius):
    footprint = disk_footprint(radius)
    anchor = footprint.shape[0] // 2
    rebuilt = np.zeros_like(footprint)
    for dy0, dy1, dx0, dx1 in footprint_rectangles(radius):
        rebuilt[dy0 + anchor : dy1 + anchor + 1, dx0 + anchor : dx1 + anchor + 1] = True
    np.testing.assert_array_equal(rebuilt, footprint)
    areas = [(r[1] - r[0] + 1) * (r[3] - r[2] + 1) for r in footprint_rectangles(radius)]
    assert areas == sorted(areas, reverse=True)


def test_jf_scores_averages_frames_and_can_skip_first_and_last():
    gt = np.stack([_rect(10, 10, 20, 20, (64, 64))] * 4)
    pred = gt.copy()
    pred[0] = False
    pred[3] = False
    full = jf_scores(pred, gt)
    assert full == {"J": 0.5, "F": 0.5, "J&F": 0.5}
    inner = jf_scores(pred, gt, skip_first_last=True)
    assert inner == {"J": 1.0, "F": 1.0, "J&F": 1.0}
    assert all(isinstance(v, float) for v in full.values())


def test_summarize_averages_over_samples_and_counts_them():
    per_sample = {
        "a": {"J": 0.5, "F": 0.7, "J&F": 0.6},
        "b": {"J": 1.0, "F": 0.9, "J&F": 0.95},
    }
    out = summarize(per_sample)
    assert out["count"] == 2
    assert out["J"] == pytest.approx(0.75)
    assert out["F"] == pytest.approx(0.8)
    assert out["J&F"] == pytest.approx(0.775)
    empty = summarize({})
    assert empty["count"] == 0 and math.isnan(empty["J&F"])


# --------------------------------------------------------------------------- void pixels and edge cases


def test_void_pixels_are_left_out_of_j_and_cleared_before_boundaries():
    gt = _rect(10, 10, 20, 20, (64, 64))[None]
    pred = _rect(10, 10, 20, 30, (64, 64))[None]  # 200 extra pixels, all inside the void
    void = _rect(0, 30, 64, 34, (64, 64))[None]
    assert region_similarity(pred, gt)[0] == pytest.approx(400 / 600)
    assert region_similarity(pred, gt, void=void)[0] == 1.0
    assert boundary_f_measure(pred, gt, void=void)[0] == 1.0
    assert jf_scores(pred, gt, void=void) == {"J": 1.0, "F": 1.0, "J&F": 1.0}


def test_void_region_cuts_a_boundary_like_the_toolkit():
    """An object overlapping the void gets a boundary along the void edge (mask & ~void is outlined)."""
    gt = _rect(10, 10, 20, 20, (64, 64))[None]
    pred = _rect(10, 10, 20, 16, (64, 64))[None]
    void = _rect(0, 26, 64, 38, (64, 64))[None]  # hides gt columns 26..29: pred == gt & ~void
    assert boundary_f_measure(pred, gt, void=void)[0] == 1.0
    np.testing.assert_array_equal(
        boundary_f_measure(pred, gt, bound_th=1, void=void),
        davis_reference.boundary_f_measure(pred, gt, bound_th=1, void=void),
    )


def test_void_of_another_shape_raises():
    masks = np.zeros((1, 8, 8), dtype=bool)
    with pytest.raises(ValueError, match="void"):
        region_similarity(masks, masks, void=np.zeros((1, 8, 9), dtype=bool))


def test_negative_bound_th_raises():
    with pytest.raises(ValueError, match="bound_th"):
        boundary_radius(10, 10, -0.1)


def test_radius_of_one_or_more_is_absolute_pixels():
    gt = _rect(100, 200, 150, 250)[None]
    assert boundary_radius(H480, W480, 1) == 1.0
    assert boundary_f_measure(np.roll(gt, 1, axis=2), gt, bound_th=1)[0] == 1.0
    assert boundary_f_measure(np.roll(gt, 2, axis=2), gt, bound_th=1)[0] < 1.0


def _assert_equal_to_reference(pred, gt, bound_th=0.008, void=None):
    j, f = jf_per_frame(pred, gt, bound_th, void=void)
    np.testing.assert_array_equal(j, davis_reference.region_similarity(pred, gt, void=void))
    np.testing.assert_array_equal(f, davis_reference.boundary_f_measure(pred, gt, bound_th, void=void))
    np.testing.assert_array_equal(j, region_similarity(pred, gt, void=void))
    np.testing.assert_array_equal(f, boundary_f_measure(pred, gt, bound_th, void=void))


def test_single_pixel_masks_at_every_position_equal_reference():
    h, w = 5, 6
    pixels = np.eye(h * w, dtype=bool).reshape(-1, h, w)  # one mask per pixel, corners and edges included
    pred = np.repeat(pixels, len(pixels), axis=0)
    gt = np.tile(pixels, (len(pixels), 1, 1))
    for bound_th in (0.008, 1, 2.5):
        _assert_equal_to_reference(pred, gt, bound_th)


def test_masks_touching_the_border_equal_reference():
    shape = (12, 17)
    masks = [np.zeros(shape, bool), np.ones(shape, bool)]
    for sl in [np.s_[:1, :], np.s_[-1:, :], np.s_[:, :1], np.s_[:, -1:], np.s_[:4, :5], np.s_[-4:, -5:], np.s_[3:, :]]:
        mask = np.zeros(shape, bool)
        mask[sl] = True
        masks.append(mask)
    masks = np.stack(masks)
    pred = np.repeat(masks, len(masks), axis=0)
    gt = np.tile(masks, (len(masks), 1, 1))
    void = np.zeros_like(gt)
    void[:, 5:7, :] = True
    for bound_th in (0.008, 0.3, 2):
        _assert_equal_to_reference(pred, gt, bound_th)
        _assert_equal_to_reference(pred, gt, bound_th, void=void)


@pytest.mark.parametrize("bound_th", [0.008, 0.05, 0.2, 0.0, 1, 1.5, 2.5, 3.7, 5])
def test_random_masks_equal_reference_exactly(bound_th):
    rng = np.random.default_rng(int(10 * bound_th))
    yy, xx = np.mgrid[:37, :53]
    blobs = np.stack([(yy - rng.uniform(-9, 46)) ** 2 + (xx - rng.uniform(-9, 62)) ** 2 < rng.uniform(2, 30) ** 2
                      for _ in range(12)])
    noise = rng.random(blobs.shape) > 0.9
    pred = np.concatenate([blobs[:6] ^ noise[:6], noise[6:]])  # noisy blobs, then pure salt noise
    gt = np.concatenate([blobs[6:], blobs[:6]])
    void = rng.random(gt.shape) > 0.85
    _assert_equal_to_reference(pred, gt, bound_th)
    _assert_equal_to_reference(pred, gt, bound_th, void=void)


def test_jf_scores_with_void_and_skipped_frames_uses_the_inner_frames():
    rng = np.random.default_rng(3)
    pred, gt, void = (rng.random((5, 20, 30)) > p for p in (0.5, 0.5, 0.8))
    scores = jf_scores(pred, gt, skip_first_last=True, void=void)
    j = davis_reference.region_similarity(pred[1:-1], gt[1:-1], void=void[1:-1])
    f = davis_reference.boundary_f_measure(pred[1:-1], gt[1:-1], void=void[1:-1])
    assert scores == {"J": float(j.mean()), "F": float(f.mean()), "J&F": (float(j.mean()) + float(f.mean())) / 2}


# --------------------------------------------------------------------------- independent checks of the reference


def _reference_bmap(seg: np.ndarray) -> np.ndarray:
    """Boundary map written as 'compare with the edge-replicated right/bottom/bottom-right pixel'."""
    padded = np.pad(seg, ((0, 1), (0, 1)), mode="edge")
    right, below, below_right = padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]
    return (seg != right) | (seg != below) | (seg != below_right)


def _precision_recall_to_f(n_pred: int, n_gt: int, pred_hit: int, gt_hit: int) -> float:
    if n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    elif n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        precision, recall = pred_hit / n_pred, gt_hit / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _f_skimage(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """Single-frame F with scikit-image's dilation instead of OpenCV's (integer radii only)."""
    from skimage.morphology import dilation, disk

    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(pred.shape))
    pred_b, gt_b = _reference_bmap(pred), _reference_bmap(gt)
    footprint = disk(bound_pix)
    pred_dil, gt_dil = dilation(pred_b, footprint), dilation(gt_b, footprint)
    return _precision_recall_to_f(
        int(pred_b.sum()), int(gt_b.sum()), int((pred_b & gt_dil).sum()), int((gt_b & pred_dil).sum())
    )


def _f_kdtree(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """Single-frame F via nearest-neighbour distances between boundary pixels (disk = distance <= r)."""
    from scipy.spatial import cKDTree

    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(pred.shape))
    pred_pts, gt_pts = np.argwhere(_reference_bmap(pred)), np.argwhere(_reference_bmap(gt))
    if len(pred_pts) == 0 or len(gt_pts) == 0:
        return _precision_recall_to_f(len(pred_pts), len(gt_pts), 0, 0)
    d_pred, _ = cKDTree(gt_pts).query(pred_pts, distance_upper_bound=bound_pix + 1e-6)
    d_gt, _ = cKDTree(pred_pts).query(gt_pts, distance_upper_bound=bound_pix + 1e-6)
    return _precision_recall_to_f(
        len(pred_pts), len(gt_pts), int(np.isfinite(d_pred).sum()), int(np.isfinite(d_gt).sum())
    )


@pytest.mark.parametrize("bound_th", [0.008, 0.05, 2, 5])
def test_reference_f_matches_skimage_dilation_on_random_blobs_touching_the_border(bound_th):
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:60, :80]
    pred, gt = [], []
    for _ in range(4):
        cy, cx, r = rng.uniform(0, 60), rng.uniform(0, 80), rng.uniform(5, 30)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        gt.append(blob)
        pred.append(blob ^ (rng.random(blob.shape) > 0.97))  # blob with salt-and-pepper noise
    pred, gt = np.stack(pred), np.stack(gt)
    expected = [_f_skimage(p, g, bound_th) for p, g in zip(pred, gt, strict=True)]
    np.testing.assert_allclose(davis_reference.boundary_f_measure(pred, gt, bound_th), expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- real DAVIS masks


def _load_stack(folder: Path, names: list[str]) -> np.ndarray:
    from PIL import Image

    return np.stack([np.array(Image.open(folder / f"{name}.png")) > 0 for name in names])


@pytest.fixture(scope="module")
def davis_osvos() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """seq -> (pred, gt) boolean stacks of shape (T, 480, 854) for the OSVOS fixture sequences."""
    if not DAVIS_DIR.is_dir():
        pytest.skip(f"DAVIS fixtures not found at {DAVIS_DIR}")
    data = {}
    for seq in SEQUENCES:
        gt_dir = DAVIS_DIR / "Annotations" / "480p" / seq
        pred_dir = DAVIS_DIR / "predictions" / "osvos" / seq
        names = sorted(p.stem for p in gt_dir.glob("*.png"))
        assert names and names == sorted(p.stem for p in pred_dir.glob("*.png"))
        data[seq] = (_load_stack(pred_dir, names), _load_stack(gt_dir, names))
    return data


def test_real_masks_have_expected_shapes(davis_osvos):
    frames = {seq: pred.shape[0] for seq, (pred, _) in davis_osvos.items()}
    assert frames == {"car-shadow": 40, "libby": 49, "drift-straight": 50}
    for pred, gt in davis_osvos.values():
        assert pred.shape[1:] == gt.shape[1:] == (H480, W480)
        assert gt.any(axis=(1, 2)).all()


def test_real_j_and_f_equal_reference_on_every_frame(davis_osvos):
    for pred, gt in davis_osvos.values():
        _assert_equal_to_reference(pred, gt)
    pred, gt = davis_osvos["libby"]
    _assert_equal_to_reference(pred[::6], gt[::6], bound_th=3)


def test_real_masks_with_a_void_band_equal_reference(davis_osvos):
    import cv2

    pred, gt = davis_osvos["car-shadow"]
    pred, gt = pred[::4], gt[::4]
    ring = np.ones((11, 11), np.uint8)  # a void band around each object outline, as in DAVIS-2017
    void = np.stack([cv2.dilate(g.view(np.uint8), ring) > 0 for g in gt]) & ~np.stack(
        [cv2.erode(g.view(np.uint8), ring) > 0 for g in gt]
    )
    _assert_equal_to_reference(pred, gt, void=void)
    assert (region_similarity(pred, gt, void=void) > region_similarity(pred, gt)).all()


def test_real_masks_upscaled_to_1080p_equal_reference(davis_osvos):
    import cv2

    frames = [(seq, t) for seq in SEQUENCES for t in (10, -1)]  # drift-straight's last prediction is empty
    pred, gt = (
        np.stack([cv2.resize(davis_osvos[s][i][t].view(np.uint8), (1920, 1080), interpolation=cv2.INTER_NEAREST) > 0
                  for s, t in frames])
        for i in (0, 1)
    )
    assert boundary_radius(1080, 1920) == 18
    _assert_equal_to_reference(pred, gt)


def test_reference_f_matches_nearest_neighbour_distances_on_real_frames(davis_osvos):
    for pred, gt in davis_osvos.values():
        idx = [0, len(pred) // 2, len(pred) - 1]
        expected = [_f_kdtree(pred[i], gt[i]) for i in idx]
        np.testing.assert_allclose(davis_reference.boundary_f_measure(pred[idx], gt[idx]), expected, rtol=0, atol=1e-12)


def test_real_empty_last_prediction_of_drift_straight_scores_zero(davis_osvos):
    pred, gt = davis_osvos["drift-straight"]
    assert not pred[-1].any() and gt[-1].any()
    assert region_similarity(pred[-1:], gt[-1:])[0] == 0.0
    assert boundary_f_measure(pred[-1:], gt[-1:])[0] == 0.0


def test_real_first_frame_is_close_but_not_identical_to_gt(davis_osvos):
    for pred, gt in davis_osvos.values():
        j0 = region_similarity(pred[:1], gt[:1])[0]
        assert 0.85 < j0 < 1.0


def test_real_sequence_scores_are_plausible_and_summarize(davis_osvos):
    per_seq = {seq: jf_scores(pred, gt, skip_first_last=True) for seq, (pred, gt) in davis_osvos.items()}
    for scores in per_seq.values():
        assert 0.5 < scores["J"] <= 1.0 and 0.5 < scores["F"] <= 1.0
        assert scores["J&F"] == pytest.approx((scores["J"] + scores["F"]) / 2)
    summary = summarize(per_seq)
    assert summary["count"] == 3
    assert summary["J"] == pytest.approx(np.mean([s["J"] for s in per_seq.values()]))
