"""The region encoder: region prompts (mask / box / points) -> tokens at ``<region>`` placeholders."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from model.builder import add_encoders, build_unigr, load_unigr
from utils.data.collate import REGION_MASK_SIZE, SampleCollator, region_prompt_mask
from utils.data.prompts import object_reference
from utils.data.schema import RegionPrompt, Sample
from utils.synthetic.moving_shapes import WorldConfig, make_video

STOCK_INPUTS = (
    "input_ids",
    "attention_mask",
    "mm_token_type_ids",
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
)


@pytest.fixture(scope="module")
def clip() -> Sample:
    """A moving-shapes video; ``masks`` holds every object's track."""
    video = make_video(3, "train", 0, WorldConfig(height=64, width=64, num_frames=4))
    return Sample(
        sample_id="shapes/train/0",
        frames=video.frames,
        frame_names=[str(t) for t in range(4)],
        conversation=[{"role": "user", "content": "?"}, {"role": "assistant", "content": "."}],
        masks=video.masks,
        timestamps=np.arange(4) / 4,
    )


def _question(clip: Sample, regions: list[RegionPrompt], text: str, answer: str = "(A) red") -> Sample:
    return dataclasses.replace(
        clip,
        conversation=[{"role": "user", "content": text}, {"role": "assistant", "content": answer}],
        masks=None,
        regions=regions,
    )


def _object_prompts(clip: Sample, obj: int, region: int, frames=(0, 2)) -> list[RegionPrompt]:
    return [RegionPrompt(frame=t, mask=clip.masks[obj, t], region=region) for t in frames]


@pytest.fixture(scope="module")
def region_model(tiny_parts, tiny_cfg):
    model, processor = build_unigr(tiny_parts["backbone"], tiny_cfg["seg"], tiny_parts["sam2"], encoders={"region": {}})
    return model.eval(), processor


def _batch(model, processor, samples: list[Sample]) -> dict:
    return SampleCollator.for_model(model, processor)(samples)


def test_without_the_encoder_region_prompts_leave_the_stock_logits(tiny_model, clip) -> None:
    model, processor = tiny_model
    question = _question(clip, _object_prompts(clip, 0, 0), f"What colour is {object_reference(0)}?")
    batch = _batch(model, processor, [question])
    assert "region_prompts" in batch
    with torch.no_grad():
        ours = model(**batch).logits
        stock = model.backbone(**{key: batch[key] for key in STOCK_INPUTS}).logits
    torch.testing.assert_close(ours, stock, rtol=0, atol=0)


def test_the_region_token_depends_on_which_object_is_pointed_at(region_model, clip) -> None:
    model, processor = region_model
    text = f"What colour is {object_reference(0)}?"
    first, second = (_question(clip, _object_prompts(clip, obj, 0), text) for obj in (0, 1))
    batch = _batch(model, processor, [first, second])
    region_id = processor.tokenizer.convert_tokens_to_ids("<region>")
    ids = batch["input_ids"]
    assert (ids == region_id).sum(1).tolist() == [1, 1]
    with torch.no_grad():
        embeds, _ = model.assemble(ids, batch)
        logits = model(**batch).logits
    plain = model.get_input_embeddings()(ids)
    where = ids == region_id
    assert not torch.allclose(embeds[where][0], plain[where][0])
    assert not torch.allclose(embeds[where][0], embeds[where][1])  # object 0 vs object 1
    text_positions = ~where & (ids != model.backbone.config.video_token_id)
    torch.testing.assert_close(embeds[text_positions], plain[text_positions])
    last = batch["attention_mask"].sum(1) - 1
    assert not torch.allclose(logits[0, last[0]], logits[1, last[1]])


def test_several_regions_fill_their_own_placeholders_and_train(region_model, clip) -> None:
    model, processor = region_model
    model.train()
    text = f"Is {object_reference(0)} left of {object_reference(1)}?"
    question = _question(clip, _object_prompts(clip, 0, 0) + _object_prompts(clip, 1, 1, frames=(3,)), text, "Yes.")
    batch = _batch(model, processor, [question])
    assert batch["region_prompts"][0]["regions"].tolist() == [0, 0, 1]
    model.zero_grad()
    model(**batch).loss.backward()
    encoder = model.input_assembly.encoders["region"]
    assert encoder.mlp[1].weight.grad.abs().sum() > 0
    assert encoder.box_embedding.weight.grad.abs().sum() > 0
    model.eval()


