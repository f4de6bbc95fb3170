"""Benchmark-specific metrics (ReVOS A/R and table, Ref-DAVIS17 unsupervised matching, LISA gIoU/cIoU) and the
J&F speed benchmark script."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from evaluation.metrics import davis17, refer_iou, revos
from evaluation.metrics.jf import jf_per_frame
from scripts import benchmark_jf

DAVIS_DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "davis"


@pytest.fixture(scope="module")
def davis_gt_pred() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """seq -> (OSVOS prediction, ground truth) boolean ``(12, 480, 854)`` stacks (first 12 frames)."""
    if not DAVIS_DIR.is_dir():
        pytest.skip(f"DAVIS fixtures not found at {DAVIS_DIR}")
    out = {}
    for seq in ("car-shadow", "libby"):
        names = sorted(p.stem for p in (DAVIS_DIR / "Annotations" / "480p" / seq).glob("*.png"))[:12]
        out[seq] = tuple(
            np.stack([np.array(Image.open(folder / f"{name}.png")) > 0 for name in names])
            for folder in (DAVIS_DIR / "predictions" / "osvos" / seq, DAVIS_DIR / "Annotations" / "480p" / seq)
        )
    return out


# --------------------------------------------------------------------------- ReVOS


def _official_a_and_r(gt: np.ndarray, pred_png: np.ndarray, foreground: np.ndarray) -> tuple[float, float]:
    """A and R written frame by frame from the definitions in VISA's tools/metrics.py (uint8 arrays as read)."""
    accs, robs = [], []
    for g, p, fg in zip(gt, pred_png, foreground):
        accs.append(np.mean(g == p))
        neg = ((1 - g) * p).sum()
        robs.append(max(1 - neg / (fg.sum() + 1e-6), 0.0))
    return float(np.array(accs).mean()), float(np.array(robs).mean())


