"""SAM2 video propagation: conditioning frames chosen by object score, one path for training and inference,
features cached per video and encoded in chunks, bf16 weights."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from model.heads.sam2_video import prepare_features, upscale_mask_logits
from model.heads.seg_sam2 import PromptableVideoSAM2, SegHeadConfig
from utils.training.config import load_config

ROOT = Path(__file__).resolve().parents[1]
NO_OBJECT = -1024.0  # SAM2's NO_OBJ_SCORE: the mask logit of a frame gated as "no object"


@pytest.fixture(scope="module")
def head(tiny_cfg: dict) -> PromptableVideoSAM2:
    torch.manual_seed(0)
    return PromptableVideoSAM2(SegHeadConfig.from_dict(tiny_cfg["seg"])).eval()


def _configure(head: PromptableVideoSAM2, monkeypatch, **options) -> None:
    """Other :class:`SegHeadConfig` options for ``head`` until the test ends."""
    monkeypatch.setattr(head, "config", dataclasses.replace(head.config, **options))


def _video(head: PromptableVideoSAM2, num_frames: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(num_frames, 3, head.image_size, head.image_size, generator=generator)  # (T, 3, S, S)


def _prompts(head: PromptableVideoSAM2, num_objects: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (num_objects, head.config.num_prompt_tokens, head.sam2.sam_prompt_embed_dim)
    return torch.randn(shape, generator=generator)  # (O, K, C)


def _force_object_scores(head: PromptableVideoSAM2, frames: torch.Tensor, scores: torch.Tensor, monkeypatch) -> list:
    """Make SAM2's decoder report ``scores[:, t]`` ``(O, T)`` when the prompt is decoded on frame ``t`` without
    memory, and +4 ("present") on tracked frames. Returns the list ``(frame, reverse, batch)`` of tracked frames."""
    sam = head.sam2
    with torch.no_grad():
        feats, _, sizes = prepare_features(sam, head.encode_frames(frames))
    height, width = sizes[-1]
    keys = (feats[-1] + sam.no_mem_embed).permute(1, 2, 0).unflatten(2, (height, width))  # (T, C, H, W)
    decode = sam.sam_mask_decoder.forward

    def forced(image_embeddings: torch.Tensor, **kwargs) -> tuple:
        low_res, ious, tokens, object_logits = decode(image_embeddings=image_embeddings, **kwargs)
        prompted = [t for t, key in enumerate(keys) if torch.allclose(image_embeddings[0], key, atol=1e-5)]
        forced_logits = scores[:, prompted[0], None] if prompted else torch.full_like(object_logits, 4.0)
        return low_res, ious, tokens, forced_logits.to(object_logits)

    tracked = []
    track_step = sam._track_step

    def spy(frame_idx, is_init_cond_frame, feats, *args):
        tracked.append((frame_idx, args[-2], feats[-1].shape[1]))  # args[-2]: track_in_reverse
        return track_step(frame_idx, is_init_cond_frame, feats, *args)

    monkeypatch.setattr(sam.sam_mask_decoder, "forward", forced)
    monkeypatch.setattr(sam, "_track_step", spy)
    return tracked


def test_a_target_absent_on_frame_0_conditions_where_it_scores_highest(head, monkeypatch) -> None:
    """Object 0 appears on frame 3 (scores highest there), object 1 scores highest on frame 1: each is
    conditioned there, tracked forwards after it and backwards before it. "first" conditions both on frame 0,
    where object 0's prompt is gated to "no object"."""
    frames, prompts = _video(head, 8, seed=1), _prompts(head, 2, seed=1)
    scores = torch.tensor([[-8.0, -8, -8, 6, 4, 4, 4, 4], [3.0, 5, 3, 3, 3, 3, 3, 3]])
    tracked = _force_object_scores(head, frames, scores, monkeypatch)
    out = head.propagate(head.init_state(frames), prompts, list(range(8)))
    assert out["object_logits"][0, 3] == 6 and out["object_logits"][1, 1] == 5  # decoded with the prompt
    forwards = [(t, False, 1) for t in range(4, 8)]
    backwards = [(t, True, 1) for t in (2, 1, 0)]
    assert tracked == forwards + backwards + [(t, False, 1) for t in range(2, 8)] + [(0, True, 1)]
    assert (out["mask_logits"][0, :3] > NO_OBJECT).any()  # masks before frame 3, by backward propagation

    tracked.clear()
    _configure(head, monkeypatch, cond_frames="first")
    out = head.propagate(head.init_state(frames), prompts, list(range(8)))
    assert [t for t, reverse, _ in tracked] == list(range(1, 8)) and not any(r for _, r, _ in tracked)
    assert out["object_logits"][0, 0] == -8 and (out["mask_logits"][0, 0] == NO_OBJECT).all()


def test_candidates_limit_where_the_prompt_conditions(head, monkeypatch) -> None:
    frames, prompts = _video(head, 6, seed=2), _prompts(head, 1, seed=2)
    scores = torch.tensor([[9.0, 1, 2, 8, 1, 1]])
    tracked = _force_object_scores(head, frames, scores, monkeypatch)
    out = head.propagate(head.init_state(frames), prompts, [1, 2, 3])  # frame 0 scores highest but was not seen
    assert out["object_logits"][0, 3] == 8 and sorted(t for t, _, _ in tracked) == [0, 1, 2, 4, 5]