def test_boxes_and_points_become_masks_and_bad_prompts_are_named(clip) -> None:
    height, width = clip.frames.shape[1:3]
    box_mask, box, kind = region_prompt_mask(clip, RegionPrompt(frame=0, box=np.array([2.0, 3.0, 10.0, 12.0])))
    assert kind == 1 and box_mask.sum() == 8 * 9
    np.testing.assert_allclose(box, [2 / width, 3 / height, 10 / width, 12 / height])
    point_mask, _, kind = region_prompt_mask(clip, RegionPrompt(frame=1, points=np.array([[20.0, 20.0]])))
    assert kind == 2 and point_mask[20, 20] and not point_mask[0, 0]
    with pytest.raises(ValueError, match=f"{clip.sample_id}: region 0 on frame 0: the mask is empty"):
        region_prompt_mask(clip, RegionPrompt(frame=0, mask=np.zeros((height, width), bool)))
    with pytest.raises(ValueError, match="covers no pixel"):
        region_prompt_mask(clip, RegionPrompt(frame=0, box=np.array([width + 5.0, 0, width + 9.0, 4])))
    with pytest.raises(ValueError, match="no positive point inside"):
        region_prompt_mask(clip, RegionPrompt(frame=0, points=np.array([[-3.0, 4.0]])))


def test_images_take_region_prompts_too(region_model, clip) -> None:
    model, processor = region_model
    image = dataclasses.replace(
        _question(clip, [RegionPrompt(frame=0, box=np.array([0.0, 0.0, 16.0, 16.0]))], f"{object_reference(0)}?"),
        frames=clip.frames[:1],
        frame_names=clip.frame_names[:1],
        timestamps=None,
        medium="image",
    )
    batch = _batch(model, processor, [image])
    assert batch["region_prompts"][0]["masks"].shape == (1, REGION_MASK_SIZE, REGION_MASK_SIZE)
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()


def test_prompts_without_their_placeholder_are_an_error(region_model, clip) -> None:
    model, processor = region_model
    extra = _question(clip, _object_prompts(clip, 0, 1), f"What colour is {object_reference(0)}?")
    with pytest.raises(ValueError, match="prompts for 2 regions but 1 <region> placeholders"):
        model(**_batch(model, processor, [extra]))
    missing = _question(clip, _object_prompts(clip, 0, 1), f"Is {object_reference(0)} on {object_reference(1)}?")
    with pytest.raises(ValueError, match=r"no prompt for <region> number\(s\) \[0\]"):
        model(**_batch(model, processor, [missing]))


def test_a_pretrained_model_gains_the_encoder_and_keeps_it_through_save_and_load(tiny_model, clip, tmp_path) -> None:
    base, processor = tiny_model
    model, processor = load_unigr(_saved(base, processor, tmp_path / "base"))
    add_encoders(model, processor, {"region": {}})
    assert model.config.placeholder_token_ids == {"<region>": processor.tokenizer.convert_tokens_to_ids("<region>")}
    model.save_pretrained(tmp_path / "with_region")
    processor.save_pretrained(tmp_path / "with_region")
    loaded, loaded_processor = load_unigr(tmp_path / "with_region")
    question = _question(clip, _object_prompts(clip, 0, 0), f"What colour is {object_reference(0)}?")
    with torch.no_grad():
        ours = model.eval()(**_batch(model, processor, [question])).logits
        theirs = loaded.eval()(**_batch(loaded, loaded_processor, [question])).logits
    torch.testing.assert_close(ours, theirs)
    with pytest.raises(ValueError, match="options cannot change"):
        add_encoders(loaded, loaded_processor, {"region": {"max_slots": 8}})


def _saved(model, processor, path: Path) -> Path:
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_trajectories_point_the_way_each_region_moved() -> None:
    from model.encoders.region import TRAJECTORY_UNIT, trajectories

    frames = torch.tensor([2, 0, 1, 0])
    regions = torch.tensor([0, 0, 0, 1])
    boxes = torch.tensor([[0.5, 0.1, 0.6, 0.2], [0.1, 0.1, 0.2, 0.2], [0.3, 0.1, 0.4, 0.2], [0.4, 0.4, 0.5, 0.5]])
    out = trajectories(frames, regions, boxes)
    torch.testing.assert_close(out[:3], torch.tensor([[1.0, 0.0, 1.0, 0.0]]).expand(3, 4))  # moved right
    assert out[3].abs().sum() == 0  # one frame: no motion
    jitter = trajectories(torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([[0.1] * 4, [0.11] * 4]))
    torch.testing.assert_close(jitter[0], torch.full((4,), 0.01 / TRAJECTORY_UNIT))


def test_the_region_token_depends_on_where_the_mask_is(region_model, clip) -> None:
    model, processor = region_model
    text = f"What colour is {object_reference(0)}?"
    mask = clip.masks[0, 0]
    moved = np.roll(mask, 9, axis=1)
    batch = _batch(
        model,
        processor,
        [_question(clip, [RegionPrompt(frame=0, mask=m, region=0)], text) for m in (mask, moved)],
    )
    region_id = processor.tokenizer.convert_tokens_to_ids("<region>")
    with torch.no_grad():
        embeds, _ = model.assemble(batch["input_ids"], batch)
    tokens = embeds[batch["input_ids"] == region_id]
    assert not torch.allclose(tokens[0], tokens[1])