def _revos_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two 4x5 frames: target 2x2 (plus an overlap pixel of two targets in frame 1), prediction 2x3."""
    gt = np.zeros((2, 4, 5), np.uint8)
    gt[:, 1:3, 1:3] = 1
    gt[1, 2, 2] = 2  # two target objects overlap here: the official sum gives 2
    foreground = gt.copy()
    foreground[:, 0, 4] = 1  # another annotated object of the video
    pred = np.zeros((2, 4, 5), bool)
    pred[:, 1:3, 1:4] = True
    return pred, gt, foreground


def test_revos_a_and_r_with_0_1_masks_are_hand_computed_accuracy_and_robustness():
    pred, gt, foreground = _revos_case()
    scores = revos.expression_scores(pred[:1], gt[:1], foreground[:1])
    assert scores["J"] == pytest.approx(4 / 6)
    assert scores["A"] == pytest.approx(18 / 20)  # the 2 extra predicted pixels are wrong
    assert scores["R"] == pytest.approx(1 - 2 / (5 + 1e-6))  # 2 false positives over 5 foreground pixels


@pytest.mark.parametrize("scale", revos.MASK_SCALES)
def test_revos_scores_match_the_official_formulas_for_each_saved_scale(scale):
    pred, gt, foreground = _revos_case()
    scores = revos.expression_scores(pred, gt, foreground, saved_scale=scale)
    a, r = _official_a_and_r(gt, pred.astype(np.uint8) * np.uint8(scale), foreground)
    assert (scores["A"], scores["R"]) == (a, r)
    j, f = jf_per_frame(pred, gt > 0)
    assert (scores["J"], scores["F"]) == (float(j.mean()), float(f.mean()))


def test_revos_scale_changes_a_and_r_but_not_j_and_f():
    pred, gt, foreground = _revos_case()
    ones = revos.expression_scores(pred, gt, foreground, saved_scale=1)
    full = revos.expression_scores(pred, gt, foreground, saved_scale=255)
    assert (ones["J"], ones["F"]) == (full["J"], full["F"])
    assert full["A"] < ones["A"] and full["R"] == 0.0 < ones["R"]  # 255-weighted false positives exceed pos


def test_revos_expression_scores_reject_mismatched_shapes():
    pred, gt, foreground = _revos_case()
    with pytest.raises(ValueError, match="shapes"):
        revos.expression_scores(pred[:, :3], gt, foreground)


@pytest.mark.parametrize("scale", revos.MASK_SCALES)
def test_binarize_scaled_reads_png_written_with_that_scale(tmp_path, scale):
    mask = np.zeros((6, 7), bool)
    mask[2:4, 1:5] = True
    path = tmp_path / "00000.png"
    cv2.imwrite(str(path), mask.astype(np.uint8) * scale)
    png = revos.read_prediction_png(path)
    assert png.dtype == np.uint8 and set(np.unique(png)) == {0, scale}
    np.testing.assert_array_equal(revos.binarize_scaled(png, scale), mask)
    other = next(s for s in revos.MASK_SCALES if s != scale)
    with pytest.raises(ValueError, match=f"not 0/{other}"):
        revos.binarize_scaled(png, other)


def test_palette_png_reads_as_grey_and_is_rejected_by_every_scale(tmp_path):
    """A DAVIS-style indexed PNG (index 1 = (128, 0, 0)) is read by the official cv2 call as grey 38."""
    image = Image.fromarray(np.eye(5, dtype=np.uint8), mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
    image.save(tmp_path / "p.png")
    png = revos.read_prediction_png(tmp_path / "p.png")
    assert set(np.unique(png)) == {0, 38}
    for scale in revos.MASK_SCALES:
        with pytest.raises(ValueError):
            revos.binarize_scaled(png, scale)


def test_missing_prediction_png_raises_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        revos.read_prediction_png(tmp_path / "nope.png")


def test_revos_table_rounds_per_expression_and_averages_groups_not_expressions():
    per_expression = {
        "v1_0": {"J": 0.123456, "F": 0.5, "A": 0.9, "R": 1.0, "type_id": 0},
        "v1_1": {"J": 0.5, "F": 0.25, "A": 0.8, "R": 0.5, "type_id": 0},
        "v2_0": {"J": 1 / 3, "F": 1.0, "A": 1.0, "R": 0.25, "type_id": 1},
        "v2_1": {"J": 0.0, "F": 0.0, "A": 0.0, "R": 0.0, "type_id": 2},  # scored, but in no column
    }
    table = revos.revos_table(per_expression)
    ref, reason, overall = table["referring"], table["reason"], table["overall"]
    assert ref["J"] == pytest.approx((12.35 + 50.0) / 2 / 100)  # 12.3456 is stored as 12.35
    assert reason["J"] == pytest.approx(33.33 / 100)
    assert ref["J&F"] == pytest.approx((ref["J"] + ref["F"]) / 2)
    assert overall["J"] == pytest.approx((ref["J"] + reason["J"]) / 2)  # 2 referring + 1 reasoning expression
    assert overall["R"] == pytest.approx(((100 + 50) / 2 + 25) / 2 / 100)
    assert (ref["count"], reason["count"], overall["count"]) == (2, 1, 3)


def test_revos_evaluate_scores_tracks_into_the_table_and_names_bad_ones():
    pred, gt, foreground = _revos_case()
    tracks = [("v/0", pred, gt, foreground, 0), ("v/1", gt > 0, gt, foreground, 1), ("v/2", pred, gt, foreground, 2)]
    result = revos.revos_evaluate(tracks, saved_scale=1)
    # A perfect prediction still loses A and R where two targets overlap: the official gt sum is 2 there, and
    # (1 - 2) wraps to 255 in uint8, so frame 1 has 255 "false positives" over 5 foreground pixels (R = 0).
    assert result["per_expression"]["v/1"] == {"J": 1.0, "F": 1.0, "A": (20 + 19) / 40, "R": 0.5, "type_id": 1}
    assert result["table"] == revos.revos_table(result["per_expression"])
    assert result["table"]["reason"]["J&F"] == 1.0 and result["table"]["overall"]["count"] == 2
    with pytest.raises(ValueError, match="v/9"):
        revos.revos_evaluate([("v/9", pred[:, :2], gt, foreground, 0)])


def test_revos_table_empty_group_is_nan_and_bad_entries_raise():
    table = revos.revos_table({"a": {"J": 1, "F": 1, "A": 1, "R": 1, "type_id": 0}})
    assert math.isnan(table["reason"]["J"]) and math.isnan(table["overall"]["J&F"])
    with pytest.raises(KeyError, match="lacks"):
        revos.revos_table({"a": {"J": 1, "F": 1, "A": 1, "type_id": 0}})
    with pytest.raises(ValueError, match="type_id"):
        revos.revos_table({"a": {"J": 1, "F": 1, "A": 1, "R": 1, "type_id": 3}})


# --------------------------------------------------------------------------- Ref-DAVIS17 (unsupervised protocol)


def _two_object_ids(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Id maps with ``first`` as object 1 and ``second`` (where not ``first``) as object 2."""
    ids = np.where(second, 2, 0).astype(np.uint8)
    ids[first] = 1
    return ids


