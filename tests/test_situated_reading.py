"""Situated reading (SQA3D): ``[SIT]`` locates the speaker by pointing at two proposals (the grounding head's
situation), and a later ``[READ]`` holds where its object lies as seen from there; in the annotations, the loader,
training's input assembly and generation alike."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from model.builder import build_unigr
from model.encoders.proposal_tokens import situated_features
from model.heads.proposal_grounding import ProposalGroundingHead, pose_from_proposals, situation_targets
from model.visual_tokens import visual_layouts
from scripts import probe_grounded_answers
from tests.test_grounded_reading import _embeds, _reads, assert_steps_match, generate_forced, teacher_forced_logits
from tests.test_grounding_head_model import forced_answer_predictor
from utils.data import scanqa  # noqa: F401  (registers the loaders)
from utils.data.collate import SampleCollator
from utils.data.prompts import GRD_TOKEN, READ_TOKEN, SIT_TOKEN
from utils.data.registry import LOADERS
from utils.data.scanqa import SQA3D_ANNOTATIONS_FILE, aligned_pose, situation_pose
from utils.data.schema import Sample
from utils.scene3d.boxes import box_iou_3d

ENCODERS = {"proposals": {"max_proposals": 24, "situated": True}}
SITUATED_ANSWER = f"{GRD_TOKEN}{READ_TOKEN} left"


@pytest.fixture(scope="module")
def sqa3d_situated(small_rooms: Path):
    return LOADERS["sqa3d"].build(small_rooms, "train", num_frames=4, train=False, seed=0, situated=True)


@pytest.fixture(scope="module")
def side_sample(sqa3d_situated) -> Sample:
    """A left/right question whose object and whose situation's two objects proposals match."""
    for index in range(len(sqa3d_situated)):
        sample = sqa3d_situated[index]
        if "left or my right" not in sample.meta["question"] or sample.boxes_3d is None:
            continue
        proposals = torch.from_numpy(sample.proposals)
        if box_iou_3d(torch.from_numpy(sample.boxes_3d[0]), proposals).max() >= 0.25:
            return sample
    raise AssertionError("no situated left/right question in the rooms")


@pytest.fixture(scope="module")
def situated_model(tiny_parts):
    """``(model, processor)``: tiny UniGR with situated object tokens and the head's situation, in eval mode."""
    model, processor = build_unigr(tiny_parts["backbone"], None, encoders=ENCODERS, grounding={"situation": True})
    return model.eval(), processor


def _quaternion(heading: float) -> dict:
    return {"_x": 0.0, "_y": 0.0, "_z": math.sin(heading / 2), "_w": math.cos(heading / 2)}


def test_a_situation_pose_reads_the_heading_of_the_annotation_quaternion() -> None:
    item = {"position": {"x": 1.0, "y": -2.0, "z": 0.0}, "rotation": _quaternion(math.pi / 2)}
    np.testing.assert_allclose(situation_pose(item, "a.json[0]"), [1.0, -2.0, 0.0, math.pi / 2], atol=1e-9)
    assert situation_pose({}, "a.json[0]") is None
    with pytest.raises(ValueError, match=r"a.json\[3\]: 'position' must be"):
        situation_pose({"position": {"x": 1.0}, "rotation": _quaternion(0.0)}, "a.json[3]")


def test_an_aligned_pose_moves_the_position_and_turns_the_heading_with_the_scene() -> None:
    turn = np.eye(4)
    turn[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]  # a quarter turn anticlockwise
    turn[:3, 3] = [0.5, 0.0, 0.0]
    np.testing.assert_allclose(aligned_pose(np.array([1.0, 0.0, 0.0, 0.0]), turn), [0.5, 1.0, 0.0, math.pi / 2])


def test_situation_targets_are_the_nearest_proposal_and_the_one_straight_ahead() -> None:
    proposals = torch.tensor(
        [
            [0.0, 0.0, 0.5, 1, 1, 1],  # under the speaker
            [3.0, 0.1, 0.5, 1, 1, 1],  # ahead (+x)
            [0.0, 2.0, 0.5, 1, 1, 1],  # to the left
            [-2.0, 0.0, 0.5, 1, 1, 1],  # behind
        ]
    )
    assert situation_targets(torch.tensor([0.1, 0.0, 0.0, 0.0]), proposals) == (0, 1)
    assert situation_targets(torch.tensor([0.1, 0.0, 0.0, math.pi / 2]), proposals) == (0, 2)
    assert situation_targets(torch.tensor([0.0, 0.0, 0.0, 0.0]), proposals[:1]) is None
    pose = pose_from_proposals(0, 2, proposals)
    torch.testing.assert_close(pose, torch.tensor([0.0, 0.0, 0.5, math.pi / 2]))
    assert situation_targets(pose, proposals) == (0, 2)  # a rebuilt pose points at the same proposals


