"""The input-assembly seam: stock logits with no encoder; add / fill / append encoders plug in without
touching the forward pass, in the documented order, with M-RoPE positions that count appended tokens."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from model.builder import build_unigr
from model.input_assembly import ENCODERS, AssemblyContext, InputEncoder, register_encoder
from utils.data.collate import SampleCollator
from utils.data.mevis import MeViSDataset
from utils.training.trainable import group_of

STOCK_INPUTS = (
    "input_ids",
    "attention_mask",
    "mm_token_type_ids",
    "pixel_values",
    "image_grid_thw",
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
)


class AddToVideo(InputEncoder):
    """Adds a learned vector to every video token (the shape of a 3D position encoding)."""

    kind = "add"

    def __init__(self, llm_hidden_size: int):
        super().__init__()
        self.offset = nn.Parameter(torch.ones(llm_hidden_size))

    def forward(self, embeds: torch.Tensor, context: AssemblyContext) -> torch.Tensor:
        return embeds + context.video_mask[..., None] * self.offset


class FillRegion(InputEncoder):
    """Writes the mean video feature into its ``<region>`` placeholders (the shape of a region encoder)."""

    kind = "fill"
    placeholder = "<region>"

    def __init__(self, llm_hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(llm_hidden_size, llm_hidden_size)

    def forward(self, embeds: torch.Tensor, context: AssemblyContext) -> torch.Tensor:
        where = context.input_ids == context.token_ids[self.placeholder]
        value = self.proj(context.visual_features["video"].mean(0))
        return torch.where(where[..., None], value.to(embeds.dtype), embeds)


class AppendGeometry(InputEncoder):
    """Three learned tokens right after the video (the shape of the GSM's geometry tokens)."""

    kind = "append"
    placeholder = "<geo>"
    num_appended = 3

    def __init__(self, llm_hidden_size: int):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(3, llm_hidden_size))

    def forward(self, embeds: torch.Tensor, context: AssemblyContext) -> torch.Tensor:
        where = context.input_ids == context.token_ids[self.placeholder]  # (B, L), 3 per row
        values = self.tokens.repeat(embeds.shape[0], 1)
        return embeds.masked_scatter(where[..., None], values.to(embeds.dtype))


@pytest.fixture(scope="module")
def toy_encoders():
    names = {"toy_add": AddToVideo, "toy_fill": FillRegion, "toy_append": AppendGeometry}
    for name, cls in names.items():
        register_encoder(name)(cls)
    yield list(names)
    for name in names:
        ENCODERS.pop(name)


@pytest.fixture(scope="module")
def samples(mevis_root: Path):
    dataset = MeViSDataset(mevis_root, "train", num_frames=4, train=True)
    return [dataset[0], dataset[2]]


def _model(tiny_parts, tiny_cfg, encoders):
    model, processor = build_unigr(tiny_parts["backbone"], tiny_cfg["seg"], tiny_parts["sam2"], encoders=encoders)
    return model.eval(), processor


def _batch(model, processor, samples, **kwargs) -> dict:
    collator = SampleCollator.for_model(model, processor)
    return collator(samples, **kwargs)


def test_without_encoders_the_logits_are_the_stock_qwen_logits(tiny_model, samples) -> None:
    model, processor = tiny_model
    image = dataclasses.replace(
        samples[1],
        frames=samples[1].frames[:1],
        frame_names=["0"],
        masks=samples[1].masks[:, :1],
        timestamps=None,
        medium="image",
    )
    batch = _batch(model, processor, [samples[0], image])
    with torch.no_grad():
        ours = model(**batch).logits
        stock = model.backbone(**{key: batch[key] for key in STOCK_INPUTS}).logits
    torch.testing.assert_close(ours, stock, rtol=0, atol=0)


