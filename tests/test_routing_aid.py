"""The routing aid (utils/training/routing_aid.py): boxes become attention targets over the right visual tokens, the
right answer positions are supervised, and its loss trains the attention it names."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from model.visual_tokens import VisualTokens
from utils.data.collate import IGNORE_INDEX, SampleCollator
from utils.data.hoi_qa import TASKS, HoiQADataset
from utils.synthetic.egocentric import EgoConfig, write_hoi_qa
from utils.training.routing_aid import (
    RoutingTarget,
    RoutingTargetCollator,
    answer_box_queries,
    box_cell_weights,
    captured_attention,
    routing_counts,
    routing_loss,
    routing_step,
)


def test_a_box_weighs_each_cell_by_the_share_of_the_box_inside_it() -> None:
    # A 60 x 40 image on a 2 x 3 grid: cells 20 x 20.
    inside_one = box_cell_weights(np.array([22, 2, 38, 18]), (60, 40), (2, 3))
    assert inside_one.tolist() == [0, 1, 0, 0, 0, 0]
    across_two = box_cell_weights(np.array([30, 20, 50, 30]), (60, 40), (2, 3))
    torch.testing.assert_close(across_two, torch.tensor([0, 0, 0, 0, 0.5, 0.5]))
    point = box_cell_weights(np.array([45, 35, 45, 35]), (60, 40), (2, 3))
    assert point.tolist() == [0, 0, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="not inside the 60x40 image"):
        box_cell_weights(np.array([0, 0, 61, 10]), (60, 40), (2, 3))


def test_each_position_predicting_a_box_token_is_paired_with_that_box() -> None:
    texts = ["user", "?", "{", "<1", "0>", "}", "{", "<2>", "}", "<eos>"]
    labels = torch.tensor([IGNORE_INDEX] * 2 + [1] * 8)
    queries, boxes = answer_box_queries(labels, texts)
    assert queries == [1, 2, 3, 4, 5, 6, 7, 8]  # the state before each answer token
    assert boxes == [0, 0, 0, 0, 1, 1, 1, -1]


@pytest.fixture(scope="module")
def hoi_samples(tmp_path_factory: pytest.TempPathFactory) -> list:
    root = tmp_path_factory.mktemp("hoi")
    write_hoi_qa(root, 0, 6, 1, EgoConfig(frames_per_video=2))
    dataset = HoiQADataset(root, "train")
    by_task: dict = {}
    for index in range(len(dataset)):
        sample = dataset[index]
        by_task.setdefault(sample.meta["task"], sample)
    assert set(by_task) == set(TASKS)
    return [by_task[task] for task in TASKS]


def collated(samples: list, model, processor) -> dict:
    tokens = VisualTokens.from_backbone_config(model.config.backbone_config)
    return RoutingTargetCollator(SampleCollator.for_model(model, processor), tokens, processor.tokenizer)(samples)


def test_box_answers_look_at_their_box_word_answers_start_at_the_questions_box_and_others_nowhere(
    hoi_samples, tiny_model
):
    model, processor = tiny_model
    batch = collated(hoi_samples, model, processor)
    rows = zip(hoi_samples, batch["routing_targets"], batch["input_ids"], batch["labels"], batch["image_grid_thw"])
    for sample, target, row, labels, grid_thw in rows:
        task = sample.meta["task"]
        if task in ("objN2handN", "handN2objN"):  # no box in the question or the answer
            assert target is None, task
            continue
        assert target is not None, task
        assert (row[target.keys] == model.config.backbone_config.image_token_id).all()
        torch.testing.assert_close(target.weights.sum(-1), torch.ones(len(target.queries)))
        # every supervised position predicts an answer token
        assert (labels[target.queries + 1] != IGNORE_INDEX).all()
        if TASKS[task][1] != "box":  # a word: only the position predicting its first token looks at the box
            first = int((labels != IGNORE_INDEX).nonzero()[0, 0])
            assert target.queries.tolist() == [first - 1], task
            continue
        # the cell holding the box's centre is among its targets
        height, width = sample.frames.shape[1:3]
        x1, y1, x2, y2 = sample.boxes[0, 0]
        grid = grid_thw[1:] // 2
        cell = int((y1 + y2) / 2 / height * grid[0]) * int(grid[1]) + int((x1 + x2) / 2 / width * grid[1])
        assert target.weights[0, cell] > 0, task
    for sample, target in zip(hoi_samples, batch["routing_targets"]):  # two boxes: each half looks at its own
        if sample.boxes is not None and len(sample.boxes) == 2:
            assert not torch.equal(target.weights[0], target.weights[-1])


def test_the_aid_needs_attention_weights(tiny_model) -> None:
    model, _ = tiny_model
    model = copy.deepcopy(model)
    model.config.backbone_config._attn_implementation = "sdpa"
    model.backbone.set_attn_implementation("sdpa")
    with pytest.raises(RuntimeError, match="attn_implementation: eager"):
        with captured_attention(model.language_model.layers[0].self_attn):
            model(input_ids=torch.tensor([[1, 2, 3]]))


def test_training_on_the_aid_moves_the_attention_onto_the_targets(hoi_samples, tiny_model) -> None:
    model, processor = tiny_model
    model = copy.deepcopy(model).train()
    model.backbone.set_attn_implementation("eager")
    batch = collated(hoi_samples, model, processor)
    layer = model.language_model.layers[1].self_attn
    optimizer = torch.optim.Adam(layer.parameters(), lr=3e-3)
    step = routing_step(lambda m, b: (m(**b).loss * 0, {}), layer=1, weight=1.0)
    masses = []
    for _ in range(15):
        loss, metrics = step(model, dict(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        masses.append(metrics["routing_mass"])
    assert masses[-1] > masses[0] + 0.2
    with torch.no_grad(), captured_attention(layer) as captured:
        model(**{k: v for k, v in batch.items() if k != "routing_targets"})
    aid, readouts = routing_loss(captured[-1], batch["routing_targets"])
    assert readouts["routing_mass"] == pytest.approx(masses[-1], abs=0.1)


def test_train_py_refuses_the_aid_with_packed_rows(tmp_path: Path) -> None:
    from train import main

    with pytest.raises(SystemExit, match="pack_length: null"):
        main(
            [
                "--config",
                "configs/quickstart_hoi.yaml",
                f"output_dir={tmp_path}",
                "model.pretrained=null",
                "data.pack_length=64",
                f"data.datasets.hoi_qa.root={tmp_path}",
            ]
        )


@pytest.fixture(scope="module")
def scanqa_sample(tmp_path_factory: pytest.TempPathFactory):
    from utils.data import scanqa  # noqa: F401  (registers the loader)
    from utils.data.registry import LOADERS
    from utils.synthetic.rooms import RoomConfig
    from utils.synthetic.scene3d_formats import generate_scene_benchmarks

    root = tmp_path_factory.mktemp("rooms")
    config = RoomConfig(height=64, width=80, num_frames=8, spurious_rate=0.0)
    generate_scene_benchmarks(root, "train", 1, seed=0, layout="official", config=config)
    options = {"num_frames": 4, "train": True, "seed": 0, "scene_root": str(root / "scenes"), "questions_per_sample": 2}
    dataset = LOADERS["scanqa"].build(root, "train", **options)
    return next(s for s in (dataset[i] for i in range(len(dataset))) if len(s.meta.get("turn_boxes", ())) == 2)


def test_each_scene_answer_starts_by_looking_at_the_objects_its_question_is_about(scanqa_sample, tiny_model) -> None:
    from utils.scene3d.proposal_views import box_pixel_masks

    model, processor = tiny_model
    batch = collated([scanqa_sample], model, processor)
    target, labels = batch["routing_targets"][0], batch["labels"][0]
    labelled = (labels != IGNORE_INDEX).tolist()
    starts = [p for p, on in enumerate(labelled) if on and not labelled[p - 1]]
    assert target.queries.tolist() == [start - 1 for start in starts]  # one per answer, before its first token
    slots, rows, cols = (int(v) for v in batch["video_grid_thw"][0])
    rows, cols = rows // 2, cols // 2
    frames = scanqa_sample.frames
    for weights, boxes in zip(target.weights, scanqa_sample.meta["turn_boxes"]):
        assert weights.sum() == pytest.approx(1.0)
        masks = box_pixel_masks(scanqa_sample.scene, boxes, frames.shape[1:3]).any(0)  # (T, H, W)
        slot, cell = divmod(int(weights.argmax()), rows * cols)
        row, col = divmod(cell, cols)
        height, width = frames.shape[1:3]
        ys = slice(row * height // rows, (row + 1) * height // rows)
        xs = slice(col * width // cols, (col + 1) * width // cols)
        assert masks[2 * slot : 2 * slot + 2, ys, xs].any()  # the heaviest token shows the object


def test_with_object_tokens_a_scene_answer_looks_at_its_objects_tokens(scanqa_sample, tiny_parts) -> None:
    from model.builder import build_unigr
    from model.encoders.proposal_tokens import PROPOSAL_PLACEHOLDER

    model, processor = build_unigr(tiny_parts["backbone"], None, encoders={"proposals": {"max_proposals": 12}})
    proposals = scanqa_sample.proposals
    last = len(proposals) - 1
    sample = copy.deepcopy(scanqa_sample)
    sample.meta["turn_boxes"] = [proposals[[last]] + 0.02, proposals[[0, 1]]]  # a jittered box matches its proposal
    batch = collated([sample], model.eval(), processor)
    target = batch["routing_targets"][0]
    slots = (batch["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids(PROPOSAL_PLACEHOLDER)).nonzero()[:, 0]
    assert target.keys.tolist() == slots.tolist()  # the object tokens, not the video tokens
    assert target.weights[0].nonzero()[:, 0].tolist() == [last]  # token k is proposal k
    torch.testing.assert_close(target.weights[1, :2], torch.tensor([0.5, 0.5]))
    assert target.weights.sum(1).tolist() == pytest.approx([1.0, 1.0])
    far = copy.deepcopy(sample)  # an object no proposal found: that answer is not supervised
    far.meta["turn_boxes"] = [proposals[[last]] + np.array([50.0, 0, 0, 0, 0, 0]), proposals[[0]]]
    missed = collated([far], model, processor)["routing_targets"][0]
    assert len(missed.queries) == 1 and missed.queries[0] == target.queries[1]


def test_the_aid_averages_over_the_global_batch_however_it_is_split() -> None:
    torch.manual_seed(0)
    attention = torch.rand(2, 2, 6, 6).softmax(-1)
    targets = [
        RoutingTarget(torch.tensor([4, 5]), torch.tensor([0, 1, 2]), torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0]])),
        RoutingTarget(torch.tensor([5]), torch.tensor([1, 2]), torch.tensor([[0.0, 1.0]])),
    ]
    whole, whole_readouts = routing_loss(attention, targets)
    first, first_readouts = routing_loss(attention[:1], targets[:1], count=3)
    second, second_readouts = routing_loss(attention[1:], targets[1:], count=3)
    torch.testing.assert_close(first + second, whole)
    for name in whole_readouts:
        assert first_readouts[name] + second_readouts[name] == pytest.approx(whole_readouts[name])
    counts = routing_counts(lambda batch: {"num_items_in_batch": 7})({"routing_targets": [None, *targets]})
    assert counts == {"num_items_in_batch": 7, "num_routing_queries": 3}
    nothing, readouts = routing_loss(attention, [None, None])  # a rank without targets reports the same terms
    assert nothing.item() == 0 and set(readouts) == set(whole_readouts)


def test_a_multiple_choice_answer_looks_at_the_option_its_letter_labels(tmp_path: Path, tiny_model) -> None:
    from utils.data.llava_video import LLaVAVideoDataset
    from utils.synthetic.dynamic_formats import generate_split
    from utils.synthetic.dynamic_world import DynamicWorldConfig

    model, processor = tiny_model
    generate_split(tmp_path, "train", 1, seed=4, config=DynamicWorldConfig(height=32, width=48, num_frames=6))
    dataset = LLaVAVideoDataset(
        tmp_path, num_frames=4, sources=("dsr_synthetic",), mc_prompt="benchmark", questions_per_sample=3
    )
    samples = [dataset[0], dataset[1]]
    batch = collated(samples, model, processor)
    for sample, target, row, labels in zip(samples, batch["routing_targets"], batch["input_ids"], batch["labels"]):
        answers = [turn["content"] for turn in sample.conversation if turn["role"] == "assistant"]
        questions = [turn["content"] for turn in sample.conversation if turn["role"] == "user"]
        assert target is not None and len(target.queries) == len(answers)  # one per question, each its own
        assert (labels[target.queries + 1] != IGNORE_INDEX).all()  # the positions predicting the letters
        torch.testing.assert_close(target.weights.sum(-1), torch.ones(len(answers)))
        for q, (answer, question) in enumerate(zip(answers, questions)):
            right = processor.tokenizer.decode(row[target.keys[target.weights[q] > 0]]).strip()
            option = next(line for line in question.splitlines() if line.startswith(f"({answer})"))
            assert right == option  # exactly the right option's line: its label and its text
            assert target.keys[target.weights[q] > 0].max() < target.queries[q]  # in its question, before the answer


def test_an_answer_written_as_its_option_text_looks_at_that_option(tmp_path: Path, tiny_model) -> None:
    from utils.data.llava_video import LLaVAVideoDataset
    from utils.synthetic.dynamic_formats import generate_split
    from utils.synthetic.dynamic_world import DynamicWorldConfig

    model, processor = tiny_model
    generate_split(tmp_path, "train", 1, seed=4, config=DynamicWorldConfig(height=32, width=48, num_frames=6))
    options = {"sources": ("dsr_synthetic",), "mc_prompt": "benchmark", "questions_per_sample": 3}
    letters = LLaVAVideoDataset(tmp_path, num_frames=4, **options)
    texts = LLaVAVideoDataset(tmp_path, num_frames=4, mc_answer="option_text", **options)
    by_letter = collated([letters[0]], model, processor)["routing_targets"][0]
    by_text = collated([texts[0]], model, processor)
    target, row = by_text["routing_targets"][0], by_text["input_ids"][0]
    assert target is not None and len(target.queries) == len(by_letter.queries) == 3
    torch.testing.assert_close(target.weights, by_letter.weights)  # the same options, whichever way it is written
    for q, turn in enumerate(t for t in texts[0].conversation if t["role"] == "assistant"):
        right = processor.tokenizer.decode(row[target.keys[target.weights[q] > 0]]).strip()
        assert right.endswith(turn["content"])  # the line of the option the answer writes out
        assert by_text["labels"][0][target.queries[q] + 1] != IGNORE_INDEX  # predicting the answer's first token