def test_the_state_path_gives_the_training_path_masks(head, monkeypatch) -> None:
    """Inference (state, chunked, cached) and training (``segment_videos`` on a batch of two videos) agree."""
    videos = [_video(head, 6, seed=3), _video(head, 6, seed=4)]
    prompts, video_index, candidates = _prompts(head, 3, seed=3), torch.tensor([0, 1, 1]), [1, 2, 4]
    for options in ({}, {"num_cond_frames": 2}, {"cond_frames": "first"}, {"propagation": "independent"}):
        _configure(head, monkeypatch, **options)
        with torch.no_grad():
            batch = head.segment_videos(head.encode_frames(torch.cat(videos)), 6, prompts, video_index, candidates)
        for v, frames in enumerate(videos):
            objects = video_index == v
            out = head.propagate(head.init_state(frames, chunk_size=4), prompts[objects], candidates)
            size = (head.image_size,) * 2
            torch.testing.assert_close(upscale_mask_logits(out["mask_logits"], size), batch["mask_logits"][objects])
            torch.testing.assert_close(out["object_logits"], batch["object_logits"][objects])


def test_training_path_keeps_gradients_to_the_prompts(head) -> None:
    trained = copy.deepcopy(head).train()
    prompts = _prompts(head, 2, seed=5).requires_grad_()
    frames = _video(head, 4, seed=5)
    out = trained.segment_videos(trained.encode_frames(frames), 4, prompts, torch.zeros(2, dtype=torch.long))
    assert out["mask_logits"].shape == (2, 4, head.image_size, head.image_size) and out["object_logits"].shape == (2, 4)
    (out["mask_logits"].sigmoid().mean() + out["object_logits"].mean()).backward()
    assert prompts.grad is not None and prompts.grad.abs().sum() > 0


def test_a_second_propagate_encodes_no_frame_again(head, monkeypatch) -> None:
    encoded = []
    encode = head.encode_frames
    monkeypatch.setattr(head, "encode_frames", lambda frames: encoded.append(len(frames)) or encode(frames))
    state = head.init_state(_video(head, 5, seed=6), chunk_size=2)
    first = head.propagate(state, _prompts(head, 2, seed=6), [0, 2, 4])
    assert encoded == [2, 2, 1]
    second = head.propagate(state, _prompts(head, 1, seed=7), [1, 3])
    assert encoded == [2, 2, 1]
    assert first["mask_logits"].shape == (2, 5, head.image_size // 4, head.image_size // 4)
    assert second["mask_logits"].device.type == "cpu" and second["object_logits"].shape == (1, 5)


def test_chunked_encoding_equals_one_batch(head) -> None:
    frames, prompts = _video(head, 7, seed=8), _prompts(head, 2, seed=8)
    chunked, whole = head.init_state(frames, chunk_size=3), head.init_state(frames, chunk_size=7)
    a, b = head.propagate(chunked, prompts), head.propagate(whole, prompts)
    for t in range(7):
        for x, y in zip(chunked.features[t], whole.features[t]):
            torch.testing.assert_close(x, y)
    torch.testing.assert_close(a, b)


def test_uint8_frames_give_the_float_frames_masks(head) -> None:
    frames = (_video(head, 3, seed=10) * 255).round().to(torch.uint8)
    prompts = _prompts(head, 1, seed=10)
    as_uint8 = head.propagate(head.init_state(frames), prompts)
    as_float = head.propagate(head.init_state(frames.float() / 255), prompts)
    torch.testing.assert_close(as_uint8, as_float, atol=1e-4, rtol=1e-4)


def test_a_bf16_head_takes_float32_frames_and_returns_float32_logits(head) -> None:
    bf16 = copy.deepcopy(head).to(torch.bfloat16)
    frames, prompts = _video(head, 4, seed=9), _prompts(head, 2, seed=9)
    with torch.no_grad():
        batch = bf16.segment_videos(bf16.encode_frames(frames), 4, prompts, torch.zeros(2, dtype=torch.long))
    state = bf16.propagate(bf16.init_state(frames), prompts, [0, 2])
    for out in (batch, state):
        assert out["mask_logits"].dtype == out["object_logits"].dtype == torch.float32
        assert torch.isfinite(out["object_logits"]).all()


def test_multimask_stability_swap_stays_off(head) -> None:
    """SAM2's single-mask output is never swapped for a multimask one at evaluation (train and test agree)."""
    sam = head.sam2
    assert not sam.multimask_output_in_sam and not sam.multimask_output_for_tracking
    assert not sam.sam_mask_decoder.dynamic_multimask_via_stability
    configs = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "configs" / "model").glob("*.yaml"))
    for path in configs:
        cfg = load_config(path) if path.parent.name == "configs" else OmegaConf.load(path)
        overrides = cfg.model.seg.sam2_overrides
        assert overrides["model.multimask_output_in_sam"] is False, path.name
