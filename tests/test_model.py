"""UniGR's model: losses, QA-only samples, several objects, memory propagation, generation, LoRA, round trips."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import LogitsProcessor

from model.builder import build_unigr, load_unigr
from model.heads.sam2_video import best_scoring_frames, evenly_spaced
from model.heads.seg_sam2 import SegHeadConfig
from utils.data.collate import SampleCollator
from utils.data.mevis import MeViSDataset
from utils.data.prompts import SEG_TOKEN
from utils.data.schema import Sample


def _batch(processor, model, samples: list[Sample], inference: bool = False) -> dict:
    return SampleCollator(processor, model.seg_head.image_size, inference=inference)(samples)


def _qa_only(sample: Sample) -> Sample:
    conversation = [{"role": "user", "content": "What moves left?"}, {"role": "assistant", "content": "A square."}]
    return dataclasses.replace(sample, conversation=conversation, masks=sample.masks[:0])


@pytest.fixture(scope="module")
def samples(mevis_root: Path) -> list[Sample]:
    dataset = MeViSDataset(mevis_root, "train", num_frames=4, train=True, expressions_per_sample=2)
    return [dataset[0], dataset[5]]


def test_loss_is_weighted_sum_of_ce_bce_dice_objectness_and_location(tiny_model, samples) -> None:
    model, processor = tiny_model
    with torch.no_grad():
        out = model(**_batch(processor, model, samples))
    cfg = model.seg_config
    terms = out.losses
    expected = (
        model.config.ce_weight * terms["ce"]
        + cfg.bce_weight * terms["bce"]
        + cfg.dice_weight * terms["dice"]
        + cfg.objectness_weight * terms["objectness"]
        + cfg.location_weight * terms["loc"]
    )
    torch.testing.assert_close(out.loss, expected)
    assert set(terms) == {"ce", "bce", "dice", "objectness", "loc", "seg_idle"}
    assert all(terms[name] > 0 for name in ("ce", "bce", "dice", "objectness", "loc")) and terms["seg_idle"] == 0
    assert [m.shape for m in out.pred_masks] == [(2, 4, 128, 128)] * 2


def test_gradients_reach_llm_projection_and_sam2(tiny_model, samples) -> None:
    model, processor = tiny_model
    trained = copy.deepcopy(model).train()
    trained(**_batch(processor, trained, samples)).loss.backward()
    grads = {name: p.grad for name, p in trained.named_parameters()}
    for prefix in ("backbone.model.language_model.layers.0.", "seg_head.text_hidden_proj.", "seg_head.sam2.sam_mask"):
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(prefix)), prefix


def test_qa_only_samples_skip_sam2(tiny_model, samples, monkeypatch) -> None:
    model, processor = tiny_model
    batch = _batch(processor, model, [_qa_only(s) for s in samples])
    monkeypatch.setattr(model.seg_head, "encode_frames", lambda *_: pytest.fail("SAM2 ran on a QA-only batch"))
    with torch.no_grad():
        out = model(**batch)
    assert torch.equal(out.loss, out.losses["ce"]) and out.pred_masks is None
    assert all(out.losses[name] == 0 for name in ("bce", "dice", "objectness", "seg_idle"))


def test_mixed_batch_segments_only_seg_samples(tiny_model, samples) -> None:
    model, processor = tiny_model
    with torch.no_grad():
        out = model(**_batch(processor, model, [samples[0], _qa_only(samples[1])]))
    assert [m.shape[0] for m in out.pred_masks] == [2, 0] and out.losses["bce"] > 0


def test_a_rank_without_seg_samples_still_gives_sam2_the_gradients_a_seg_batch_gives(tiny_model, samples) -> None:
    """DeepSpeed ZeRO needs every rank to give gradients to the same parameters in each micro-step."""
    model, processor = tiny_model
    trained = copy.deepcopy(model).train()

    def grads(batch: dict) -> set[str]:
        trained.zero_grad(set_to_none=True)
        trained(**batch).loss.backward()
        return {name for name, p in trained.seg_head.named_parameters() if p.grad is not None}

    qa = _batch(processor, trained, [_qa_only(s) for s in samples])
    qa.pop("gt_masks", None)
    idle, used = grads(qa), grads(_batch(processor, trained, samples))
    assert idle == used and len(used) > 0
    qa_out, seg_out = trained(**qa), trained(**_batch(processor, trained, samples))
    torch.testing.assert_close(qa_out.loss, qa_out.losses["ce"])  # the idle term adds nothing
    assert set(qa_out.losses) == set(seg_out.losses)  # every rank reduces the same metrics


def test_each_seg_token_is_its_own_object(tiny_model, samples) -> None:
    model, processor = tiny_model
    batch = _batch(processor, model, samples[:1])
    sam_frames = batch.pop("sam_frames")
    batch.pop("gt_masks")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
        states = model.seg_head.seg_hidden_states(hidden, batch["input_ids"])
        ((mask_logits, _),) = model.seg_head.segment(states, sam_frames)
        assert mask_logits.shape[0] == samples[0].conversation[1]["content"].count(SEG_TOKEN) == 2
        # Objects share a SAM2 batch but not their masks: each equals the object segmented alone.
        torch.manual_seed(0)
        distinct = torch.randn(2, hidden.shape[-1]) * 100
        ((together, scores),) = model.seg_head.segment([distinct], sam_frames)
        for i in range(2):
            ((alone, alone_scores),) = model.seg_head.segment([distinct[i : i + 1]], sam_frames)
            torch.testing.assert_close(together[i], alone[0], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(scores[i], alone_scores[0], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(scores[0], scores[1])  # (the random SAM2 gates every mask off, not the scores)


def test_conditioning_frames() -> None:
    assert evenly_spaced(list(range(8)), 1) == [0]
    assert evenly_spaced(list(range(8)), 3) == [0, 4, 7]
    assert evenly_spaced([2, 5, 9], 5) == [2, 5, 9]
    scores = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, -1.0, -2.0, 4.0]])
    assert best_scoring_frames(scores, [1, 3, 5, 7], 2) == [(3, 7), (1, 7)]
    assert best_scoring_frames(scores, [1, 3, 5, 7], 9) == [(1, 3, 5, 7)] * 2


def _head_outputs(head, frames: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = head.segment_videos(
            head.encode_frames(frames), frames.shape[0], prompts, torch.zeros(1, dtype=torch.long)
        )
    # Per frame: mask logits (S*S) and the object score, which gates the mask.
    return torch.cat([out["mask_logits"][0].flatten(1), out["object_logits"][0][:, None]], dim=1)  # (T, S*S+1)


def test_memory_carries_the_prompted_frame_to_later_frames(tiny_model) -> None:
    """With memory, a later frame's mask depends on the conditioning frame; prompted independently, it does not."""
    head = copy.deepcopy(tiny_model[0].seg_head)
    head.config = dataclasses.replace(head.config, cond_frames="first")  # frame 0 conditions
    independent = copy.deepcopy(head)
    independent.config = dataclasses.replace(head.config, propagation="independent")
    torch.manual_seed(0)
    frames = torch.rand(4, 3, head.image_size, head.image_size)
    prompts = torch.randn(1, head.config.num_prompt_tokens, head.sam2.sam_prompt_embed_dim)
    changed = frames.clone()
    changed[0] = torch.rand_like(frames[0])
    memory_a, memory_b = _head_outputs(head, frames, prompts), _head_outputs(head, changed, prompts)
    assert not torch.allclose(memory_a[3], memory_b[3])
    independent_a, independent_b = (
        _head_outputs(independent, frames, prompts),
        _head_outputs(independent, changed, prompts),
    )
    torch.testing.assert_close(independent_a[3], independent_b[3])
    torch.testing.assert_close(memory_a[0], independent_a[0])  # frame 0 is prompted the same way in both modes