def test_the_situated_sine_says_left_exactly_where_the_synthetic_answer_does(small_rooms: Path) -> None:
    questions = json.loads((small_rooms / "v1_balanced_questions_train_scannetv2.json").read_text())["questions"]
    annotations = json.loads((small_rooms / SQA3D_ANNOTATIONS_FILE.format(split="train")).read_text())["annotations"]
    checked = 0
    for question, annotation in zip(questions, annotations):
        if "left or my right" not in question["question"]:
            continue
        scene = np.load(small_rooms / "scenes" / annotation["scene_id"] / "objects.npz")
        (row,) = np.flatnonzero(scene["object_ids"] == annotation["object_ids"][0])
        pose = torch.from_numpy(situation_pose(annotation, "test"))
        sine = float(situated_features(torch.from_numpy(scene["boxes"][row, :3]), pose)[1])
        assert (sine > 0) == (annotation["answers"][0]["answer"] == "left")
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("count_objects", [False, True])
def test_situated_sqa3d_closes_the_situation_with_sit_then_grounds_and_reads_with_the_pose_as_a_target(
    small_rooms: Path, count_objects: bool
) -> None:
    dataset = LOADERS["sqa3d"].build(
        small_rooms, "train", num_frames=4, train=False, seed=0, situated=True, count_objects=count_objects
    )
    kinds = {"one": 0, "count": 0, "located": 0}
    for index in range(len(dataset)):
        sample = dataset[index]
        answer, words = sample.conversation[1]["content"], sample.meta["answers"][0]
        assert f"{sample.meta['situation']} {SIT_TOKEN} {sample.meta['question']}" in sample.conversation[0]["content"]
        assert len(sample.situations) == 1
        np.testing.assert_allclose(sample.situations[0], sample.meta["pose"], atol=1e-6)
        counted = sample.meta["question"].startswith("How many")
        if counted and not count_objects:  # located, then a count in words, even of one object
            assert answer == words and sample.boxes_3d is None
            kinds["located"] += 1
            continue
        assert answer == f"{GRD_TOKEN}{READ_TOKEN} {words}" and len(sample.boxes_3d) == 1
        assert sample.grounding_multi == counted  # a count grounds every counted object
        kinds["count" if counted else "one"] += 1
    assert kinds["one"] > 0 and (kinds["count"] > 0) == count_objects and (kinds["located"] > 0) != count_objects


def test_plain_sqa3d_has_no_situation_target_though_its_annotation_has_a_pose(
    small_rooms: Path, situated_model
) -> None:
    dataset = LOADERS["sqa3d"].build(small_rooms, "train", num_frames=4, train=False, seed=0)
    samples = [dataset[index] for index in range(4)]
    assert all("pose" in sample.meta and SIT_TOKEN not in sample.conversation[0]["content"] for sample in samples)
    assert all(sample.situations is None and sample.boxes_3d is None for sample in samples)
    batch = SampleCollator.for_model(*situated_model)(samples)  # trains as the quick start's stage 2 does
    assert "gt_situations" not in batch and "gt_boxes_3d" not in batch


def test_situated_without_a_pose_is_an_error_and_without_an_object_answers_in_words(
    small_rooms: Path, tmp_path: Path
) -> None:
    root = tmp_path / "rooms"
    root.mkdir()
    for path in small_rooms.iterdir():
        (root / path.name).symlink_to(path)
    name = SQA3D_ANNOTATIONS_FILE.format(split="train")
    data = json.loads((small_rooms / name).read_text())
    del data["annotations"][0]["position"], data["annotations"][0]["rotation"]
    del data["annotations"][1]["object_ids"]  # SQA3D's own release names no object
    (root / name).unlink()
    (root / name).write_text(json.dumps(data))
    dataset = LOADERS["sqa3d"].build(root, "train", num_frames=4, train=False, seed=0, situated=True)
    with pytest.raises(ValueError, match=rf"{name}.*situated needs the annotation's 'position' and 'rotation'"):
        dataset[0]
    sample = dataset[1]
    assert sample.conversation[1]["content"] == sample.meta["answers"][0]
    assert SIT_TOKEN in sample.conversation[0]["content"]
    assert sample.boxes_3d is None and len(sample.situations) == 1


def test_the_collator_gives_one_pose_per_sit_and_refuses_a_count_mismatch(situated_model, side_sample) -> None:
    model, processor = situated_model
    collate = SampleCollator.for_model(model, processor)
    batch = collate([side_sample])
    torch.testing.assert_close(batch["gt_situations"][0][0], torch.from_numpy(side_sample.situations[0]))
    assert "gt_situations" not in SampleCollator.for_model(model, processor, inference=True)([side_sample])
    broken = Sample(**{**side_sample.__dict__, "situations": None})
    message = rf"{side_sample.sample_id}: no situations entries for 1 \[SIT\] in its user / assistant turns"
    with pytest.raises(ValueError, match=message):
        collate([broken])


