"""ScanRefer, Multi3DRefer, Scan2Cap, ScanQA and SQA3D scores against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.metrics import captions
from evaluation.metrics.captions import NOT_RUN, java_available
from evaluation.metrics.scene3d import (
    _true_positives,
    answer_match,
    multi3drefer_scores,
    normalize_answer,
    scan2cap_scores,
    scanqa_scores,
    scanrefer_scores,
    sqa3d_question_type,
    sqa3d_scores,
)
from utils.scene3d.boxes import box_iou_3d

needs_java = pytest.mark.skipif(not java_available(), reason="java is not on the PATH (METEOR and PTB run jars)")

GT = [0.0, 0.0, 0.0, 2.0, 1.0, 1.0]  # x in [-1, 1], volume 2
IOU_HALF = [0.5, 0.0, 0.0, 1.0, 1.0, 1.0]  # x in [0, 1] inside GT: 1 / 2
IOU_QUARTER = [0.25, 0.0, 0.0, 0.5, 1.0, 1.0]  # x in [0, 0.5]: 0.5 / 2
JUST_BELOW_HALF = [0.5, 0.0, 0.0, 1.0, 1.0, 0.999]  # 0.999 / 2
JUST_BELOW_QUARTER = [0.25, 0.0, 0.0, 0.5, 1.0, 0.999]  # 0.4995 / 2
FAR = [10.0, 10.0, 10.0, 1.0, 1.0, 1.0]


def along_x(low: float, high: float) -> list[float]:
    """A unit-section box spanning ``[low, high]`` on x: IoU of two of them is their 1D interval IoU."""
    return [(low + high) / 2, 0.0, 0.0, high - low, 1.0, 1.0]


@pytest.fixture
def no_java(monkeypatch) -> None:
    """The pure-Python caption metrics only (METEOR 'not run'), whatever the machine has."""
    monkeypatch.setattr(captions, "java_available", lambda: False)


def test_iou_of_axis_aligned_boxes_equals_hand_computed_volumes() -> None:
    cube = np.array([[0, 0, 0, 2, 2, 2]], dtype=float)  # [-1, 1]^3, volume 8
    others = np.array(
        [
            [0, 0, 0, 2, 2, 2],  # the same box: 1
            [1, 1, 1, 2, 2, 2],  # [0, 2]^3: intersection 1, union 8 + 8 - 1
            [2, 0, 0, 2, 2, 2],  # touches a face: 0
            [0, 0, 0, 1, 1, 1],  # inside: 1 / 8
            [5, 5, 5, 1, 1, 1],  # apart: 0
        ],
        dtype=float,
    )
    iou = box_iou_3d(np.concatenate([cube, others[3:4]]), others)
    assert iou.shape == (2, 5)
    np.testing.assert_allclose(iou[0], [1, 1 / 15, 0, 1 / 8, 0])
    # [-0.5, 0.5]^3 against [0, 2]^3: intersection 0.5^3, union 1 + 8 - 0.125
    np.testing.assert_allclose(iou[1], [1 / 8, 0.125 / 8.875, 0, 1, 0])


def test_iou_of_boxes_with_no_volume_is_zero_not_nan() -> None:
    flat = np.array([[0, 0, 0, 1, 1, 0]], dtype=float)
    assert box_iou_3d(flat, flat).tolist() == [[0.0]]


def test_scanrefer_accuracy_per_split_with_misses_and_threshold_edges() -> None:
    records = [
        {"sample_id": "u0", "pred_boxes": GT, "gt_boxes": GT, "unique": True},  # 1
        {"sample_id": "u1", "pred_boxes": [IOU_HALF], "gt_boxes": [GT], "unique": True},  # exactly 0.5
        {"sample_id": "m0", "pred_boxes": IOU_QUARTER, "gt_boxes": GT, "unique": False},  # exactly 0.25
        {"sample_id": "m1", "pred_boxes": JUST_BELOW_HALF, "gt_boxes": GT, "unique": False},  # 0.4995
        {"sample_id": "m2", "pred_boxes": None, "gt_boxes": GT, "unique": False},  # no box: a miss
        {"sample_id": "m3", "pred_boxes": FAR, "gt_boxes": GT, "unique": np.bool_(False)},  # 0
    ]
    row = scanrefer_scores(records)
    assert row == {
        "unique/Acc@0.25": 1.0,
        "unique/Acc@0.5": 1.0,
        "unique/count": 2,
        "multiple/Acc@0.25": 2 / 4,
        "multiple/Acc@0.5": 0.0,
        "multiple/count": 4,
        "overall/Acc@0.25": 4 / 6,
        "overall/Acc@0.5": 2 / 6,
        "overall/count": 6,
        "no_prediction": 1,
    }


def test_an_iou_just_below_the_threshold_is_a_miss() -> None:
    record = {"sample_id": "a", "pred_boxes": JUST_BELOW_QUARTER, "gt_boxes": GT, "unique": True}
    assert scanrefer_scores([record])["overall/Acc@0.25"] == 0.0


def test_a_split_with_no_sample_is_nan_with_count_zero() -> None:
    row = scanrefer_scores([{"sample_id": "a", "pred_boxes": GT, "gt_boxes": GT, "unique": True}])
    assert math.isnan(row["multiple/Acc@0.25"]) and row["multiple/count"] == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pred_boxes": [GT, GT]}, "2 boxes"),
        ({"pred_boxes": [0, 0, 0, 1, 1]}, "shape"),
        ({"pred_boxes": [0, 0, math.nan, 1, 1, 1]}, "non-finite"),
        ({"gt_boxes": [0, 0, 0, 1, -1, 1]}, "negative size"),
        ({"pred_boxes": [[0, 0], [0]]}, "not an array"),
        ({"unique": "yes"}, "'unique'"),
        ({"gt_boxes": None}, "one gt box"),
    ],
)
def test_malformed_scanrefer_records_are_refused_naming_the_sample(change: dict, message: str) -> None:
    record = {"sample_id": "scene0011_00/3/2", "pred_boxes": GT, "gt_boxes": GT, "unique": True, **change}
    with pytest.raises(ValueError, match=message) as raised:
        scanrefer_scores([record])
    assert "scene0011_00/3/2" in str(raised.value)


def test_records_need_unique_ids_and_every_key() -> None:
    record = {"sample_id": "a", "pred_boxes": GT, "gt_boxes": GT, "unique": True}
    with pytest.raises(ValueError, match="appears twice"):
        scanrefer_scores([record, record])
    with pytest.raises(ValueError, match="no 'pred_boxes'"):
        scanrefer_scores([{"sample_id": "a", "pred_box": GT, "gt_boxes": GT, "unique": True}])
    with pytest.raises(ValueError, match="no records"):
        scanrefer_scores([])


def test_hungarian_matching_finds_the_pairing_greedy_matching_misses() -> None:
    g1, g2 = along_x(0.0, 1.0), along_x(0.3, 1.3)
    a, b = along_x(0.1, 1.1), along_x(-0.2, 0.8)
    # IoU: a-g1 0.9/1.1 = 0.818, a-g2 0.8/1.2 = 0.667, b-g1 0.8/1.2 = 0.667, b-g2 0.5/1.5 = 0.333.
    # Greedy takes a-g1 first and leaves b-g2 (< 0.5): F1@0.5 = 2*1/4. Hungarian pairs a-g2, b-g1 (total 1.333).
    record = {"sample_id": "m", "pred_boxes": [a, b], "gt_boxes": [g1, g2], "eval_type": "mt"}
    row = multi3drefer_scores([record])
    assert row["mt/F1@0.5"] == pytest.approx(1.0) and row["mt/F1@0.25"] == pytest.approx(1.0)


def test_matching_maximises_the_total_iou_not_the_pairs_above_the_threshold() -> None:
    # Diagonal total 1.15 beats 0.55 + 0.55, so only one matched pair reaches 0.25 or 0.5 (as M3DRef-CLIP).
    iou = np.array([[0.95, 0.55], [0.55, 0.2]])
    assert _true_positives(iou, (0.25, 0.5)).tolist() == [1, 1]


def test_multi3drefer_f1_per_type_with_zero_targets_and_extra_boxes() -> None:
    g1, g2 = along_x(0.0, 1.0), along_x(0.3, 1.3)
    records = [
        {
            "sample_id": "z0",
            "pred_boxes": [],
            "gt_boxes": [],
            "eval_type": "zt_w_d",
        },  # nothing to find, nothing found: 1
        {"sample_id": "z1", "pred_boxes": [GT], "gt_boxes": None, "eval_type": "zt_wo_d"},  # a box for nothing: 0
        {"sample_id": "s0", "pred_boxes": [GT, FAR], "gt_boxes": [GT], "eval_type": "st_w_d"},  # TP 1: 2/(2+1)
        {"sample_id": "s1", "pred_boxes": [IOU_QUARTER], "gt_boxes": GT, "eval_type": "st_wo_d"},  # 0.25 exactly
        {"sample_id": "m0", "pred_boxes": [g1], "gt_boxes": [g1, g2], "eval_type": "mt"},  # TP 1: 2/(1+2)
    ]
    row = multi3drefer_scores(records)
    expected = {
        "zt_w_d": (1.0, 1.0),
        "zt_wo_d": (0.0, 0.0),
        "st_w_d": (2 / 3, 2 / 3),
        "st_wo_d": (1.0, 0.0),
        "mt": (2 / 3, 2 / 3),
        "overall": ((1 + 0 + 2 / 3 + 1 + 2 / 3) / 5, (1 + 0 + 2 / 3 + 0 + 2 / 3) / 5),
    }
    for name, (at_quarter, at_half) in expected.items():
        assert row[f"{name}/F1@0.25"] == pytest.approx(at_quarter), name
        assert row[f"{name}/F1@0.5"] == pytest.approx(at_half), name
        assert row[f"{name}/count"] == (5 if name == "overall" else 1)


@pytest.mark.parametrize(
    ("eval_type", "gt_boxes", "message"),
    [
        ("zt_w_d", [GT], "zt_w_d with 1 gt"),
        ("st_wo_d", [GT, GT], "st_wo_d with 2 gt"),
        ("mt", [GT], "mt with 1"),
        ("single", [GT], "not one of"),
    ],
)
def test_an_eval_type_that_disagrees_with_the_gt_boxes_is_refused(eval_type: str, gt_boxes: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        multi3drefer_scores([{"sample_id": "a", "pred_boxes": [], "gt_boxes": gt_boxes, "eval_type": eval_type}])


CAPTION_REFS = {"o1": "a brown wooden chair", "o2": "the white table near the wall", "o3": "a tall black lamp"}


def scan2cap_records(wrapped: bool = False) -> list[dict]:
    """o1 hits at both thresholds, o2 at 0.25 only, o3 has no box; o1 and o2 repeat their reference."""
    refs = {key: f"sos {text} eos" if wrapped else text for key, text in CAPTION_REFS.items()}
    return [
        {"sample_id": "o1", "answer": CAPTION_REFS["o1"], "answers": [refs["o1"]], "pred_boxes": GT, "gt_boxes": GT},
        {
            "sample_id": "o2",
            "answer": CAPTION_REFS["o2"],
            "answers": [refs["o2"]],
            "pred_boxes": IOU_QUARTER,
            "gt_boxes": GT,
        },
        {"sample_id": "o3", "answer": None, "answers": [refs["o3"]], "pred_boxes": None, "gt_boxes": GT},
    ]


def rouge_l_of_placeholder(reference_words: int) -> float:
    """ROUGE-L (beta 1.2) of "sos eos" against a wrapped reference: precision 1, recall 2 / (words + 2)."""
    recall = 2 / (reference_words + 2)
    return (1 + 1.2**2) * recall / (recall + 1.2**2)


def test_scan2cap_scores_a_caption_only_where_its_box_hits(no_java) -> None:
    row = scan2cap_scores(scan2cap_records(), tokenizer="none")
    # A caption equal to its only reference: CIDEr 10 (x10 scale), sentence BLEU-4 and ROUGE-L 1; a miss: 0.
    assert row["CIDEr@0.25"] == pytest.approx(20 / 3) and row["CIDEr@0.5"] == pytest.approx(10 / 3)
    for metric in ("BLEU-4", "ROUGE-L"):
        assert row[f"{metric}@0.25"] == pytest.approx(2 / 3, abs=1e-6)
        assert row[f"{metric}@0.5"] == pytest.approx(1 / 3, abs=1e-6)
    assert row["METEOR@0.25"] == NOT_RUN and row["METEOR@0.5"] == NOT_RUN
    assert (row["hits@0.25"], row["hits@0.5"], row["count"]) == (2, 1, 3)


def test_scan2cap_placeholder_mode_gives_misses_the_credit_of_sos_eos(no_java) -> None:
    row = scan2cap_scores(scan2cap_records(), tokenizer="none", misses="placeholder")
    assert row["CIDEr@0.25"] == pytest.approx(20 / 3) and row["CIDEr@0.5"] == pytest.approx(10 / 3)
    assert row["ROUGE-L@0.25"] == pytest.approx((1 + 1 + rouge_l_of_placeholder(4)) / 3)
    assert row["ROUGE-L@0.5"] == pytest.approx((1 + rouge_l_of_placeholder(6) + rouge_l_of_placeholder(4)) / 3)


def test_references_already_written_sos_eos_are_not_wrapped_twice(no_java) -> None:
    plain = scan2cap_scores(scan2cap_records(), tokenizer="none")
    assert scan2cap_scores(scan2cap_records(wrapped=True), tokenizer="none") == plain


def test_scan2cap_refuses_a_box_without_a_caption_and_an_unknown_miss_policy(no_java) -> None:
    records = scan2cap_records()
    records[0]["answer"] = None
    with pytest.raises(ValueError, match="'o1'"):
        scan2cap_scores(records, tokenizer="none")
    with pytest.raises(ValueError, match="misses"):
        scan2cap_scores(scan2cap_records(), tokenizer="none", misses="drop")


@needs_java
def test_scan2cap_runs_ptb_and_meteor_through_java() -> None:
    row = scan2cap_scores(scan2cap_records(), tokenizer="ptb")
    assert row["CIDEr@0.25"] == pytest.approx(20 / 3)  # lower-case texts without punctuation: PTB keeps them
    assert 0.0 < row["METEOR@0.5"] < row["METEOR@0.25"] <= 2 / 3


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The 2 Chairs.", "two chairs"),
        ("  A   red\n chair ;", "red chair"),
        ("it’s a façade", "it's facade"),
        ("at 3 o' clock", "at three o'clock"),
        ("letf of the mat2", "left of mat"),
        ("none", "zero"),
        ("23 backwards", "twenty-three backward"),
        ("the", "the"),
    ],
)
def test_answers_are_normalised_as_leo_cleans_them(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized


@pytest.mark.parametrize(
    ("answer", "references", "em", "refined", "raw"),
    [
        ("The TV.", ["tv"], True, True, False),
        ("chair", ["A chair."], True, True, False),  # the reference is normalised as the answer is
        ("2", ["two"], True, True, False),
        ("chair", ["brown chair", "chair"], True, True, True),  # any reference, not only the first that overlaps
        ("night stand", ["nightstand"], False, True, False),  # spaces are ignored by the refined match
        ("brown wooden chair", ["wooden chair"], False, True, False),  # either text may contain the other
        ("on the left", ["right"], False, False, False),
        (".", ["chair"], False, False, False),  # an empty answer contains nothing
        (" brown chair\n", ["brown chair"], True, True, True),
    ],
)
def test_answer_match_exact_refined_and_raw(answer: str, references: list, em: bool, refined: bool, raw: bool) -> None:
    assert answer_match(answer, references) == {"EM": em, "EM-refined": refined, "EM-raw": raw}


def test_scanqa_scores_normalised_answers_against_several_references(no_java) -> None:
    records = [
        {"sample_id": "q1", "answer": "The brown chair.", "answers": ["brown chair", "a chair"]},
        {"sample_id": "q2", "answer": "three", "answers": ["two"]},
    ]
    row = scanqa_scores(records, tokenizer="none")
    # CIDEr (every n-gram is in one sample's references: weight log 2): q1 against "brown chair" has cosine 1 for
    # n = 1, 2 and no 3- or 4-grams; against "chair" the unigram cosine is 1/sqrt(2), with the Gaussian length
    # penalty of one bigram's difference (sigma 6). Mean over n, over its 2 references, x10; q2 shares nothing.
    unigram = 1 / math.sqrt(2)
    length_penalty = math.exp(-(1**2) / (2 * 6.0**2))
    q1_cider = 10 * (2 + unigram * length_penalty) / 4 / 2
    assert row["CIDEr"] == pytest.approx(q1_cider / 2)
    assert row["BLEU-1"] == pytest.approx(2 / 3, abs=1e-6)  # 2 of 3 words match; lengths 3 and 2 + 1
    assert row["ROUGE-L"] == pytest.approx(0.5)
    assert row["METEOR"] == NOT_RUN
    assert (row["EM"], row["EM-refined"], row["EM-raw"], row["count"]) == (0.5, 0.5, 0.0, 2)


def test_scanqa_refuses_a_record_without_references(no_java) -> None:
    with pytest.raises(ValueError, match="'q1': answers must be a non-empty list"):
        scanqa_scores([{"sample_id": "q1", "answer": "chair", "answers": []}], tokenizer="none")


@pytest.mark.parametrize(
    ("question", "question_type"),
    [
        ("What is on my left?", "what"),
        ("  is the door open?", "is"),
        ("Isn't the lamp on?", "is"),
        ("How many chairs are there?", "how"),
        ("Can I sit down?", "can"),
        ("WHICH way is the door?", "which"),
        ("Where is the sofa?", "others"),
    ],
)
def test_sqa3d_question_type_is_the_type_the_question_starts_with(question: str, question_type: str) -> None:
    assert sqa3d_question_type(question) == question_type


def test_sqa3d_exact_match_per_question_type() -> None:
    records = [
        {"sample_id": "a", "question": "What color is the table?", "answer": "brown", "answers": ["brown"]},
        {"sample_id": "b", "question": "What is behind me?", "answer": "a chair", "answers": ["table"]},
        {"sample_id": "c", "question": "Is the door open?", "answer": "Yes.", "answers": ["yes"]},
        {"sample_id": "d", "question": "What...", "question_type": "can", "answer": "no", "answers": ["yes"]},
        {"sample_id": "e", "question_type": np.int64(4), "answer": "left", "answers": ["left"]},  # index: which
    ]
    row = sqa3d_scores(records)
    assert (row["what/EM"], row["what/count"]) == (0.5, 2)
    assert (row["is/EM"], row["is/EM-raw"], row["is/count"]) == (1.0, 0.0, 1)
    assert (row["can/EM"], row["can/count"], row["which/EM"], row["which/count"]) == (0.0, 1, 1.0, 1)
    assert math.isnan(row["how/EM"]) and row["how/count"] == 0 and row["others/count"] == 0
    assert (row["overall/EM"], row["overall/EM-refined"], row["overall/EM-raw"]) == (3 / 5, 3 / 5, 2 / 5)


@pytest.mark.parametrize(("change", "message"), [({"question_type": "why"}, "question_type 'why'"), ({}, "'question'")])
def test_sqa3d_needs_a_known_type_or_a_question(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sqa3d_scores([{"sample_id": "a", "answer": "yes", "answers": ["yes"], **change}])
