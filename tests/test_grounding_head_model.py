"""The proposal grounding head inside UniGR: ``[GRD]`` in the tokenizer and config, ScanRefer / Multi3DRefer samples
loaded and collated for it, its losses and gradients in training (also through ``train.py``), its save / load round
trip, and the proposals it picks for the ``[GRD]`` a generation emits."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from evaluation.answer_predictor import UniGRAnswerPredictor
from model.builder import add_grounding_head, build_unigr, load_unigr
from model.heads.proposal_grounding import GroundingHeadConfig, ProposalGroundingHead, select_proposals
from tests.conftest import QUICKSTART
from tests.test_model import ForceAnswer
from utils.data import scanrefer  # noqa: F401  (registers the loaders)
from utils.data.collate import SampleCollator
from utils.data.prompts import GRD_TOKEN, PROPOSAL_GROUNDING_ANSWER, SEG_TOKEN
from utils.data.registry import LOADERS
from utils.data.schema import Sample
from utils.scene3d.token_positions import token_world_positions
from utils.synthetic.rooms import RoomConfig
from utils.synthetic.scene3d_formats import generate_scene_benchmarks

ROOMS = RoomConfig(height=48, width=64, num_frames=4)
SPLIT = "train"


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic rooms with every 3D benchmark in the official layout."""
    root = tmp_path_factory.mktemp("scene3d")
    generate_scene_benchmarks(root, SPLIT, 2, seed=0, config=ROOMS)
    return root


def _load(root: Path, benchmark: str, grounding: str = "head"):
    return LOADERS[benchmark].build(root, SPLIT, num_frames=4, train=False, seed=0, grounding=grounding)


@pytest.fixture(scope="module")
def grounding_model(tiny_parts):
    """``(model, processor)``: tiny UniGR with the 3D position encoder and the grounding head, in eval mode."""
    model, processor = build_unigr(tiny_parts["backbone"], None, encoders={"position3d": {}}, grounding={})
    return model.eval(), processor


@pytest.fixture(scope="module")
def scanrefer_sample(scene_root: Path) -> Sample:
    return _load(scene_root, "scanrefer")[0]


@pytest.fixture(scope="module")
def multi_sample(scene_root: Path) -> Sample:
    """A Multi3DRefer sample with several targets."""
    dataset = _load(scene_root, "multi3drefer")
    return next(s for s in (dataset[i] for i in range(len(dataset))) if len(s.boxes_3d[0]) > 1)


@pytest.fixture(scope="module")
def plain_sample() -> Sample:
    """A two-frame video with no scene, larger than the rooms' frames (so its video grid differs)."""
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    conversation = [{"role": "user", "content": "What is there?"}, {"role": "assistant", "content": "A room."}]
    return Sample("plain/test/0", frames, ["0", "1"], conversation, timestamps=np.array([0.0, 0.5]))


def _collate(model, processor, samples: list[Sample], inference: bool = False) -> dict:
    return SampleCollator.for_model(model, processor, inference=inference)(samples)


# --- token, config, data -----------------------------------------------------------------------------------


def test_grd_is_a_special_token_whose_id_the_config_holds_with_the_head(grounding_model, tiny_parts) -> None:
    model, processor = grounding_model
    tokenizer = processor.tokenizer
    grd = tokenizer.convert_tokens_to_ids(GRD_TOKEN)
    assert model.config.grd_token_id == grd != tokenizer.convert_tokens_to_ids(SEG_TOKEN)
    assert tokenizer.encode(PROPOSAL_GROUNDING_ANSWER, add_special_tokens=False).count(grd) == 1
    assert model.get_input_embeddings().weight.shape[0] > grd
    assert isinstance(model.grounding_head, ProposalGroundingHead) and model.grounding_head.grd_token_id == grd
    assert model.config.grounding == GroundingHeadConfig().to_dict()
    plain, _ = build_unigr(tiny_parts["backbone"], None)
    assert plain.grounding_head is None and plain.config.grounding is None and plain.config.grd_token_id is None