@pytest.fixture(scope="module")
def two_object_video(davis_gt_pred):
    (pred_a, gt_a), (pred_b, gt_b) = davis_gt_pred["car-shadow"], davis_gt_pred["libby"]
    return _two_object_ids(pred_a, pred_b), _two_object_ids(gt_a, gt_b)


def test_davis17_swapped_prediction_ids_give_the_same_scores(two_object_video):
    pred, gt = two_object_video
    swapped = np.select([pred == 1, pred == 2], [2, 1], 0).astype(np.uint8)
    straight = davis17.evaluate_sequence("v", pred, gt)
    crossed = davis17.evaluate_sequence("v", swapped, gt)
    assert davis17.summarize_davis17(straight) == davis17.summarize_davis17(crossed)
    assert {(o["gt_id"], o["pred_id"]) for o in straight} == {(1, 1), (2, 2)}
    assert {(o["gt_id"], o["pred_id"]) for o in crossed} == {(1, 2), (2, 1)}


def test_davis17_scores_every_frame_with_plain_j_and_f(two_object_video):
    pred, gt = two_object_video
    objects = {o["gt_id"]: o for o in davis17.evaluate_sequence("v", pred, gt)}
    j, f = jf_per_frame(pred == 1, gt == 1)
    np.testing.assert_array_equal(objects[1]["J"], j)
    np.testing.assert_array_equal(objects[1]["F"], f)
    assert objects[1]["J-Mean"] == float(np.mean(j)) and len(j) == len(gt)


def test_davis17_fewer_predictions_than_objects_are_padded_with_empty_proposals(two_object_video):
    pred, gt = two_object_video
    only_first = np.where(pred == 1, 1, 0).astype(np.uint8)
    objects = {o["gt_id"]: o for o in davis17.evaluate_sequence("v", only_first, gt)}
    assert objects[1]["pred_id"] == 1 and objects[2]["pred_id"] == 0
    assert objects[2]["J-Mean"] == 0.0 and objects[2]["F-Mean"] == 0.0
    empty = davis17.evaluate_sequence("v", np.zeros_like(gt), gt)
    assert davis17.summarize_davis17(empty)["J&F-Mean"] == 0.0


def test_davis17_too_many_proposals_raise_but_twenty_are_allowed():
    gt = np.ones((2, 6, 6), np.uint8)
    pred = np.zeros_like(gt)
    pred[0, 0, 0] = 20
    assert len(davis17.evaluate_sequence("v", pred, gt)) == 1
    pred[1, 0, 0] = 21
    with pytest.raises(ValueError, match="v: prediction has object id 21"):
        davis17.evaluate_sequence("v", pred, gt)
    with pytest.raises(ValueError, match="255"):
        davis17.proposal_masks(np.full((1, 2, 2), 255, np.uint8))


def test_davis17_objects_come_from_the_first_frame_and_void_is_background():
    gt = np.zeros((3, 8, 8), np.uint8)
    gt[:, 1:4, 1:4] = 1
    gt[1:, 5:7, 5:7] = 2  # not in the first frame: not an object for the toolkit
    gt[:, 0, :] = 255
    masks, void = davis17.gt_object_masks(gt)
    assert masks.shape == (1, 3, 8, 8) and void is None
    pred = np.where(gt == 1, 1, 0).astype(np.uint8)
    pred[:, 0, :] = 1  # predicting the void row costs J with the toolkit's behaviour ...
    (obj,) = davis17.evaluate_sequence("v", pred, gt)
    assert obj["J-Mean"] == pytest.approx(9 / 17)
    (obj,) = davis17.evaluate_sequence("v", pred, gt, exclude_void=True)  # ... and nothing when void is excluded
    assert obj["J-Mean"] == 1.0


