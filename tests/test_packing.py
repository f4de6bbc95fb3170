"""Sequence packing: samples back to back in one row give each sample exactly what it gets alone (its logits and its
loss), with and without the GSM geometry tokens, and through ``train.py``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import train
from model.builder import build_unigr
from tests.conftest import QUICKSTART
from tests.test_geometry_encoder import _image, _video, gsm_model, pi3_checkpoint  # noqa: F401  (fixtures)
from utils.data.collate import SampleCollator
from utils.data.packing import PackingCollator, pack_batch, pack_rows
from utils.data.schema import Sample
from utils.synthetic.dynamic_formats import generate_split


def _asked(seed: int, words: int, **video) -> Sample:
    """A video sample whose question has ``words`` more words (samples of different lengths)."""
    return _video(seed, question="Which shape moves " + "left " * words + "?", **video)


@pytest.fixture(scope="module")
def plain_model(tiny_parts):
    torch.manual_seed(0)
    model, processor = build_unigr(tiny_parts["backbone"], None)
    return model.eval(), processor


def test_rows_fill_greedily_in_order_and_a_long_sample_gets_its_own_row() -> None:
    assert pack_rows([3, 4, 2, 9, 1, 1], 8) == [[0, 1], [2], [3], [4, 5]]
    assert pack_rows([5, 5, 5], 100) == [[0, 1, 2]]
    with pytest.raises(ValueError, match="positive"):
        pack_rows([1], 0)


def _per_sample_logits(model, batch: dict) -> list[torch.Tensor]:
    """Each sample's logits over its own tokens, from an unpacked (one per row) or a packed batch."""
    with torch.no_grad():
        logits = model(**batch).logits
    if "packed_segments" not in batch:
        lengths = batch["attention_mask"].sum(1).tolist()
        return [logits[row, :length] for row, length in enumerate(lengths)]
    return [logits[row, start:end] for row, spans in enumerate(batch["packed_segments"]) for start, end in spans]


@pytest.mark.parametrize("model_name", ["plain_model", "gsm_model"])
def test_a_packed_batch_gives_every_sample_its_own_logits_and_the_same_loss(model_name: str, request) -> None:
    model, processor = request.getfixturevalue(model_name)
    samples = [_video(1), _asked(2, 3), _video(3, num_frames=2, size=48), _image(4), _asked(5, 9, size=48)]
    collate = SampleCollator.for_model(model, processor)
    alone = [_per_sample_logits(model, collate([sample]))[0] for sample in samples]
    batch = collate(samples)
    packed = PackingCollator(collate, max_length=10_000)(samples)
    assert len(packed["input_ids"]) == 1 and len(packed["packed_segments"][0]) == len(samples)
    for mine, reference in zip(_per_sample_logits(model, packed), alone, strict=True):
        torch.testing.assert_close(mine, reference, atol=2e-4, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(model(**packed).loss, model(**batch).loss, atol=1e-5, rtol=1e-5)


def test_a_shorter_packing_length_makes_more_rows_and_pads_the_tail_without_touching_the_samples(
    plain_model,
) -> None:
    model, processor = plain_model
    samples = [_image(1), _asked(2, 12), _image(3), _video(4)]
    collate = SampleCollator.for_model(model, processor)
    lengths = collate(samples)["attention_mask"].sum(1).tolist()
    limit = lengths[0] + lengths[1] - 1  # the long question does not fit beside the first image
    assert lengths[2] + lengths[3] <= limit
    packed = PackingCollator(collate, max_length=limit)(samples)
    assert [len(spans) for spans in packed["packed_segments"]] == [1, 1, 2]
    assert int(packed["attention_mask"].sum()) == sum(lengths)
    assert bool((packed["labels"][packed["attention_mask"] == 0] == -100).all())
    alone = [_per_sample_logits(model, collate([sample]))[0] for sample in samples]
    for mine, reference in zip(_per_sample_logits(model, packed), alone, strict=True):
        torch.testing.assert_close(mine, reference, atol=2e-4, rtol=1e-4)


def test_fields_a_row_based_part_reads_and_inference_batches_are_refused_by_name(plain_model) -> None:
    model, processor = plain_model
    batch = SampleCollator.for_model(model, processor)([_image(1)])
    with pytest.raises(ValueError, match=r"\['region_prompts'\]"):
        pack_batch({**batch, "region_prompts": [None]}, 100, 0)
    with pytest.raises(ValueError, match="training"):
        pack_batch({key: value for key, value in batch.items() if key != "labels"}, 100, 0)
    with pytest.raises(ValueError, match="inference collator"):
        PackingCollator(SampleCollator.for_model(model, processor, inference=True), 100)


def test_packing_changes_nothing_for_one_sample(plain_model) -> None:
    model, processor = plain_model
    collate = SampleCollator.for_model(model, processor)
    sample = dataclasses.replace(_video(7), sample_id="shapes/train/7")
    batch, packed = collate([sample]), PackingCollator(collate, 10_000)([sample])
    assert torch.equal(batch["input_ids"], packed["input_ids"])
    torch.testing.assert_close(_per_sample_logits(model, packed)[0], _per_sample_logits(model, batch)[0])


def test_train_py_packs_its_batches_and_trains(tmp_path: Path, tiny_parts, capsys) -> None:
    generate_split(tmp_path / "dsr", "train", 2, seed=12)
    dataset = {"loader": "llava_video", "root": str(tmp_path / "dsr"), "split": "train", "weight": 1}
    dataset["options"] = {"sources": ["dsr_synthetic"]}
    run = tmp_path / "run"
    overrides = [
        f"output_dir={run}",
        "model.pretrained=null",
        f"model.backbone_path={tiny_parts['backbone']}",
        "model.seg=null",
        f"data.datasets={json.dumps({'dsr': dataset})}",
        "data.num_frames=4",
        "data.samples_per_epoch=6",
        "data.pack_length=100000",
        "train.batch_size=3",
        "train.max_steps=2",
        "train.save_every=2",
        "train.num_workers=0",
        "train.log_every=1",
        "device=cpu",
    ]
    train.main(["--config", str(QUICKSTART), *overrides])
    assert "sequence packing" in capsys.readouterr().out
    logged = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]
    assert len(logged) == 2 and all(entry["ce"] > 0 for entry in logged)
