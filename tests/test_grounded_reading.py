"""Ground, then read: a ScanQA answer about one object grounds it (``[GRD]``, the proposal grounding head) and reads
it back (``[READ]`` holds the grounded proposal's object token), in the loader, in training's input assembly and in
generation alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.builder import add_encoders, build_unigr
from model.encoders.proposal_tokens import PROPOSAL_PLACEHOLDER
from tests.test_grounding_head_model import forced_answer_predictor
from tests.test_model import ForceAnswer
from utils.data import scanqa  # noqa: F401  (registers the loaders)
from utils.data.collate import SampleCollator
from utils.data.prompts import GRD_TOKEN, READ_TOKEN
from utils.data.registry import LOADERS
from utils.data.schema import Sample
from utils.scene3d.boxes import box_iou_3d

ENCODERS = {"proposals": {"max_proposals": 24}}


@pytest.fixture(scope="module")
def scanqa_reading(small_rooms: Path):
    return LOADERS["scanqa"].build(small_rooms, "train", num_frames=4, train=False, seed=0, read_object=True)


@pytest.fixture(scope="module")
def read_sample(scanqa_reading) -> Sample:
    """A colour question about one object whose box a proposal matches."""
    for index in range(len(scanqa_reading)):
        sample = scanqa_reading[index]
        if sample.meta.get("read_object") and sample.meta["question_type"] == "what":
            if box_iou_3d(torch.from_numpy(sample.boxes_3d[0]), torch.from_numpy(sample.proposals)).max() >= 0.25:
                return sample
    raise AssertionError("no readable colour question in the rooms")


@pytest.fixture(scope="module")
def reading_model(tiny_parts):
    """``(model, processor)``: tiny UniGR with object tokens and the grounding head, in eval mode."""
    model, processor = build_unigr(tiny_parts["backbone"], None, encoders=ENCODERS, grounding={})
    return model.eval(), processor


def _slots(processor, batch: dict) -> torch.Tensor:
    return (batch["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids(PROPOSAL_PLACEHOLDER)).nonzero()[:, 0]


def _reads(processor, batch: dict) -> torch.Tensor:
    return (batch["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids(READ_TOKEN)).nonzero()[:, 0]


def _embeds(model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model.assemble(batch["input_ids"], batch)[0]


@pytest.mark.parametrize("count_objects", [False, True])
def test_read_object_grounds_one_object_and_counts_in_words_unless_count_objects_grounds_every_counted_one(
    small_rooms: Path, count_objects: bool
) -> None:
    dataset = LOADERS["scanqa"].build(
        small_rooms, "train", num_frames=4, train=False, seed=0, read_object=True, count_objects=count_objects
    )
    kinds = {"one": 0, "count": 0, "words": 0}
    for index in range(len(dataset)):
        sample = dataset[index]
        answer, words = sample.conversation[1]["content"], sample.meta["answers"][0]
        counted = "How many" in sample.conversation[0]["content"]
        if counted and not count_objects:  # a count in words, even of one object: its token holds no count
            assert answer == words and sample.boxes_3d is None
            kinds["words"] += 1
            continue
        assert answer == f"{GRD_TOKEN}{READ_TOKEN} {words}" and len(sample.boxes_3d) == 1
        np.testing.assert_array_equal(sample.boxes_3d[0], sample.meta["gt_boxes"])
        assert sample.grounding_multi == counted  # a count grounds every counted object, multi-target
        assert len(sample.boxes_3d[0]) == (len(sample.meta["object_ids"]) if counted else 1)
        kinds["count" if counted else "one"] += 1
    assert kinds["one"] > 0 and (kinds["count"] > 0) == count_objects and (kinds["words"] > 0) != count_objects
    with pytest.raises(ValueError, match="count_objects reads what read_object grounds"):
        LOADERS["scanqa"].build(small_rooms, "train", num_frames=4, train=False, seed=0, count_objects=True)


def test_a_model_gaining_object_tokens_gains_the_read_token(tiny_parts) -> None:
    model, processor = build_unigr(tiny_parts["backbone"], None)
    assert READ_TOKEN not in processor.tokenizer.get_added_vocab()
    add_encoders(model, processor, ENCODERS)
    read_id = processor.tokenizer.convert_tokens_to_ids(READ_TOKEN)
    assert model.config.placeholder_token_ids[READ_TOKEN] == read_id
    assert processor.tokenizer.encode(READ_TOKEN, add_special_tokens=False) == [read_id]


def test_in_training_read_holds_the_token_of_the_proposal_matching_the_grounded_object(
    reading_model, read_sample
) -> None:
    model, processor = reading_model
    batch = SampleCollator.for_model(model, processor)([read_sample])
    embeds = _embeds(model, batch)
    (read,) = _reads(processor, batch).tolist()
    expected = int(
        box_iou_3d(torch.from_numpy(read_sample.boxes_3d[0]), torch.from_numpy(read_sample.proposals))[0].argmax()
    )
    object_tokens = embeds[0, _slots(processor, batch)]
    torch.testing.assert_close(embeds[0, read], object_tokens[expected])
    assert all(
        not torch.allclose(embeds[0, read], object_tokens[k])
        for k in range(len(read_sample.proposals))
        if k != expected
    )

    encoder = model.input_assembly.encoders["proposals"]
    other = (expected + 1) % len(read_sample.proposals)
    chosen = _embeds(model, {**batch, "read_proposals": [[other]]})
    torch.testing.assert_close(chosen[0, read], object_tokens[other])
    nothing = _embeds(model, {**batch, "read_proposals": [[-1]]})  # grounded nothing: the "no object" embedding
    torch.testing.assert_close(nothing[0, read], encoder.no_object.detach())
    keep = torch.ones(embeds.shape[1], dtype=torch.bool)
    keep[read] = False
    torch.testing.assert_close(chosen[0, keep], embeds[0, keep])  # nothing else moves


def test_training_a_read_answer_reaches_the_head_and_the_object_tokens(tiny_parts, read_sample) -> None:
    model, processor = build_unigr(tiny_parts["backbone"], None, encoders=ENCODERS, grounding={})
    batch = SampleCollator.for_model(model, processor)([read_sample])
    model.train()
    output = model(**batch)
    assert float(output.losses["grd_ce"].detach()) > 0
    output.loss.backward()
    encoder = model.input_assembly.encoders["proposals"]
    assert encoder.appearance_embedding.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.grounding_head.parameters() if p.requires_grad)


class RecordScores(ForceAnswer):
    """:class:`ForceAnswer` that keeps the model's own scores at each step."""

    def __init__(self, answer: list[int], prompt_length: int):
        super().__init__(answer, prompt_length)
        self.scores: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.scores.append(scores.clone())
        return super().__call__(input_ids, scores)