def test_seg_head_config_rejects_unknown_options() -> None:
    with pytest.raises(ValueError, match="unknown seg head options"):
        SegHeadConfig.from_dict({"propagate": "memory"})
    with pytest.raises(ValueError, match="propagation"):
        SegHeadConfig.from_dict({"propagation": "every"})
    with pytest.raises(ValueError, match="cond_frames"):
        SegHeadConfig.from_dict({"cond_frames": "best"})
    with pytest.raises(ValueError, match="encode_chunk_size"):
        SegHeadConfig.from_dict({"encode_chunk_size": 0})


class ForceAnswer(LogitsProcessor):
    """Constrained decoding: the tokens of ``answer``, in order, whatever the model prefers."""

    def __init__(self, answer: list[int], prompt_length: int):
        self.answer, self.prompt_length = answer, prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = min(input_ids.shape[1] - self.prompt_length, len(self.answer) - 1)
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.answer[step]] = 0
        return forced


@pytest.mark.parametrize("seg_hidden", ["self", "previous"])
def test_generation_keeps_the_seg_states_a_teacher_forced_pass_gives(tiny_model, samples, seg_hidden, monkeypatch):
    model, processor = tiny_model
    monkeypatch.setattr(model.seg_config, "seg_hidden", seg_hidden)
    tokenizer = processor.tokenizer
    batch = _batch(processor, model, samples[:1], inference=True)
    batch.pop("sam_frames")
    answer = tokenizer.encode(f"Sure, {SEG_TOKEN}, {SEG_TOKEN}.<|im_end|>", add_special_tokens=False)
    prompt_length = batch["input_ids"].shape[1]
    result = model.generate(batch, max_new_tokens=len(answer), logits_processor=[ForceAnswer(answer, prompt_length)])
    assert result.sequences[0, prompt_length:].tolist() == answer
    assert result.seg_hidden[0].shape == (2, model.config.backbone_config.text_config.hidden_size)
    with torch.no_grad():  # the whole generated sequence in one teacher-forced pass
        full = {**batch, "input_ids": result.sequences, "attention_mask": torch.ones_like(result.sequences)}
        full["mm_token_type_ids"] = torch.cat(
            [batch["mm_token_type_ids"], torch.zeros(1, len(answer), dtype=batch["mm_token_type_ids"].dtype)], 1
        )
        hidden = model(**full).last_hidden_state
    expected = model.seg_head.seg_hidden_states(hidden, result.sequences)[0]
    torch.testing.assert_close(result.seg_hidden[0], expected, atol=1e-4, rtol=1e-4)