def test_an_add_encoder_changes_only_the_visual_token_embeddings(tiny_parts, tiny_cfg, toy_encoders, samples):
    plain, processor = _model(tiny_parts, tiny_cfg, None)
    added, _ = _model(tiny_parts, tiny_cfg, {"toy_add": {}})
    added.backbone.load_state_dict(plain.backbone.state_dict())
    batch = _batch(plain, processor, samples)
    with torch.no_grad():
        base, with_add = plain.assemble(batch["input_ids"], batch)[0], added.assemble(batch["input_ids"], batch)[0]
    video = batch["input_ids"] == plain.backbone.config.video_token_id
    torch.testing.assert_close((with_add - base)[video], torch.ones_like(base[video]))
    assert torch.equal(with_add[~video], base[~video])
    assert group_of("input_assembly.encoders.toy_add.offset") == "encoder_toy_add"


def test_appended_tokens_follow_the_video_and_shift_later_positions(tiny_parts, tiny_cfg, toy_encoders, samples):
    plain, processor = _model(tiny_parts, tiny_cfg, None)
    model, processor = _model(tiny_parts, tiny_cfg, {"toy_append": {}})
    geo = model.config.placeholder_token_ids["<geo>"]
    batch = _batch(model, processor, samples[:1])
    ids = batch["input_ids"][0]
    vision_end = int((ids == processor.tokenizer.convert_tokens_to_ids("<|vision_end|>")).nonzero()[0])
    assert ids[vision_end + 1 : vision_end + 4].tolist() == [geo] * 3
    plain_batch = _batch(plain, processor, samples[:1])
    _, positions = model.assemble(batch["input_ids"], batch)
    _, plain_positions = plain.assemble(plain_batch["input_ids"], plain_batch)
    assert positions.shape[-1] == plain_positions.shape[-1] + 3
    # Everything after the appended tokens sits 3 positions later; the video keeps its 3D positions.
    torch.testing.assert_close(positions[..., vision_end + 4 :], plain_positions[..., vision_end + 1 :] + 3)
    torch.testing.assert_close(positions[..., : vision_end + 1], plain_positions[..., : vision_end + 1])
    with torch.no_grad():
        embeds, _ = model.assemble(batch["input_ids"], batch)
    torch.testing.assert_close(
        embeds[0, vision_end + 1 : vision_end + 4], model.input_assembly.encoders["toy_append"].tokens
    )


def test_a_fill_encoder_writes_its_placeholders_and_its_output_reaches_the_loss(
    tiny_parts, tiny_cfg, toy_encoders, samples
):
    model, processor = _model(tiny_parts, tiny_cfg, {"toy_fill": {}})
    question = dataclasses.replace(
        samples[0],
        conversation=[
            {"role": "user", "content": "What is <region> doing?"},
            {"role": "assistant", "content": "It moves left."},
        ],
        masks=None,
    )
    batch = _batch(model, processor, [question])
    model.train()
    model(**batch).loss.backward()
    grad = model.input_assembly.encoders["toy_fill"].proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_encoders_apply_in_the_documented_order(tiny_parts, tiny_cfg, toy_encoders, samples, monkeypatch) -> None:
    model, processor = _model(tiny_parts, tiny_cfg, {"toy_append": {}, "toy_fill": {}, "toy_add": {}})
    calls = []
    for encoder in model.input_assembly.encoders.values():
        original = encoder.forward
        monkeypatch.setattr(encoder, "forward", lambda e, c, o=original, k=encoder.kind: calls.append(k) or o(e, c))
    question = dataclasses.replace(samples[0], conversation=[{"role": "user", "content": "<region>?"}], masks=None)
    batch = _batch(model, processor, [question])
    with torch.no_grad():
        model.assemble(batch["input_ids"], batch)
    assert calls == ["add", "fill", "append"]


def test_an_unknown_encoder_is_refused_by_name(tiny_parts, tiny_cfg) -> None:
    with pytest.raises(ValueError, match="unknown input encoders \\['nope'\\]"):
        _model(tiny_parts, tiny_cfg, {"nope": {}})
