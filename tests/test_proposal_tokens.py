"""The proposal encoder: one token per 3D object proposal appended after a scene's video (Chat-Scene style), built
from the proposal's pixels, colours, class name and box, in the input-assembly seam."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from model.builder import build_unigr, load_unigr
from model.encoders.proposal_tokens import (
    PROPOSAL_PLACEHOLDER,
    ProposalTokenEncoder,
    named_classes,
    unit_over_scene,
)
from utils.data import scanqa  # noqa: F401  (registers the loaders)
from utils.data.collate import SampleCollator
from utils.data.registry import LOADERS
from utils.data.schema import Sample
from utils.scene3d.proposal_views import APPEARANCE_DIM

MAX_PROPOSALS = 24


@pytest.fixture(scope="module")
def scanqa_sample(small_rooms: Path) -> Sample:
    return LOADERS["scanqa"].build(small_rooms, "train", num_frames=4, train=False, seed=0)[0]


@pytest.fixture(scope="module")
def proposal_model(tiny_parts):
    """``(model, processor)``: tiny UniGR with the proposal encoder, in eval mode."""
    model, processor = build_unigr(tiny_parts["backbone"], None, encoders={"proposals": {"max_proposals": 24}})
    return model.eval(), processor


def _embeds(model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model.assemble(batch["input_ids"], batch)[0]


def _slots(processor, batch: dict) -> torch.Tensor:
    return (batch["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids(PROPOSAL_PLACEHOLDER)).nonzero()[:, 0]


def test_a_scene_sample_gets_max_proposals_placeholders_right_after_its_video(proposal_model, scanqa_sample) -> None:
    model, processor = proposal_model
    batch = SampleCollator.for_model(model, processor)([scanqa_sample])
    slots = _slots(processor, batch)
    video = (batch["input_ids"][0] == model.backbone.config.video_token_id).nonzero()[:, 0]
    assert len(slots) == MAX_PROPOSALS
    assert int(slots[0]) == int(video[-1]) + 2  # after <|vision_end|>
    assert torch.equal(slots, torch.arange(int(slots[0]), int(slots[0]) + MAX_PROPOSALS))
    assert "proposal_views" in batch and "proposal_label_ids" in batch


def test_each_proposal_token_follows_its_own_class_name_and_padding_slots_are_no_object(
    proposal_model, scanqa_sample
) -> None:
    model, processor = proposal_model
    collate = SampleCollator.for_model(model, processor)
    embeds = _embeds(model, collate([scanqa_sample]))
    slots = _slots(processor, collate([scanqa_sample]))
    labels = list(scanqa_sample.proposal_labels)
    count = len(labels)
    renamed = dataclasses.replace(
        scanqa_sample, proposal_labels=["sofa" if labels[0] != "sofa" else "lamp"] + labels[1:]
    )
    changed = _embeds(model, collate([renamed]))
    differs = (changed[0, slots] - embeds[0, slots]).abs().amax(dim=1) > 1e-6
    assert differs.tolist() == [True] + [False] * (MAX_PROPOSALS - 1)
    encoder = model.input_assembly.encoders["proposals"]
    identifiers = encoder.identifier_embedding.weight
    expected = (encoder.no_object + identifiers[count:] - identifiers.mean(dim=0)).detach()
    torch.testing.assert_close(embeds[0, slots[count:]], expected)
    placeholder = model.get_input_embeddings().weight[int(collate([scanqa_sample])["input_ids"][0, slots[0]])]
    assert not torch.allclose(embeds[0, slots[0]], placeholder)


def standalone_encoder(max_proposals: int) -> tuple[ProposalTokenEncoder, torch.Tensor]:
    """A seeded width-16 encoder and three boxes ``(3, 6)`` of different sizes and places."""
    torch.manual_seed(0)
    encoder = ProposalTokenEncoder(16, max_proposals=max_proposals)
    encoder.reset_new_parameters(0.02)
    boxes = torch.tensor(
        [[1.0, 2.0, 0.5, 0.5, 0.5, 1.0], [3.0, 1.0, 0.4, 1.5, 1.0, 0.8], [2.0, 4.0, 0.6, 2.0, 1.5, 0.6]]
    )
    return encoder, boxes


def test_box_inputs_are_relative_to_the_scene_so_moving_every_proposal_changes_no_box_input() -> None:
    encoder, boxes = standalone_encoder(max_proposals=6)
    states, weights = torch.randn(10, 16), torch.rand(3, 10)
    appearance, names = torch.rand(3, APPEARANCE_DIM), torch.randn(3, 16)
    tokens = encoder.proposal_tokens(states, boxes, weights, appearance, names)
    moved = boxes + torch.tensor([5.0, -2.0, 0.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(encoder.proposal_tokens(states, moved, weights, appearance, names), tokens)
    swapped = boxes.clone()
    swapped[0, 3:] = torch.tensor([2.0, 2.0, 2.0])
    assert not torch.allclose(encoder.proposal_tokens(states, swapped, weights, appearance, names)[0], tokens[0])
    assert tokens.shape == (6, 16)


def test_a_scene_with_more_proposals_than_slots_is_an_error_naming_the_sample(tiny_parts, scanqa_sample) -> None:
    model, processor = build_unigr(tiny_parts["backbone"], None, encoders={"proposals": {"max_proposals": 3}})
    batch = SampleCollator.for_model(model, processor)([scanqa_sample])
    with pytest.raises(ValueError, match=r"sample 0: the scene has \d+ proposals but the proposal encoder holds 3"):
        model.assemble(batch["input_ids"], batch)


def test_a_text_only_prompt_has_no_proposal_tokens_and_runs(proposal_model, scanqa_sample) -> None:
    model, processor = proposal_model
    collator = SampleCollator(
        processor, None, inference=True, media=False, after_visual=model.input_assembly.after_visual_text()
    )
    batch = collator([scanqa_sample])
    assert len(_slots(processor, batch)) == 0
    with torch.no_grad():
        assert model(**batch).logits.shape[1] == batch["input_ids"].shape[1]


def test_training_reaches_every_encoder_parameter(tiny_parts, scanqa_sample) -> None:
    model, processor = build_unigr(tiny_parts["backbone"], None, encoders={"proposals": {"max_proposals": 24}})
    batch = SampleCollator.for_model(model, processor)([scanqa_sample])
    model.train()
    model(**batch).loss.backward()
    encoder = model.input_assembly.encoders["proposals"]
    missing = [name for name, p in encoder.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []


def test_a_saved_model_with_the_encoder_loads_back_with_the_same_tokens(
    proposal_model, scanqa_sample, tmp_path: Path
) -> None:
    model, processor = proposal_model
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    loaded, loaded_processor = load_unigr(tmp_path / "m")
    batch = SampleCollator.for_model(model, processor)([scanqa_sample])
    again = SampleCollator.for_model(loaded.eval(), loaded_processor)([scanqa_sample])
    assert torch.equal(batch["input_ids"], again["input_ids"])
    torch.testing.assert_close(_embeds(loaded, again), _embeds(model, batch))


def test_a_shift_every_object_shares_cannot_reach_the_tokens_and_each_feature_term_has_unit_length() -> None:
    encoder, boxes = standalone_encoder(max_proposals=5)
    inputs = (torch.randn(10, 16), boxes, torch.rand(3, 10), torch.rand(3, APPEARANCE_DIM), None)
    tokens = encoder.proposal_tokens(*inputs)
    with torch.no_grad():
        encoder.mlp[3].bias += 10.0  # what Adam's drift did to a free output shift
        encoder.appearance_embedding.bias += 10.0
        encoder.identifier_embedding.weight += 3.0
    torch.testing.assert_close(encoder.proposal_tokens(*inputs), tokens, atol=2e-4, rtol=1e-3)  # float32 rounding
    features = unit_over_scene(torch.randn(3, 16) * 50 + 7)
    torch.testing.assert_close(features.norm(dim=1), torch.ones(3), atol=1e-2, rtol=0)  # up to the norm eps


def test_with_question_match_the_objects_the_question_names_carry_the_named_vector(tiny_parts, scanqa_sample) -> None:
    encoders = {"proposals": {"max_proposals": 24, "question_match": True}}
    model, processor = build_unigr(tiny_parts["backbone"], None, encoders=encoders)
    model.eval()
    collate = SampleCollator.for_model(model, processor)
    labels = list(scanqa_sample.proposal_labels)
    named, other = labels[0], next(label for label in labels if label != labels[0])

    def tokens(question: str) -> torch.Tensor:
        turns = [{"role": "user", "content": question}, scanqa_sample.conversation[1]]
        batch = collate([dataclasses.replace(scanqa_sample, conversation=turns)])
        assert "question_mask" in batch
        return _embeds(model, batch)[0, _slots(processor, batch)][: len(labels)]

    encoder = model.input_assembly.encoders["proposals"]
    direction = torch.nn.functional.normalize(encoder.named_embedding.detach(), dim=0)
    first, second = tokens(f"What colour is the {named}?"), tokens(f"What colour is the {other}?")
    along = (first - second) @ direction  # (P,): the named vector moved from one class's objects to the other's
    for label, shift in zip(labels, along.tolist()):
        if label == named:
            assert shift > 0.5
        elif label == other:
            assert shift < -0.5
    unchanged = torch.tensor([label not in (named, other) for label in labels])
    spread = (first - second)[unchanged] - (first - second)[unchanged].mean(0)  # only the centring moves the rest
    assert spread.abs().max() < 1e-5


def test_a_class_is_named_where_its_tokens_occur_in_a_row_in_the_question() -> None:
    question = [7, 3, 4, 5, 9, 3, 4]
    labels = [[3, 4, 5], [4, 5, -1], [3, 5, -1], [9, -1, -1], [-1, -1, -1]]
    assert named_classes(question, labels).tolist() == [1.0, 1.0, 0.0, 1.0, 0.0]


def test_question_match_refuses_a_batch_without_the_question_mask(tiny_parts, scanqa_sample) -> None:
    encoders = {"proposals": {"max_proposals": 24, "question_match": True}}
    model, processor = build_unigr(tiny_parts["backbone"], None, encoders=encoders)
    batch = SampleCollator.for_model(model, processor)([scanqa_sample])
    del batch["question_mask"]
    with pytest.raises(ValueError, match="question_mask"):
        _embeds(model.eval(), batch)