def test_generation_equals_transformers_greedy_generate(tiny_model, samples) -> None:
    model, processor = tiny_model
    batch = _batch(processor, model, samples, inference=True)
    batch.pop("sam_frames")
    ours = model.generate(batch, max_new_tokens=6).sequences
    stock = model.backbone.generate(**batch, max_new_tokens=6, do_sample=False)
    assert torch.equal(ours[:, : stock.shape[1]], stock)


def test_generate_and_segment_masks_every_generated_seg_on_every_frame(tiny_model, samples) -> None:
    model, processor = tiny_model
    batch = _batch(processor, model, samples[:1], inference=True)
    frames = batch.pop("sam_frames")[0]
    answer = processor.tokenizer.encode(f"Sure, {SEG_TOKEN}, {SEG_TOKEN}.<|im_end|>", add_special_tokens=False)
    force = ForceAnswer(answer, batch["input_ids"].shape[1])
    state = model.seg_head.init_state(frames)
    _, (masks,) = model.generate_and_segment(batch, [state], [[0, 2]], max_new_tokens=8, logits_processor=[force])
    assert masks.shape[:2] == (2, 4)


def test_lora_adapters_sit_on_the_llm_only(tiny_parts, tiny_cfg) -> None:
    model, _ = build_unigr(tiny_parts["backbone"], tiny_cfg["seg"], tiny_parts["sam2"], lora={"r": 4, "alpha": 8})
    lora = [name for name, _ in model.named_parameters() if "lora_" in name]
    assert lora and all(name.startswith("backbone.model.language_model.layers.") for name in lora)
    num_layers = model.backbone.config.text_config.num_hidden_layers
    assert len(lora) == num_layers * 7 * 2  # q, k, v, o, gate, up, down; A and B each