def test_in_training_read_after_sit_holds_the_object_seen_from_the_target_pose(situated_model, side_sample) -> None:
    model, processor = situated_model
    batch = SampleCollator.for_model(model, processor)([side_sample])
    embeds = _embeds(model, batch)
    (read,) = _reads(processor, batch).tolist()
    proposals = torch.from_numpy(side_sample.proposals)
    target = int(box_iou_3d(torch.from_numpy(side_sample.boxes_3d[0]), proposals)[0].argmax())
    pose = pose_from_proposals(*situation_targets(batch["gt_situations"][0][0], proposals), proposals)
    encoder = model.input_assembly.encoders["proposals"]
    expected = encoder.situated_embedding(situated_features(proposals[target, :3], pose)).detach()
    slots = (batch["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids("<proposal>")).nonzero()[:, 0]
    torch.testing.assert_close(embeds[0, read], embeds[0, slots][target] + expected)
    turned = batch["gt_situations"][0][0].clone()
    turned[3] += math.pi  # facing the other way: the object swaps sides
    flipped = _embeds(model, {**batch, "gt_situations": [[turned]]})
    assert not torch.allclose(flipped[0, read], embeds[0, read])
    keep = torch.ones(embeds.shape[1], dtype=torch.bool)
    keep[read] = False
    torch.testing.assert_close(flipped[0, keep], embeds[0, keep])  # nothing but the [READ] moves


def test_training_a_situated_answer_reaches_the_situation_queries_and_the_situated_embedding(
    tiny_parts, side_sample
) -> None:
    model, processor = build_unigr(tiny_parts["backbone"], None, encoders=ENCODERS, grounding={"situation": True})
    batch = SampleCollator.for_model(model, processor)([side_sample])
    model.train()
    output = model(**batch)
    assert float(output.losses["sit_ce"].detach()) > 0 and float(output.losses["grd_ce"].detach()) > 0
    output.loss.backward()
    assert model.input_assembly.encoders["proposals"].situated_embedding.weight.grad.abs().sum() > 0
    for part in ("stand", "face"):  # the part's map of the [SIT] query and its own text read
        for name in ("proj", "query", "key"):
            assert model.grounding_head.situation[part][name].weight.grad.abs().sum() > 0


def test_the_situation_logits_change_with_the_situation_text(situated_model, side_sample) -> None:
    model, processor = situated_model
    other = Sample(**side_sample.__dict__)
    question = side_sample.conversation[0]["content"]
    situation = side_sample.meta["situation"]
    swapped = situation.replace("standing next to", "standing far from")
    user = {"role": "user", "content": question.replace(situation, swapped)}
    other.conversation = [user, side_sample.conversation[1]]
    logits = []
    for sample in (side_sample, other):
        batch = SampleCollator.for_model(model, processor)([sample])
        hidden = model(**batch).last_hidden_state
        outputs = model.grounding_head.predict(hidden, batch["input_ids"], {**batch, "input_embeddings": None})
        assert outputs["situation_logits"][0].shape == (1, 2, len(side_sample.proposals))
        logits.append(outputs["situation_logits"][0])
    assert not torch.allclose(logits[0], logits[1])


def test_generation_reads_from_the_pose_its_sit_gave_as_a_teacher_forced_pass_does(situated_model, side_sample) -> None:
    model, processor = situated_model
    batch, answer, record, result = generate_forced(model, processor, side_sample, SITUATED_ANSWER)
    (pose,) = result.situations[0]
    (chosen,) = result.grounding["pred_proposal_ids"][0]
    proposal = int(chosen[0]) if len(chosen) else -1
    # prompt + answer in one pass, [READ] holding the head's choice seen from its pose
    forced = teacher_forced_logits(model, batch, answer, read_proposals=[[proposal]], gt_situations=[[pose]])
    prompt_length = batch["input_ids"].shape[1]
    assert_steps_match(record, forced, prompt_length)
    turned = pose + torch.tensor([0, 0, 0, math.pi])  # facing the other way: proposal 0 seen from elsewhere
    first = teacher_forced_logits(model, batch, answer, read_proposals=[[0]], gt_situations=[[pose]])
    other = teacher_forced_logits(model, batch, answer, read_proposals=[[0]], gt_situations=[[turned]])
    assert not torch.allclose(other[prompt_length + 1], first[prompt_length + 1])  # what follows [READ]


def test_the_answer_predictor_scores_a_situated_answer_by_its_words(
    situated_model, side_sample, tmp_path: Path
) -> None:
    results = []
    predictor = forced_answer_predictor(*situated_model, tmp_path, SITUATED_ANSWER, results)
    assert predictor.predict(side_sample)[1] == "left"
    assert results[0].situations is not None and results[0].situations[0].shape == (1, 4)


def test_each_query_reads_the_text_since_the_query_before_it() -> None:
    text = torch.tensor([1, 2, 3, 5, 6, 8, 9])
    marks = torch.tensor([4, 7, 10])  # e.g. a [SIT] closing a situation, then two [GRD]
    reads = ProposalGroundingHead.reads_since_previous(text, marks, marks)
    assert reads.tolist() == [
        [True, True, True, False, False, False, False],
        [False, False, False, True, True, False, False],
        [False, False, False, False, False, True, True],
    ]


def test_the_sit_reads_the_situation_and_the_grd_after_it_reads_the_question(situated_model, side_sample) -> None:
    model, processor = situated_model
    batch = SampleCollator.for_model(model, processor)([side_sample])
    head, ids = model.grounding_head, batch["input_ids"]
    queries = (ids == head.grd_token_id) | (ids == head.sit_token_id)
    layouts = visual_layouts(ids, batch, head.visual_tokens)
    text = head.text_positions(ids, queries, layouts, batch["attention_mask"], batch["labels"])[0].nonzero()[:, 0]
    marks = queries[0].nonzero()[:, 0]
    reads = head.reads_since_previous(text, marks, marks)  # the [SIT] of the prompt, then the answer's [GRD]
    sit_text, grd_text = (processor.tokenizer.decode(ids[0, text[row]]) for row in reads)
    assert side_sample.meta["situation"] in sit_text and side_sample.meta["question"] not in sit_text
    assert side_sample.meta["question"] in grd_text and side_sample.meta["situation"] not in grd_text


def test_the_situation_probe_counts_each_pointer_per_question_type(situated_model, small_rooms, tmp_path, capsys):
    model, processor = situated_model
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    counts = probe_grounded_answers.probe(str(tmp_path / "model"), str(small_rooms), "train", num_frames=4, limit=8)
    assert sum(row["questions"] for row in counts.values()) > 0
    for row in counts.values():
        assert row["stand"] <= row["questions"] and row["face"] <= row["questions"]
        assert row["grounded"] <= row["questions"] and max(row["object"], row["read"]) <= row["grounded"]
    probe_grounded_answers.main(
        ["--model", str(tmp_path / "model"), "--data-root", str(small_rooms), "--split", "train"]
        + ["--num-frames", "4", "--limit", "4"]
    )
    assert "| question | questions | stand found |" in capsys.readouterr().out


def test_the_scanqa_probe_counts_grounded_and_read_answers_per_question_form(
    situated_model, small_rooms, tmp_path, capsys
):
    model, processor = situated_model
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    counts = probe_grounded_answers.probe(
        str(tmp_path / "model"), str(small_rooms), "train", num_frames=4, limit=12, benchmark="scanqa"
    )
    forms = set(counts)
    assert forms and all(len(form.split()) == 2 for form in forms)
    assert any(row["grounded"] > 0 for row in counts.values())  # the colour / neighbour questions ground one object
    for row in counts.values():
        assert row["stand"] == row["face"] == 0
        assert row["grounded"] <= row["questions"] and max(row["object"], row["read"]) <= row["grounded"]
    probe_grounded_answers.main(
        ["--benchmark", "scanqa", "--model", str(tmp_path / "model"), "--data-root", str(small_rooms)]
        + ["--split", "train", "--num-frames", "4", "--limit", "4"]
    )
    out = capsys.readouterr().out
    assert "| question | questions | about one object |" in out and "stand found" not in out


def test_the_probe_reads_a_word_right_only_when_each_of_its_tokens_is():
    class Tokenizer:
        pieces = {0: "[READ]", 1: " ", 2: "w", 3: "h", 4: "ite", 5: " red", 6: "<end>"}

        def decode(self, ids: list[int]) -> str:
            return "".join(self.pieces[i] for i in ids)

    processor = type("Processor", (), {"tokenizer": Tokenizer()})()
    input_ids = torch.tensor([0, 1, 2, 3, 4, 6])  # [READ] " " "w" "h" "ite": "white" is four tokens
    logits = torch.full((6, 7), -1.0)
    logits[torch.arange(5), input_ids[1:]] = 1.0  # each position predicts the next token
    assert probe_grounded_answers.read_word_right(logits, input_ids, 0, "white", processor)
    logits[2, 3], logits[2, 5] = -1.0, 2.0  # "w" followed by " red" instead of "h"
    assert not probe_grounded_answers.read_word_right(logits, input_ids, 0, "white", processor)
    with pytest.raises(ValueError, match="does not begin with 'red'"):
        probe_grounded_answers.read_word_right(logits, input_ids, 0, "red", processor)
