"""The GSM probe trains the GSM alone on a synthetic DSR split and scores it with its own and another video's
geometry (tiny budget here; the measured runs are in the README's "Dynamic spatial reasoning")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scripts import probe_gsm
from scripts.generate_synthetic_dynamic import main as generate_main
from utils.dynamic.qa_templates import QUESTION_TYPES


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("probe") / "data"
    generate_main(["--out", str(root), "--train-videos", "3", "--eval-videos", "2", "--seed", "4"])
    return root


@pytest.mark.parametrize("target", probe_gsm.TARGETS)
def test_the_probe_trains_only_the_gsm_and_scores_own_against_swapped_geometry(dataset, tmp_path, target) -> None:
    out = tmp_path / "out"
    args = ["--data-root", str(dataset), "--out", str(out), "--steps", "2", "--batch-size", "4", "--target", target]
    metrics = probe_gsm.main([*args, "--selection-weight", "1.0"])
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert set(metrics) >= {"own", "swapped"} and metrics["target"] == target
    expected = set(probe_gsm.POSITION_FIELDS) if target == "position" else set(QUESTION_TYPES)
    for scores in (metrics["own"], metrics["swapped"]):
        assert 0.0 <= scores["attention_on_asked"] <= 1.0 and 0.0 <= scores["attention_on_asked_frames"] <= 1.0
        assert 0.0 <= scores["attention_on_other_objects"] <= 1.0 - scores["attention_on_asked"] + 1e-6  # disjoint
        assert target == "position" or 0.0 <= scores["accuracy"] <= 1.0
        reported = {name.removesuffix("_r2") for name in scores}
        among, even = scores["attention_on_asked_among_objects"], scores["attention_on_asked_among_objects_even_reader"]
        assert 0.0 <= among <= 1.0 and 0.0 < even <= 1.0
        assert 0.0 <= scores["attention_on_position_object"] <= scores["attention_on_asked"] + 1e-6  # one of them
        attention = {"attention_on_asked", "attention_on_asked_frames", "attention_on_other_objects"}
        attention |= {"attention_on_asked_among_objects", "attention_on_asked_among_objects_even_reader"}
        attention |= {"attention_on_position_object"}
        assert reported - attention - {"accuracy"} <= expected
    assert (out / "pi3_train.pt").is_file() and any((out / "tb").iterdir())
    cache = torch.load(out / "pi3_eval.pt", weights_only=True)
    assert cache["grid"] == [8, 8, 10] and cache["frame_size"] == [96, 128] and cache["seconds_per_slot"] == 0.5


def test_every_probe_question_knows_its_value_and_the_tokens_that_show_its_objects(dataset, tmp_path) -> None:
    cache = {"grid": [8, 8, 10], "frame_size": [96, 128]}
    generation = json.loads((dataset / "generation.json").read_text())
    questions = probe_gsm.split_probe_questions(dataset, "eval", generation, cache, temporal=2, merge=2)
    assert questions and all(question.question_type in QUESTION_TYPES for question in questions)
    assert all(question.cells and max(question.cells) < 8 * 4 * 5 for question in questions)
    assert all(question.prompt.count("\n(") == 4 and len(question.options) == 4 for question in questions)
    assert all(len(question.position) == 6 and question.position[2] > 0 for question in questions)  # depth > 1 m
    for question in questions:  # the asked objects' tokens, and the other objects' then, lie in the asked frames' slots
        assert question.slots and {cell // (4 * 5) for cell in question.cells} <= set(question.slots)
        assert {cell // (4 * 5) for cell in question.other_cells} <= set(question.slots)
        assert not set(question.other_cells) & set(question.cells)
        assert question.position_cells and set(question.position_cells) <= set(question.cells)
    assert any(question.other_cells for question in questions)  # the worlds have several objects in view
    assert any(len(question.position_cells) < len(question.cells) for question in questions)  # other asked objects


def test_a_selection_loss_is_low_where_the_attention_is_on_the_asked_tokens() -> None:
    question = probe_gsm.ProbeQuestion("v", "q", ["a", "b", "c", "d"], 0, "abs_dis", 1.0, [2, 3], [0.0] * 6)
    on = torch.zeros(1, 2, 6)
    on[..., 2] = on[..., 3] = 0.5
    spread = torch.full((1, 2, 6), 1 / 6)
    assert probe_gsm.selection_loss(on, [question]) < 1e-4 < probe_gsm.selection_loss(spread, [question])
    assert (
        probe_gsm.selection_loss(spread, [probe_gsm.ProbeQuestion("v", "q", [], 0, "abs_dis", 1.0, [], [0.0] * 6)])
        is None
    )


def test_the_oracle_selection_spreads_evenly_over_the_asked_tokens_and_the_probe_runs_with_it(
    dataset, tmp_path
) -> None:
    asked = probe_gsm.ProbeQuestion("v", "q", [], 0, "abs_dis", 1.0, [1, 4], [0.0] * 6)
    unknown = probe_gsm.ProbeQuestion("v", "q", [], 0, "abs_dis", 1.0, [], [0.0] * 6)
    selection = probe_gsm.oracle_selection([asked, unknown], 5)
    torch.testing.assert_close(selection, torch.tensor([[0.0, 0.5, 0.0, 0.0, 0.5], [0.2] * 5]))
    args = ["--data-root", str(dataset), "--out", str(tmp_path), "--steps", "2", "--batch-size", "4"]
    metrics = probe_gsm.main([*args, "--target", "position", "--oracle-selection"])
    assert metrics["oracle_selection"] and metrics["own"]["attention_on_asked"] == pytest.approx(1.0)
    assert metrics["own"]["attention_on_other_objects"] == pytest.approx(0.0)
    assert metrics["own"]["attention_on_asked_among_objects"] == pytest.approx(1.0)  # the asked object, never another
    assert 0.0 < metrics["own"]["attention_on_position_object"] <= 1.0  # its even share of the asked tokens


def test_an_even_reader_over_the_objects_puts_the_asked_tokens_share_on_the_asked_objects() -> None:
    question = probe_gsm.ProbeQuestion("v", "q", [], 0, "abs_dis", 1.0, [1, 4], [0.0] * 6, other_cells=[2, 5, 6])
    alone = probe_gsm.ProbeQuestion("v", "q", [], 0, "abs_dis", 1.0, [3], [0.0] * 6)
    assert probe_gsm.even_object_reader(question) == pytest.approx(2 / 5)
    assert probe_gsm.even_object_reader(alone) == 1.0  # no other object in view: nothing to confuse it with


def test_a_gsm_with_appearance_keys_reads_the_models_own_video_tokens_beside_pi3s(dataset, tmp_path) -> None:
    """With ``appearance_keys`` the probe caches every video's tokens as the model makes them (one per geometry token)
    and trains with them; the swapped control keeps the question's own video tokens and takes another's geometry."""
    args = ["--data-root", str(dataset), "--out", str(tmp_path), "--steps", "2", "--batch-size", "4", "--save"]
    metrics = probe_gsm.main([*args, "--override", "model.encoders.geometry.appearance_keys=true"])
    cache = torch.load(tmp_path / "pi3_eval.pt", weights_only=True)
    assert set(cache["appearance"]) == set(cache["groups"])
    for video, groups in cache["groups"].items():
        assert cache["appearance"][video].shape[0] == groups.shape[0] == 8 * 4 * 5
    saved = load_file(tmp_path / "gsm.safetensors")
    assert any(name.startswith("appearance_proj.") for name in saved)
    assert 0.0 <= metrics["swapped"]["accuracy"] <= 1.0