def test_head_style_loaders_answer_with_one_grd_and_carry_the_ground_truth_boxes(scene_root: Path) -> None:
    ids_style, head_style = _load(scene_root, "scanrefer", "ids"), _load(scene_root, "scanrefer")
    for i in range(len(head_style)):
        by_ids, by_head = ids_style[i], head_style[i]
        assert by_head.conversation[0] == by_ids.conversation[0]
        assert by_head.conversation[1]["content"] == PROPOSAL_GROUNDING_ANSWER
        assert GRD_TOKEN not in by_ids.conversation[1]["content"] and by_ids.boxes_3d is None
        assert len(by_head.boxes_3d) == 1 and not by_head.grounding_multi
        np.testing.assert_array_equal(by_head.boxes_3d[0], by_head.meta["gt_boxes"])
        assert by_head.boxes_3d[0].shape == (1, 6) and by_head.boxes_3d[0].dtype == np.float32
    multi = _load(scene_root, "multi3drefer")
    counts = {}
    for sample in (multi[i] for i in range(len(multi))):
        assert sample.grounding_multi and sample.conversation[1]["content"] == PROPOSAL_GROUNDING_ANSWER
        np.testing.assert_array_equal(sample.boxes_3d[0], sample.meta["gt_boxes"])
        counts.setdefault(sample.meta["eval_type"][:2], set()).add(len(sample.boxes_3d[0]))
    assert counts["zt"] == {0} and counts["st"] == {1} and min(counts["mt"]) >= 2
    with pytest.raises(ValueError, match="scanrefer: grounding must be one of"):
        _load(scene_root, "scanrefer", "boxes")


def test_grounding_targets_without_proposals_or_with_too_many_boxes_are_refused(scanrefer_sample) -> None:
    with pytest.raises(ValueError, match=r"boxes_3d\[0\]: 3D grounding targets need the scene's proposals"):
        dataclasses.replace(scanrefer_sample, proposals=None, proposal_labels=None)
    with pytest.raises(ValueError, match="proposal_labels must name each of the proposals"):
        dataclasses.replace(scanrefer_sample, proposal_labels=["chair"])
    two = [np.zeros((2, 6), np.float32)]
    with pytest.raises(ValueError, match="2 boxes for one \\[GRD\\]; several targets need grounding_multi"):
        dataclasses.replace(scanrefer_sample, boxes_3d=two)
    assert dataclasses.replace(scanrefer_sample, boxes_3d=two, grounding_multi=True).boxes_3d[0].shape == (2, 6)
    with pytest.raises(ValueError, match=r"expected \(K, 6\) centre \+ size boxes, got shape \(6,\)"):
        dataclasses.replace(scanrefer_sample, boxes_3d=[np.zeros(6)])


def test_collated_token_positions_follow_each_samples_own_video_tokens(
    grounding_model, scanrefer_sample, plain_sample
) -> None:
    model, processor = grounding_model
    batch = _collate(model, processor, [plain_sample, scanrefer_sample])
    grids = batch["video_grid_thw"]
    assert grids[0].tolist() != grids[1].tolist()
    assert batch["token_positions"][0] is None and batch["grounding_multi"] == [False, False]
    positions, valid = batch["token_positions"][1]
    expected, expected_valid = token_world_positions(scanrefer_sample.scene, grids[1])
    num_video_tokens = int((batch["input_ids"][1] == model.config.backbone_config.video_token_id).sum())
    assert positions.shape == (num_video_tokens, 3) and bool(valid.any())
    torch.testing.assert_close(positions, torch.from_numpy(expected), equal_nan=True)
    assert torch.equal(valid, torch.from_numpy(expected_valid))
    assert batch["gt_boxes_3d"][0] is None
    torch.testing.assert_close(batch["gt_boxes_3d"][1][0], torch.from_numpy(scanrefer_sample.boxes_3d[0]))
    views, names = batch["proposal_views"][1], batch["proposal_label_ids"][1]
    assert batch["proposal_views"][0] is None and batch["proposal_label_ids"][0] is None
    assert views.token_weights.shape == (len(scanrefer_sample.proposals), num_video_tokens)
    decoded = [processor.tokenizer.decode([t for t in row.tolist() if t >= 0]).strip() for row in names]
    assert decoded == scanrefer_sample.proposal_labels

    prompt = _collate(model, processor, [plain_sample, scanrefer_sample], inference=True)
    assert "gt_boxes_3d" not in prompt and prompt["grounding_multi"] == [False, False]
    torch.testing.assert_close(prompt["token_positions"][1][0], positions, equal_nan=True)
    mismatched = dataclasses.replace(scanrefer_sample, boxes_3d=[scanrefer_sample.boxes_3d[0]] * 2)
    turns = "in its assistant turns"
    with pytest.raises(ValueError, match=f"scanrefer/train/0: 2 boxes_3d entries for 1 \\[GRD\\] {turns}"):
        _collate(model, processor, [mismatched])
    untargeted = dataclasses.replace(scanrefer_sample, boxes_3d=None)
    with pytest.raises(ValueError, match=f"scanrefer/train/0: no boxes_3d entries for 1 \\[GRD\\] {turns}"):
        _collate(model, processor, [plain_sample, untargeted])