def test_seg_token_added_without_shrinking_the_embedding(tiny_model, tiny_parts) -> None:
    model, processor = tiny_model
    rows = model.get_input_embeddings().weight.shape[0]
    with safe_open(tiny_parts["backbone"] / "model.safetensors", "pt") as f:
        stock_rows = f.get_slice("model.embed_tokens.weight").get_shape()[0]
    assert rows >= stock_rows and rows >= len(processor.tokenizer)
    assert model.config.seg_token_id == processor.tokenizer.convert_tokens_to_ids(SEG_TOKEN)


def test_save_and_load_round_trip_in_safetensors(tiny_parts, tiny_cfg, samples, tmp_path: Path) -> None:
    model, processor = build_unigr(tiny_parts["backbone"], tiny_cfg["seg"], tiny_parts["sam2"], lora={"r": 4})
    with torch.no_grad():  # LoRA B starts at zero; make the adapters matter for the comparison
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.02)
    model.eval().save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    loaded, loaded_processor = load_unigr(tmp_path)
    loaded.eval()
    expected, actual = model.state_dict(), loaded.state_dict()
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], msg=key)
    batch = _batch(processor, model, samples)
    with torch.no_grad():
        a, b = model(**batch), loaded(**_batch(loaded_processor, loaded, samples))
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.pred_masks, b.pred_masks)


def test_seg_hidden_previous_projects_the_state_before_each_seg(tiny_model, samples, monkeypatch) -> None:
    model, processor = tiny_model
    batch = _batch(processor, model, samples[:1])
    hidden = torch.arange(batch["input_ids"].shape[1], dtype=torch.float32)[None, :, None].expand(1, -1, 128)
    seg_at = (batch["input_ids"][0] == model.config.seg_token_id).nonzero().flatten().float()
    for mode, expected in (("self", seg_at), ("previous", seg_at - 1)):
        monkeypatch.setattr(model.seg_config, "seg_hidden", mode)
        (states,) = model.seg_head.seg_hidden_states(hidden, batch["input_ids"])
        assert torch.equal(states[:, 0], expected)


def test_a_batch_of_qa_only_samples_still_has_its_ce_loss(tiny_model, samples) -> None:
    model, processor = tiny_model
    batch = _batch(processor, model, [_qa_only(samples[0])])
    batch.pop("gt_masks", None)
    with torch.no_grad():
        out = model(**batch)
    assert out.loss is not None and torch.isfinite(out.loss) and torch.equal(out.loss, out.losses["ce"])


def test_a_pretrained_model_takes_seg_options_that_keep_its_weights_and_refuses_the_rest(tiny_model, tmp_path):
    model, processor = tiny_model
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, _ = load_unigr(tmp_path, seg={"propagation": "independent", "bce_weight": 3.0})
    assert loaded.seg_config.propagation == "independent" and loaded.seg_config.bce_weight == 3.0
    with pytest.raises(ValueError, match="num_prompt_tokens cannot change"):
        load_unigr(tmp_path, seg={"num_prompt_tokens": 1})
    with pytest.raises(ValueError, match="unknown seg head options"):
        load_unigr(tmp_path, seg={"propagate": "memory"})


def test_train_config_lora_goes_onto_a_pretrained_model(tiny_model, tmp_path) -> None:
    from omegaconf import OmegaConf

    from train import build_model

    model, processor = tiny_model
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    cfg = OmegaConf.create(
        {
            "model": {"pretrained": str(tmp_path), "attn_implementation": "sdpa", "lora": {"r": 4}, "seg": None},
            "train": {"dtype": "fp32"},
            "data": {"num_frames": 6},
        }
    )
    built, _ = build_model(cfg)
    assert built.config.lora == {"r": 4} and any("lora_" in name for name, _ in built.named_parameters())
    assert built.config.inputs["num_frames"] == 6