def generate_forced(
    model, processor, sample: Sample, text: str = f"{GRD_TOKEN}{READ_TOKEN} white"
) -> tuple[dict, list[int], RecordScores, object]:
    """``(prompt batch, answer ids, recorded scores, result)`` of generating ``text`` (forced) for ``sample``."""
    batch = SampleCollator.for_model(model, processor, inference=True)([sample])
    answer = processor.tokenizer.encode(f"{text}<|im_end|>", add_special_tokens=False)
    record = RecordScores(answer, batch["input_ids"].shape[1])
    result = model.generate(batch, max_new_tokens=len(answer), logits_processor=[record])
    return batch, answer, record, result


def teacher_forced_logits(model, batch: dict, answer: list[int], **targets) -> torch.Tensor:
    """``(L + N, V)`` logits of the prompt ``batch`` and ``answer`` in one pass, with the read ``targets``."""
    with torch.no_grad():
        sequence = torch.cat([batch["input_ids"], torch.tensor([answer])], dim=1)
        full = {**batch, "input_ids": sequence, "attention_mask": torch.ones_like(sequence)}
        full["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros(1, len(answer)).long()], 1)
        return model(**full, **targets).logits[0]


def assert_steps_match(record: RecordScores, logits: torch.Tensor, prompt_length: int) -> None:
    """Every generated step's scores equal the teacher-forced logits at its position."""
    for step, scores in enumerate(record.scores):
        torch.testing.assert_close(scores[0], logits[prompt_length - 1 + step], atol=1e-4, rtol=1e-4)


def test_generation_reads_what_its_grd_grounded_as_a_teacher_forced_pass_does(reading_model, read_sample) -> None:
    model, processor = reading_model
    batch, answer, record, result = generate_forced(model, processor, read_sample)
    (chosen,) = result.grounding["pred_proposal_ids"][0]
    proposal = int(chosen[0]) if len(chosen) else -1
    # prompt + answer in one pass, [READ] holding the head's choice: every step, the one after [READ] included
    forced = teacher_forced_logits(model, batch, answer, read_proposals=[[proposal]])
    assert_steps_match(record, forced, batch["input_ids"].shape[1])


def test_what_follows_read_changes_with_the_object_the_grd_grounded(reading_model, read_sample, monkeypatch) -> None:
    model, processor = reading_model
    _, _, record, result = generate_forced(model, processor, read_sample)
    (chosen,) = result.grounding["pred_proposal_ids"][0]
    first = int(chosen[0]) if len(chosen) else -1
    other = (first + 1) % len(read_sample.proposals)
    monkeypatch.setattr(
        model,
        "last_grounded",
        lambda grounded, rows, *args: [other if r in rows else g for r, g in enumerate(grounded)],
    )
    _, _, again, _ = generate_forced(model, processor, read_sample)
    torch.testing.assert_close(again.scores[1], record.scores[1])  # before [READ] is fed, nothing differs
    assert not torch.allclose(again.scores[2], record.scores[2])  # the word after [READ] reads another object


def test_the_answer_predictor_scores_a_read_answer_by_its_words(reading_model, read_sample, tmp_path: Path) -> None:
    results = []
    predictor = forced_answer_predictor(*reading_model, tmp_path, f"{GRD_TOKEN}{READ_TOKEN} white", results)
    assert predictor.predict(read_sample)[1] == "white"
    assert results[0].grounding is not None


def test_questions_asked_in_turn_are_grouped_by_kind_of_grounding_and_keep_one_box_set_per_grd(
    small_rooms: Path,
) -> None:
    groups = LOADERS["scanqa"].build(
        small_rooms,
        "train",
        num_frames=4,
        train=True,
        seed=0,
        read_object=True,
        count_objects=True,
        questions_per_sample=4,
    )
    kinds = set()
    for index in range(len(groups)):
        sample = groups[index]
        questions = [turn["content"] for turn in sample.conversation if turn["role"] == "user"]
        counts = [question.find("How many") >= 0 for question in questions]
        assert len(set(counts)) == 1  # counts (multi-target) and one-object questions are never mixed
        assert sample.grounding_multi == counts[0] and len(sample.boxes_3d) == len(questions)
        kinds.add(counts[0])
    assert kinds == {True, False}


COUNTING = {"proposals": {"max_proposals": 24, "count_read": True}}


@pytest.fixture(scope="module")
def count_sample(small_rooms: Path) -> Sample:
    """A count question about several objects, each matched by a proposal."""
    counting = LOADERS["scanqa"].build(
        small_rooms, "train", num_frames=4, train=False, seed=0, read_object=True, count_objects=True
    )
    for index in range(len(counting)):
        sample = counting[index]
        if sample.grounding_multi and len(sample.boxes_3d[0]) > 1:
            iou = box_iou_3d(torch.from_numpy(sample.boxes_3d[0]), torch.from_numpy(sample.proposals))
            if bool((iou.max(dim=1).values >= 0.25).all()):
                return sample
    raise AssertionError("no countable question in the rooms")


@pytest.fixture(scope="module")
def counting_model(tiny_parts):
    model, processor = build_unigr(tiny_parts["backbone"], None, encoders=COUNTING, grounding={})
    return model.eval(), processor


def test_in_training_a_count_read_holds_the_counted_tokens_and_their_number(counting_model, count_sample) -> None:
    model, processor = counting_model
    batch = SampleCollator.for_model(model, processor)([count_sample])
    embeds = _embeds(model, batch)
    (read,) = _reads(processor, batch).tolist()
    counted = box_iou_3d(torch.from_numpy(count_sample.boxes_3d[0]), torch.from_numpy(count_sample.proposals))
    members = counted.argmax(dim=1).tolist()
    encoder = model.input_assembly.encoders["proposals"]
    object_tokens = embeds[0, _slots(processor, batch)]
    expected = object_tokens[members].mean(dim=0) + encoder.count_embedding.weight[len(members)].detach()
    torch.testing.assert_close(embeds[0, read], expected)
    fewer = _embeds(model, {**batch, "read_proposals": [[members[:1]]]})  # one grounded: another count
    torch.testing.assert_close(fewer[0, read], object_tokens[members[0]] + encoder.count_embedding.weight[1].detach())


def test_generation_counts_what_its_grd_grounded_as_a_teacher_forced_pass_does(counting_model, count_sample) -> None:
    model, processor = counting_model
    model.grounding_head.config.threshold = 0.0  # every proposal chosen: a count of all of them
    try:
        text = f"{GRD_TOKEN}{READ_TOKEN} three"
        batch, answer, record, result = generate_forced(model, processor, count_sample, text)
    finally:
        model.grounding_head.config.threshold = 0.5
    (chosen,) = result.grounding["pred_proposal_ids"][0]
    assert len(chosen) == len(count_sample.proposals)
    forced = teacher_forced_logits(model, batch, answer, read_proposals=[[chosen.tolist()]])
    fewer = teacher_forced_logits(model, batch, answer, read_proposals=[[chosen.tolist()[:2]]])
    prompt_length = batch["input_ids"].shape[1]
    assert_steps_match(record, forced, prompt_length)
    assert not torch.allclose(fewer[prompt_length + 1], forced[prompt_length + 1])