# --- training ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("benchmark, term", [("scanrefer", "grd_ce"), ("multi3drefer", "grd_bce")])
def test_forward_with_labels_gives_the_grounding_loss_and_a_gradient_to_every_head_parameter(
    grounding_model, scanrefer_sample, multi_sample, benchmark, term
) -> None:
    model, processor = grounding_model
    sample = scanrefer_sample if benchmark == "scanrefer" else multi_sample
    model.zero_grad()
    out = model(**_collate(model, processor, [sample]))
    assert out.losses[term] > 0 and out.losses["grounding_idle"] == 0
    assert len(out.grounding_logits[0]) == 1 and out.grounding_logits[0].shape[1] == len(sample.proposals) + 1
    out.loss.backward()
    for name, param in model.grounding_head.named_parameters():
        assert param.grad is not None and bool(param.grad.abs().sum() > 0), name
    model.zero_grad()


def test_a_few_optimizer_steps_on_one_batch_reduce_grd_ce(grounding_model, scanrefer_sample) -> None:
    model, processor = grounding_model
    model = copy.deepcopy(model).train()
    batch = _collate(model, processor, [scanrefer_sample])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        out = model(**batch)
        losses.append(out.losses["grd_ce"].item())
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert losses[-1] < 0.5 * losses[0], losses


def test_a_batch_without_grd_gives_the_head_an_idle_loss_through_every_parameter(
    grounding_model, scene_root: Path
) -> None:
    model, processor = grounding_model
    model = copy.deepcopy(model).train()
    sample = _load(scene_root, "scanrefer", "ids")[0]  # a scene and proposals, but <OBJ###> text, no [GRD]
    out = model(**_collate(model, processor, [sample]))
    assert out.grounding_logits is None
    assert out.losses["grounding_idle"] == 0 and out.losses["grd_ce"] == 0 and out.losses["grd_bce"] == 0
    out.loss.backward()
    for name, param in model.grounding_head.named_parameters():
        assert param.grad is not None and not bool(param.grad.any()), name


# --- saving, generation --------------------------------------------------------------------------------------


def test_a_saved_model_with_the_head_loads_back_and_grounds_the_same(
    grounding_model, scanrefer_sample, tmp_path: Path
) -> None:
    model, processor = grounding_model
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = load_unigr(tmp_path)
    loaded.eval()
    assert loaded.config.grounding == model.config.grounding and loaded.config.grd_token_id == model.config.grd_token_id
    assert loaded_processor.tokenizer.convert_tokens_to_ids(GRD_TOKEN) == model.config.grd_token_id
    with torch.no_grad():
        before = model(**_collate(model, processor, [scanrefer_sample]))
        after = loaded(**_collate(loaded, loaded_processor, [scanrefer_sample]))
    torch.testing.assert_close(after.grounding_logits[0], before.grounding_logits[0])
    torch.testing.assert_close(after.loss, before.loss)


