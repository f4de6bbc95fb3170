"""The [SEG] location map: token targets, the visual-token layout, SAM2 prompts from it, training without
SAM2 (stage 0), the map reaching SAM2 in training and generation, and the head unchanged when it is off."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.builder import build_unigr, load_unigr
from model.heads.location_prompt import (
    LocationMap,
    dense_prompt,
    frame_maps,
    location_targets,
    peak_clicks,
    top_token_hits,
)
from model.heads.sam2_video import decode_prompted_frame, prepare_features
from model.visual_tokens import visual_layouts
from scripts import pretrain_grounding
from scripts.pretrain_grounding import GroundingCollator, grounding_step, token_attribute_labels
from scripts.pretrain_sam2_prompts import coarse_location_maps
from tests.test_model import ForceAnswer
from utils.data.collate import SampleCollator
from utils.data.mevis import MeViSDataset
from utils.data.prompts import SEG_TOKEN
from utils.data.schema import Sample

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def samples(mevis_root: Path) -> list[Sample]:
    dataset = MeViSDataset(mevis_root, "train", num_frames=4, train=True)
    return [dataset[0], dataset[3]]


def _batch(model, processor, samples: list[Sample], inference: bool = False) -> dict:
    return SampleCollator.for_model(model, processor, inference=inference)(samples)


def test_location_targets_mark_the_tokens_the_target_covers_on_any_frame_of_their_slot() -> None:
    masks = torch.zeros(1, 3, 8, 8)
    masks[0, 0, :2, :2] = 1  # frame 0: top-left token of a 2x2 grid (a quarter of it covered)
    masks[0, 1, 6:, 6:] = 1  # frame 1 (same slot as frame 0 with 2 frames per slot): bottom-right
    masks[0, 2, 0, 7] = 1  # frame 2 (slot 1): one pixel of the top-right token, 1/16 of it
    targets = location_targets(masks, (2, 2, 2), frames_per_slot=2)
    assert targets.tolist() == [[[[1, 0], [0, 1]], [[0, 1], [0, 0]]]]
    assert location_targets(masks[:0], (2, 2, 2), 2).shape == (0, 2, 2, 2)


def test_top_token_hits_count_slots_where_the_peak_lies_on_the_target() -> None:
    targets = torch.zeros(1, 3, 2, 2)
    targets[0, 0, 0, 0] = targets[0, 1, 1, 1] = 1  # slot 2: target absent, not scored
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0, 0, 0] = 5  # hit
    logits[0, 1, 0, 0] = 5  # miss
    assert top_token_hits(logits, targets) == (1, 2)


def test_frame_maps_give_each_frame_its_slot() -> None:
    logits = torch.arange(3.0).view(1, 3, 1, 1)
    assert frame_maps(logits, 2, 5)[0, :, 0, 0].tolist() == [0, 0, 1, 1, 2]
    assert frame_maps(logits, 1, 2)[0, :, 0, 0].tolist() == [0, 1]


def test_visual_layouts_find_every_video_and_image_token_on_qwen_merged_grid(tiny_model, samples) -> None:
    model, processor = tiny_model
    image = dataclasses.replace(
        samples[1], frames=samples[1].frames[:1], masks=samples[1].masks[:, :1], medium="image", timestamps=None
    )
    batch = _batch(model, processor, [samples[0], image])
    video, still = visual_layouts(batch["input_ids"], batch, model.seg_head.visual_tokens)
    (t, h, w) = batch["video_grid_thw"][0].tolist()
    assert video.grid == (t, h // 2, w // 2) and video.frames_per_slot == 2 and len(video.positions) == t * h * w // 4
    assert torch.all(batch["input_ids"][0, video.positions] == model.config.backbone_config.video_token_id)
    assert still.grid[0] == 1 and still.frames_per_slot == 1
    text_only = visual_layouts(batch["input_ids"][:, :3], {}, model.seg_head.visual_tokens)
    assert text_only == [None, None]


def test_location_map_scores_each_token_by_the_seg_state() -> None:
    torch.manual_seed(0)
    layer = LocationMap(16, 8)
    seg, visual = torch.randn(2, 16), torch.randn(12, 16)
    logits = layer(seg, visual, (3, 2, 2))
    assert logits.shape == (2, 3, 2, 2)
    torch.testing.assert_close(logits[1, 2, 1, 0], layer.query(seg[1]) @ layer.key(visual[10]) / 8**0.5)


def test_dense_prompt_is_sam2s_own_mask_prompt_and_changes_what_it_decodes(tiny_model) -> None:
    model, _ = tiny_model
    head = model.seg_head
    sam = head.sam2
    frames = torch.rand(1, 3, head.image_size, head.image_size, generator=torch.Generator().manual_seed(0))
    left, right = torch.full((1, 4, 4), -8.0), torch.full((1, 4, 4), -8.0)
    left[0, 1, 0], right[0, 2, 3] = 8.0, 8.0
    with torch.no_grad():
        feats, _, sizes = prepare_features(sam, head.encode_frames(frames))
        resized = torch.nn.functional.interpolate(
            left[:, None], size=sam.sam_prompt_encoder.mask_input_size, mode="bilinear"
        )
        _, expected = sam.sam_prompt_encoder(points=None, boxes=None, masks=resized)
        torch.testing.assert_close(dense_prompt(sam, left), expected)
        sparse = torch.zeros(1, head.config.num_prompt_tokens, sam.sam_prompt_embed_dim)
        decoded = [decode_prompted_frame(sam, feats, sizes, sparse, dense_prompt(sam, m)) for m in (left, right)]
        clicks = peak_clicks(sam, left)
    assert not torch.allclose(decoded[0]["object_score_logits"], decoded[1]["object_score_logits"])
    # the click sits at the centre of token (row 1, column 0) of a 4x4 grid, in SAM2 pixels
    expected, _ = sam.sam_prompt_encoder(
        points=(torch.tensor([[[16.0, 48.0], [0.0, 0.0]]]), torch.tensor([[1, -1]])), boxes=None, masks=None
    )
    torch.testing.assert_close(clicks, expected)


def test_training_forward_adds_the_location_loss_and_feeds_the_map_to_sam2(tiny_model, samples, monkeypatch) -> None:
    model, processor = tiny_model
    batch = _batch(model, processor, samples)
    seen = []
    segment_videos = model.seg_head.segment_videos

    def spy(*args, location=None, **kwargs):
        seen.append(location)
        return segment_videos(*args, location=location, **kwargs)

    monkeypatch.setattr(model.seg_head, "segment_videos", spy)
    with torch.no_grad():
        out = model(**batch)
    assert out.losses["loc"] > 0
    assert seen and seen[0].shape[:2] == (2, 4)  # (objects, frames, h, w): each frame reads its slot's map
    slot_maps = [item[0] for item in out.location_maps]
    torch.testing.assert_close(seen[0][:, 1], torch.cat(slot_maps)[:, 0])  # frames 0 and 1 share slot 0


def test_grounding_step_trains_the_map_without_running_sam2(tiny_model, samples, monkeypatch) -> None:
    model, processor = tiny_model
    trained = copy.deepcopy(model).train()
    collate = GroundingCollator(SampleCollator.for_model(trained, processor), trained.seg_head.visual_tokens)
    batch = collate(samples)
    assert batch.pop("token_attribute_labels") == [None, None]  # files do not list their objects' attributes
    assert "sam_frames" not in batch and batch["expression_types"] == [s.meta.get("type") for s in samples]

    def no_sam2(*args, **kwargs):
        raise AssertionError("stage 0 must not run SAM2")

    monkeypatch.setattr(trained.seg_head, "encode_frames", no_sam2)
    loss, metrics = grounding_step(trained, batch)
    loss.backward()
    assert metrics["loc"] > 0 and metrics["slots_attribute"] + metrics["slots_motion"] > 0
    grads = {name: p.grad for name, p in trained.named_parameters()}
    assert grads["seg_head.location.query.weight"].abs().sum() > 0
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("backbone.model.visual."))
    assert all(g is None for n, g in grads.items() if n.startswith("seg_head.sam2."))


def test_token_attribute_labels_name_the_object_covering_each_token() -> None:
    masks = np.zeros((2, 2, 8, 8), dtype=bool)
    masks[0, :, :4, :4] = True  # object 0 fills the top-left token of a 2x2 grid on both frames
    masks[1, 1, 4:, 4:] = True  # object 1 fills the bottom-right token on frame 1 only (same slot)
    objects = [("red", "square", "left"), ("blue", "circle", "down")]
    labels = token_attribute_labels(masks, objects, (1, 2, 2), frames_per_slot=2)
    assert labels.tolist() == [[1, 1, 1], [0, 0, 0], [0, 0, 0], [3, 2, 4]]


def test_stage0_with_the_token_read_out_trains_it_and_saves_a_model_without_it(tiny_parts, tmp_path) -> None:
    final = pretrain_grounding.main(
        [
            "--config",
            str(ROOT / "configs/quickstart_grounding.yaml"),
            f"output_dir={tmp_path}",
            f"model.backbone_path={tiny_parts['backbone']}",
            "train.max_steps=2",
            "train.batch_size=2",
            "train.num_workers=0",
            "data.samples_per_epoch=4",
            "data.datasets.moving_shapes.options.num_videos=4",
            "data.datasets.moving_shapes.options.describe_share=0.5",
        ]
    )
    logged = [json.loads(line) for line in (tmp_path / "losses.jsonl").read_text().splitlines()]
    assert all(row["token_attributes"] > 0 and "hits_attribute" in row for row in logged)
    loaded, _ = load_unigr(final)
    assert not hasattr(loaded, "token_attributes") and loaded.seg_head.location is not None


def test_generation_segments_with_the_location_map_of_the_prompt(tiny_model, samples, monkeypatch) -> None:
    model, processor = tiny_model
    batch = _batch(model, processor, samples[:1], inference=True)
    frames = batch.pop("sam_frames")[0]
    answer = processor.tokenizer.encode(f"Sure, {SEG_TOKEN}.<|im_end|>", add_special_tokens=False)
    force = ForceAnswer(answer, batch["input_ids"].shape[1])
    seen = []
    propagate = model.seg_head.propagate

    def spy(state, prompts, candidates=None, location=None):
        seen.append(location)
        return propagate(state, prompts, candidates, location)

    monkeypatch.setattr(model.seg_head, "propagate", spy)
    state = model.seg_head.init_state(frames)
    result = model.generate(batch, max_new_tokens=6, logits_processor=[force])
    model.generate_and_segment(batch, [state], [[0, 1, 2, 3]], max_new_tokens=6, logits_processor=[force])
    logits, per_slot = result.location_maps[0]
    assert seen[0].shape == (1, 4, *logits.shape[2:])
    torch.testing.assert_close(seen[0], frame_maps(logits, per_slot, 4))
    # the map of generation equals the map a teacher-forced pass gives for the same answer
    forced = dataclasses.replace(
        samples[0], conversation=[*samples[0].conversation[:1], {"role": "assistant", "content": f"Sure, {SEG_TOKEN}."}]
    )
    with torch.no_grad():
        out = model(**_batch(model, processor, [forced]))
    torch.testing.assert_close(out.location_maps[0][0], logits, atol=1e-4, rtol=1e-4)


def test_with_the_location_prompt_off_the_head_has_no_map_and_its_masks_do_not_change(tiny_parts, tiny_cfg, samples):
    off = {**tiny_cfg["seg"], "location_prompt": "off"}
    torch.manual_seed(0)
    model, processor = build_unigr(tiny_parts["backbone"], off, tiny_parts["sam2"])
    model.eval()
    assert model.seg_head.location is None and model.seg_head.loss_names == ("bce", "dice", "objectness")
    assert not any(".location." in name for name in model.state_dict())
    batch = _batch(model, processor, samples)
    with torch.no_grad():
        out = model(**batch)
        hidden = model.seg_head.seg_hidden_states(out.last_hidden_state, batch["input_ids"])
        plain = model.seg_head.segment(hidden, batch["sam_frames"])
    assert "loc" not in out.losses and out.location_maps is None
    torch.testing.assert_close(torch.cat(out.pred_masks), torch.cat([m for m, _ in plain]))


def test_location_prompt_cannot_be_switched_off_on_a_model_that_has_the_map(tiny_model, tmp_path) -> None:
    model, processor = tiny_model
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="location_prompt cannot switch"):
        load_unigr(tmp_path, seg={"location_prompt": "off"})
    loaded, _ = load_unigr(tmp_path, seg={"location_prompt": "mask+click"})
    assert loaded.seg_head.config.location_prompt == "mask+click"


def test_stage1_coarse_maps_score_the_object_tokens_above_the_rest() -> None:
    torch.manual_seed(0)
    masks = torch.zeros(64, 1, 32, 32)
    masks[:, :, :8, :8] = 1  # the top-left token of a 4x4 grid (4 tokens of 8x8, 64 of 32x32)
    maps = coarse_location_maps(masks)
    side = maps.shape[-1]
    assert maps.shape == (64, 1, side, side) and side in (4, 8, 32)
    on_object = maps[:, 0, : side // 4, : side // 4].flatten(1).mean(1)
    elsewhere = maps[:, 0, side // 2 :].flatten(1).mean(1)  # the bottom half, far from the object
    assert (on_object - elsewhere).mean() > 4 and (on_object > elsewhere).float().mean() > 0.9
