"""Location tokens (model/location_tokens.py): one token per grid value, same text, embeddings that point at their
place, kept through save and load."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from model.builder import load_unigr
from model.location_tokens import LOCATION_TOKENS, add_location_tokens, location_codes


@pytest.fixture(scope="module")
def with_tokens(tiny_model):
    model, processor = copy.deepcopy(tiny_model[0]), copy.deepcopy(tiny_model[1])
    ids = add_location_tokens(model, processor.tokenizer)
    return model, processor, ids


def test_each_grid_value_is_one_token_and_the_text_is_unchanged(with_tokens) -> None:
    _, processor, ids = with_tokens
    text = "{<0><5><100><99>}{<17><34><56><78>}"
    encoded = processor.tokenizer(text)["input_ids"]
    assert len(encoded) == 2 * 6
    assert encoded[1:5] == [ids[0], ids[5], ids[100], ids[99]]
    assert processor.tokenizer.decode(encoded) == text
    assert processor.tokenizer.decode(processor.tokenizer("where is <the> cup <1x>?")["input_ids"]) == (
        "where is <the> cup <1x>?"
    )


def test_the_output_embedding_closest_to_a_places_code_is_that_place(with_tokens) -> None:
    model, _, ids = with_tokens
    rows = model.backbone.get_output_embeddings().weight[ids]
    scores = location_codes(rows.shape[1]) @ rows.T  # (101 places, 101 tokens)
    assert scores.argmax(-1).tolist() == list(range(len(LOCATION_TOKENS)))
    old = model.backbone.get_input_embeddings().weight[: min(ids)]
    new = model.backbone.get_input_embeddings().weight[ids]
    torch.testing.assert_close(new.norm(dim=-1).mean(), old.norm(dim=-1).mean(), rtol=1e-3, atol=1e-4)


def test_location_tokens_survive_save_and_load(with_tokens, tmp_path: Path) -> None:
    model, processor, ids = with_tokens
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = load_unigr(tmp_path)
    assert loaded_processor.tokenizer.convert_tokens_to_ids(list(LOCATION_TOKENS)) == ids
    torch.testing.assert_close(
        loaded.backbone.get_output_embeddings().weight[ids], model.backbone.get_output_embeddings().weight[ids]
    )


def test_adding_them_twice_is_an_error(with_tokens) -> None:
    model, processor, _ = with_tokens
    with pytest.raises(ValueError, match="already has location tokens"):
        add_location_tokens(model, processor.tokenizer)