def test_a_loaded_model_gains_the_head_and_one_with_it_refuses_options_that_shape_its_weights(
    tiny_parts, tmp_path: Path
) -> None:
    plain, processor = build_unigr(tiny_parts["backbone"], None)
    plain.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    model, processor = load_unigr(tmp_path)
    assert model.grounding_head is None
    add_grounding_head(model, processor, {"mode": "multi", "embed_dim": 32})
    assert model.grounding_head.config.embed_dim == 32 and model.grounding_head.config.mode == "multi"
    assert model.config.grd_token_id == processor.tokenizer.convert_tokens_to_ids(GRD_TOKEN)
    weights = {name: value.clone() for name, value in model.grounding_head.state_dict().items()}
    add_grounding_head(model, processor, {"threshold": 0.3, "multi_weight": 2.0})
    assert model.config.grounding["threshold"] == model.grounding_head.config.threshold == 0.3
    assert model.config.grounding["embed_dim"] == 32
    assert all(torch.equal(value, weights[name]) for name, value in model.grounding_head.state_dict().items())
    with pytest.raises(ValueError, match="model.grounding.embed_dim cannot change"):
        add_grounding_head(model, processor, {"embed_dim": 64})


def test_generated_grd_picks_proposals_as_a_teacher_forced_pass_does(
    grounding_model, scanrefer_sample, multi_sample, plain_sample
) -> None:
    model, processor = grounding_model
    samples = [scanrefer_sample, multi_sample, plain_sample]
    batch = _collate(model, processor, samples, inference=True)
    answer = processor.tokenizer.encode(f"{PROPOSAL_GROUNDING_ANSWER}<|im_end|>", add_special_tokens=False)
    prompt_length = batch["input_ids"].shape[1]
    result = model.generate(batch, max_new_tokens=len(answer), logits_processor=[ForceAnswer(answer, prompt_length)])
    assert all(row.tolist() == answer for row in result.sequences[:, prompt_length:])
    width = model.config.backbone_config.text_config.hidden_size
    assert [tuple(states.shape) for states in result.grd_hidden] == [(1, width)] * 3
    grounding = result.grounding
    assert grounding["pred_boxes_3d"][2] == [] and grounding["pred_proposal_ids"][2] == []  # no scene: nothing
    for i, sample in enumerate(samples[:2]):
        (ids,), (boxes,) = grounding["pred_proposal_ids"][i], grounding["pred_boxes_3d"][i]
        torch.testing.assert_close(boxes, torch.from_numpy(sample.proposals)[ids])
        expected = select_proposals(grounding["grounding_logits"][i], sample.grounding_multi, 0.5)[0]
        assert torch.equal(ids, expected)
    assert len(grounding["pred_proposal_ids"][0][0]) <= 1

    single = _collate(model, processor, [scanrefer_sample], inference=True)
    with torch.no_grad():  # the ScanRefer sample's prompt and answer in one teacher-forced pass
        sequence = torch.cat([single["input_ids"], torch.tensor([answer])], dim=1)
        full = {**single, "input_ids": sequence, "attention_mask": torch.ones_like(sequence)}
        full["mm_token_type_ids"] = torch.cat([single["mm_token_type_ids"], torch.zeros(1, len(answer)).long()], 1)
        labels = torch.full_like(sequence, -100)
        labels[:, -len(answer) :] = sequence[:, -len(answer) :]  # the answer, as training marks it
        forced = model(**full, labels=labels)
    torch.testing.assert_close(grounding["grounding_logits"][0], forced.grounding_logits[0], atol=1e-4, rtol=1e-4)


def test_the_model_without_the_head_gives_the_same_logits_for_a_batch_without_a_scene(
    grounding_model, tiny_parts, plain_sample
) -> None:
    model, processor = grounding_model
    plain, plain_processor = build_unigr(tiny_parts["backbone"], None)
    plain.eval()
    with torch.no_grad():
        with_head = model(**_collate(model, processor, [plain_sample]))
        without = plain(**_collate(plain, plain_processor, [plain_sample]))
    torch.testing.assert_close(with_head.logits, without.logits, rtol=0, atol=0)
    assert "grd_ce" not in without.losses and "token_positions" not in _collate(plain, plain_processor, [plain_sample])