def test_davis17_rejects_bad_inputs_naming_the_sequence():
    gt = np.ones((2, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="seqA"):
        davis17.evaluate_sequence("seqA", gt[:, :3], gt)
    with pytest.raises(ValueError, match="integer"):
        davis17.gt_object_masks(gt.astype(np.float32))


def test_db_statistics_mean_recall_and_decay_are_hand_computed():
    mean, recall, decay = davis17.db_statistics(np.array([1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]))
    assert mean == pytest.approx(0.65)
    assert recall == 5 / 8  # values above 0.5
    assert decay == pytest.approx(0.9 - 0.4)  # bins are frames 0-2, 2-4, 4-5, 5-7 (ends included)
    with pytest.raises(ValueError):
        davis17.db_statistics(np.array([]))


def test_summarize_davis17_averages_objects_of_all_sequences():
    objects = [{"J-Mean": 0.5, "F-Mean": 0.7, "J-Recall": 1, "F-Recall": 1, "J-Decay": 0, "F-Decay": 0}] * 2
    objects += [{"J-Mean": 0.8, "F-Mean": 1.0, "J-Recall": 0, "F-Recall": 1, "J-Decay": 0.1, "F-Decay": 0}]
    table = davis17.summarize_davis17(objects)
    assert table["J-Mean"] == pytest.approx(0.6) and table["F-Mean"] == pytest.approx(0.8)
    assert table["J&F-Mean"] == pytest.approx(0.7) and table["count"] == 3
    with pytest.raises(ValueError):
        davis17.summarize_davis17([])


def test_merge_expression_masks_follows_referformer_argmax():
    masks = np.zeros((2, 1, 1, 4), bool)
    masks[0, 0, 0, :2] = True
    masks[1, 0, 0, 1:3] = True
    np.testing.assert_array_equal(davis17.merge_expression_masks(masks)[0, 0], [1, 1, 2, 0])  # lower id wins ties
    scores = np.array([[[[0.4, 0.6, 0.9]]], [[[0.45, 0.7, 0.8]]]])
    np.testing.assert_array_equal(davis17.merge_expression_masks(scores)[0, 0], [0, 2, 1])


# --------------------------------------------------------------------------- LISA gIoU / cIoU


def test_intersection_union_leaves_ignored_pixels_out():
    gt = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
    pred = np.array([[1, 0, 1, 1], [0, 0, 0, 0]])
    assert refer_iou.intersection_union(pred, gt) == (1, 4)
    ignore = np.array([[0, 0, 0, 1], [0, 0, 0, 0]], bool)
    assert refer_iou.intersection_union(pred, gt, ignore) == (1, 3)
    assert refer_iou.intersection_union(np.zeros((2, 2)), np.zeros((2, 2))) == (0, 0)
    with pytest.raises(ValueError):
        refer_iou.intersection_union(pred, gt[:, :3])


def test_giou_and_ciou_follow_lisa_epsilons_and_empty_rule():
    assert refer_iou.mask_iou(0, 0) == 1.0
    assert refer_iou.mask_iou(1, 2) == 1 / (2 + 1e-5)
    scores = refer_iou.giou_ciou([(1, 2), (0, 0), (3, 4)])
    assert scores["gIoU"] == (1 / (2 + 1e-5) + 1.0 + 3 / (4 + 1e-5)) / (3 + 1e-5)
    assert scores["cIoU"] == 4 / (6 + 1e-10)
    assert scores["count"] == 3


def test_giou_ciou_rejects_empty_and_inconsistent_input():
    with pytest.raises(ValueError, match="no masks"):
        refer_iou.giou_ciou([])
    with pytest.raises(ValueError, match="mask 1"):
        refer_iou.giou_ciou([(0, 1), (3, 2)])


# --------------------------------------------------------------------------- J&F speed benchmark


def test_benchmark_jf_prints_a_row_per_resolution_with_identical_numbers(capsys):
    if not DAVIS_DIR.is_dir():
        pytest.skip(f"DAVIS fixtures not found at {DAVIS_DIR}")
    rows = benchmark_jf.main(["--frames", "2", "--repeats", "1"])
    out = capsys.readouterr().out
    assert [row["resolution"].split()[0] for row in rows] == ["480p", "720p", "1080p"]
    assert all(row["identical"] and row["frames"] == 2 and row["jf_fps"] > 0 for row in rows)
    assert out.count("| yes |") == 3 and "speed-up" in out
