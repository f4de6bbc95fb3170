"""The 2D position encoder: a sinusoidal code of each visual token's normalised place in its frame, added to it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.builder import build_unigr, load_unigr
from model.encoders.position2d import Position2DEncoder, cell_centres, sinusoidal_code_2d
from model.input_assembly import AssemblyContext
from model.visual_tokens import VisualTokens
from utils.data.collate import SampleCollator
from utils.data.schema import Sample
from utils.training.trainable import configure_trainable, group_prefixes

VIDEO, IMAGE = 7, 8
TOKENS = VisualTokens(video_token_id=VIDEO, image_token_id=IMAGE, spatial_merge_size=2, temporal_patch_size=2)


def _context(rows: list[list[int]], video_grids: list | None, image_grids: list | None) -> AssemblyContext:
    input_ids = torch.tensor(rows)
    return AssemblyContext(
        input_ids,
        None,
        input_ids == IMAGE,
        input_ids == VIDEO,
        torch.tensor(image_grids) if image_grids else None,
        torch.tensor(video_grids) if video_grids else None,
        {},
        {},
    )


def test_the_code_is_sin_and_cos_of_each_axis_with_a_zero_tail() -> None:
    code = sinusoidal_code_2d(torch.tensor([[0.0, 0.0], [2.0, -1.5]]), 14)  # 3 frequencies per axis, 2 spare
    assert code.shape == (2, 14) and code.dtype == torch.float32
    torch.testing.assert_close(code[0], torch.tensor(([0.0] * 3 + [1.0] * 3) * 2 + [0.0, 0.0]))
    frequencies = [10000 ** (-k / 3) for k in range(3)]
    expected = [f(v * w) for v in (2.0, -1.5) for f in (math.sin, math.cos) for w in frequencies] + [0.0, 0.0]
    torch.testing.assert_close(code[1], torch.tensor(expected))


def test_the_code_refuses_a_width_below_four_and_coordinates_that_are_not_pairs() -> None:
    with pytest.raises(ValueError, match="width of at least 4"):
        sinusoidal_code_2d(torch.zeros(1, 2), 3)
    with pytest.raises(ValueError, match=r"must be \(N, 2\)"):
        sinusoidal_code_2d(torch.zeros(4, 3), 16)


def test_cell_centres_are_normalised_and_row_major() -> None:
    centres = cell_centres(2, 4)
    expected = [[(j + 0.5) / 4, (i + 0.5) / 2] for i in range(2) for j in range(4)]
    torch.testing.assert_close(centres, torch.tensor(expected))


def test_nearby_cells_get_more_similar_codes_than_far_ones() -> None:
    codes = Position2DEncoder(64, TOKENS).grid_codes(5, 5)  # (25, 64)
    centre = codes[12]
    distances = (codes - centre).norm(dim=-1).reshape(5, 5)
    assert distances[2, 2] == 0
    assert distances[2, 3] < distances[2, 4] and distances[3, 2] < distances[4, 2]
    assert distances[2, 3] < distances[4, 4]


def test_the_encoder_adds_the_code_of_each_cell_at_image_and_video_tokens_only() -> None:
    video = [1, 2] + [VIDEO] * 12 + [3]  # two slots of a 2 x 3 merged grid
    image = [1] + [IMAGE] * 6 + [3, 4] + [0] * 6  # one 2 x 3 image, padded
    rows = [video, image, [1, 2, 3, 4, 5, 6] + [0] * 9]  # the last row is text only
    context = _context(rows, [[2, 4, 6]], [[1, 4, 6]])
    encoder = Position2DEncoder(20, TOKENS, resolution=100.0, scale=0.5)
    assert not list(encoder.parameters())
    embeds = torch.randn(3, 15, 20)
    out = encoder(embeds, context)

    expected = 0.5 * sinusoidal_code_2d(cell_centres(2, 3) * 100.0, 20)  # (6, 20)
    torch.testing.assert_close(out[0, 2:8] - embeds[0, 2:8], expected)
    torch.testing.assert_close(out[0, 8:14] - embeds[0, 8:14], expected)  # every slot: the same places
    torch.testing.assert_close(out[1, 1:7] - embeds[1, 1:7], expected)
    assert torch.equal(out[0, [0, 1, 14]], embeds[0, [0, 1, 14]])
    assert torch.equal(out[1, 7:], embeds[1, 7:])
    assert torch.equal(out[2], embeds[2])
    assert torch.equal(encoder(embeds, context), out)  # deterministic


def test_the_encoder_refuses_a_bad_resolution_or_width() -> None:
    with pytest.raises(ValueError, match="resolution must be positive"):
        Position2DEncoder(20, TOKENS, resolution=0.0)
    with pytest.raises(ValueError, match="width of at least 4"):
        Position2DEncoder(3, TOKENS)


def _logits(model, processor, sample: Sample, media: bool = True) -> torch.Tensor:
    collator = SampleCollator.for_model(model, processor) if media else SampleCollator(processor, None, media=False)
    with torch.no_grad():
        return model(**collator([sample])).logits


def test_a_tiny_unigr_with_the_encoder_sees_where_its_image_tokens_are(tiny_parts, tmp_path) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (1, 84, 140, 3), dtype=np.uint8)
    conversation = [{"role": "user", "content": "Where is the cup?"}, {"role": "assistant", "content": "{<1><2>}"}]
    sample = Sample(sample_id="s", frames=frame, frame_names=["0"], conversation=conversation, medium="image")
    model, processor = build_unigr(tiny_parts["backbone"], None, encoders={"position2d": {"scale": 2.0}})
    plain, _ = build_unigr(tiny_parts["backbone"], None)
    model, plain = model.eval(), plain.eval()
    assert not torch.allclose(_logits(model, processor, sample), _logits(plain, processor, sample))
    torch.testing.assert_close(
        _logits(model, processor, sample, media=False), _logits(plain, processor, sample, media=False), rtol=0, atol=0
    )
    # no parameters: nothing to train in its group, and it comes back from its config alone
    optimizer_groups = configure_trainable(
        model, {group: {"mode": "full"} for group in group_prefixes()}, lr=1e-4, weight_decay=0.0, new_token_ids=[]
    )
    assert not any(group["name"].startswith("encoder_") for group in optimizer_groups)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = load_unigr(tmp_path)
    assert loaded.config.encoders == {"position2d": {"scale": 2.0}}
    torch.testing.assert_close(_logits(loaded.eval(), loaded_processor, sample), _logits(model, processor, sample))