# --- train.py ------------------------------------------------------------------------------------------------

RUN_CONFIG = """\
defaults: [{quickstart}]
model:
  grounding: {{}}
  groups:
    grounding: {{mode: full, lr: 1.0e-3, weight_decay: null}}
"""
"""The quick start plus the grounding head and its module group (the quick start's config has neither key)."""


def test_train_py_trains_the_head_and_the_grd_embedding_row(tmp_path: Path, tiny_parts, scene_root: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(RUN_CONFIG.format(quickstart=QUICKSTART))
    run = tmp_path / "run"
    dataset = {"loader": "scanrefer", "root": str(scene_root), "split": SPLIT, "weight": 1}
    dataset["options"] = {"grounding": "head", "scene_root": str(scene_root / "scenes")}
    overrides = [
        f"output_dir={run}",
        "model.pretrained=null",
        f"model.backbone_path={tiny_parts['backbone']}",
        "model.seg=null",
        "model.encoders={position3d: {}}",
        "model.groups.embeddings.mode=new_tokens",  # only [SEG] and [GRD] rows train
        f"data.datasets={json.dumps({'scanrefer': dataset})}",
        "data.num_frames=4",
        "data.samples_per_epoch=4",
        "train.batch_size=2",
        "train.max_steps=2",
        "train.save_every=2",
        "train.num_workers=0",
        "train.log_every=1",
        "device=cpu",
    ]
    final = train.main(["--config", str(config), *overrides])
    logged = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]
    assert len(logged) == 2 and all(entry["grd_ce"] > 0 for entry in logged)

    trained, processor = load_unigr(final)
    torch.manual_seed(0)  # the run's seed: the head starts from the same draw as in train.py
    start, _ = build_unigr(tiny_parts["backbone"], None, encoders={"position3d": {}}, grounding={})
    grd = trained.config.grd_token_id
    assert processor.tokenizer.convert_tokens_to_ids(GRD_TOKEN) == grd
    changed = (trained.get_input_embeddings().weight != start.get_input_embeddings().weight).any(dim=1)
    assert changed.nonzero()[:, 0].tolist() == [grd]  # [SEG] is never in the data: its row gets no gradient
    before = start.grounding_head.state_dict()
    for name, value in trained.grounding_head.state_dict().items():
        assert not torch.equal(value, before[name]), name


def forced_answer_predictor(model, processor, folder: Path, answer: str, seen: list) -> UniGRAnswerPredictor:
    """An answer predictor of ``model`` (saved to ``folder``) whose generations are forced to ``answer``; each
    generation's result is appended to ``seen``."""
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    predictor = UniGRAnswerPredictor(folder, num_frames=4, max_new_tokens=8)
    ids = processor.tokenizer.encode(f"{answer}<|im_end|>", add_special_tokens=False)
    generate = predictor.model.generate

    def forced(inputs, **kwargs):
        seen.append(generate(inputs, logits_processor=[ForceAnswer(ids, inputs["input_ids"].shape[1])], **kwargs))
        return seen[-1]

    predictor.model.generate = forced
    return predictor


def test_the_answer_predictor_writes_each_grd_as_the_proposals_the_head_chose(
    grounding_model, scanrefer_sample, tmp_path: Path
) -> None:
    results = []
    predictor = forced_answer_predictor(*grounding_model, tmp_path, PROPOSAL_GROUNDING_ANSWER, results)
    _, text = predictor.predict(scanrefer_sample)
    chosen = results[0].grounding["pred_proposal_ids"][0][0].tolist()
    named = " and ".join(f"<OBJ{k:03d}>" for k in chosen) or "none"
    assert text == PROPOSAL_GROUNDING_ANSWER.replace(GRD_TOKEN, named)  # the scorers read these ids
