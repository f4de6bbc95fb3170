"""The 3D-scene quick start runs end to end (tiny budget here; the full run is `python scripts/quickstart_scenes.py`).

Scan2Cap is left out of the end-to-end run: its METEOR starts a Java process per call (seconds each); its chance
answers are checked on their own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from evaluation.benchmarks import parse_options
from evaluation.prediction_store import PredictionStore
from scripts import quickstart_scenes
from utils.training.config import load_config


def test_most_frequent_answer_breaks_ties_by_sorted_order() -> None:
    assert quickstart_scenes.most_frequent(["two", "one", "two", "one", "three"]) == "one"
    assert quickstart_scenes.most_frequent(["red", "blue", "red"]) == "red"


def test_quickstart_scenes_trains_and_scores_every_benchmark_against_blind_and_chance(tmp_path: Path, capsys) -> None:
    args = ["--data-root", str(tmp_path / "data"), "--work-dir", str(tmp_path / "work")]
    args += ["--num-train", "2", "--num-eval", "1", "--steps", "2", "--reading-steps", "2"]
    args += ["--frame-size", "32", "48", "--room-frames", "8"]
    args += ["--max-new-tokens", "4"]
    benchmarks = ["scanrefer", "multi3drefer", "scanqa", "sqa3d"]
    results = quickstart_scenes.main([*args, "--benchmarks", *benchmarks])
    work = tmp_path / "work"
    assert (work / "final" / "model.safetensors").is_file()
    config = json.loads((work / "final" / "config.json").read_text())
    assert config["grounding"] is not None and "position3d" in config["encoders"]
    # Stage 1 read 2 frames per room and stage 2, which started from its model, 8.
    assert json.loads((work / "reading" / "final" / "config.json").read_text())["inputs"]["num_frames"] == 2
    assert config["inputs"]["num_frames"] == 8
    assert f"pretrained: {work / 'reading' / 'final'}" in (work / "config.yaml").read_text()
    summary = json.loads((work / "results.json").read_text())
    assert list(summary) == benchmarks == list(results)
    for benchmark, rows in summary.items():
        assert list(rows) == ["trained", "blind", "chance"]
        assert all(list(row) == list(quickstart_scenes.HEADLINE_METRICS[benchmark]) for row in rows.values())
        assert all(value >= 0 for row in rows.values() for value in row.values())
        assert all(results[benchmark][model]["overall"]["count"] > 0 for model in rows)
    # Captions are tokenised as GPT4Scene's and Chat-Scene's PTB tokenizer does (its pure-Python stand-in).
    assert {results["scanqa"][model]["tokenizer"] for model in quickstart_scenes.MODELS} == {"simple"}
    # Chance names one proposal of the scene per ScanRefer description, and answers ScanQA by question type.
    chance = PredictionStore(work / "eval" / "scanrefer" / "chance").records()
    assert chance and all(re.fullmatch(r"<OBJ\d{3}>\.", record["answer"]) for record in chance.values())
    train_root, eval_root = tmp_path / "data" / "synthetic_scenes_train", tmp_path / "data" / "synthetic_scenes"
    frequent = quickstart_scenes.training_answers("scanqa", train_root)
    qa_chance = {r["answer"] for r in PredictionStore(work / "eval" / "scanqa" / "chance").records().values()}
    assert qa_chance <= set(frequent.values())
    # Scan2Cap's chance caption is one of the training captions, the same for every object.
    captions = set(quickstart_scenes.chance_answers("scan2cap", eval_root, train_root).values())
    assert len(captions) == 1 and captions <= set(quickstart_scenes.training_answers("scan2cap", train_root).values())
    table = (work / "results.md").read_text()
    assert table in capsys.readouterr().out
    assert "| scanrefer | Acc@0.25 |" in table and "| sqa3d | EM |" in table and "exact expectation" in table
    # A second run finds the rooms, the model and the predictions on disk and only re-scores.
    quickstart_scenes.main([*args, "--benchmarks", "scanrefer"])
    out = capsys.readouterr().out
    assert "already generated" in out and "already trained" in out and "already predicted" in out


def test_training_points_only_the_configs_own_datasets_at_the_training_rooms(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "two.yaml"
    config.write_text("data:\n  datasets:\n    scanqa: {loader: scanqa}\n    sqa3d: {loader: sqa3d}\n")
    commands = []
    monkeypatch.setattr(quickstart_scenes.subprocess, "run", lambda command, **kwargs: commands.append(command))
    quickstart_scenes.train(tmp_path / "rooms", tmp_path / "work", 5, config, start_from=tmp_path / "stage1")
    (command,) = commands
    assert command[command.index("--config") + 1] == str(config)
    assert f"model.pretrained={tmp_path / 'stage1'}" in command
    roots = [item for item in command if ".root=" in item]
    assert roots == [f"data.datasets.{name}.root={tmp_path / 'rooms'}" for name in ("scanqa", "sqa3d")]
    assert "train.max_steps=5" in command


def test_each_benchmark_is_evaluated_with_the_loader_options_it_is_trained_with(tmp_path: Path) -> None:
    config = OmegaConf.to_container(load_config(quickstart_scenes.CONFIG))  # with its defaults merged
    for name in quickstart_scenes.SCENE_BENCHMARKS:
        trained = dict(config["data"]["datasets"][name].get("options", {}))
        trained.pop("questions_per_sample", None)
        assert parse_options(quickstart_scenes.loader_options(name)) == trained, name
    own = tmp_path / "own.yaml"  # a stage-2 config of one's own (--config), on the unsituated quick start's
    sqa3d = {"sqa3d": {"options": {"situated": False}}}  # merged into the base's {questions_per_sample: 1}
    base = quickstart_scenes.ROOT / "configs" / "quickstart_scenes.yaml"
    own.write_text(yaml.safe_dump({"defaults": [str(base)], "data": {"datasets": sqa3d}}))
    assert parse_options(quickstart_scenes.loader_options("sqa3d", own)) == {"situated": False}
    assert "situated=false" in quickstart_scenes.benchmark_arguments("sqa3d", tmp_path, own)
    situated = quickstart_scenes.ROOT / "configs" / "quickstart_scenes_situated.yaml"  # its defaults: the base
    assert parse_options(quickstart_scenes.loader_options("sqa3d", situated)) == {"situated": True}
    assert parse_options(quickstart_scenes.loader_options("scanqa", situated)) == {"read_object": True}


def test_rooms_of_another_seed_are_refused_not_reused(tmp_path: Path, monkeypatch) -> None:
    written = []

    def generate(root: Path, split: str, count: int, seed: int, config) -> None:
        written.append((root.name, split, seed))
        (root / quickstart_scenes.SCANREFER_FILE.format(split=split)).parent.mkdir(parents=True, exist_ok=True)
        (root / quickstart_scenes.SCANREFER_FILE.format(split=split)).write_text("[]")

    monkeypatch.setattr(quickstart_scenes, "generate_scene_benchmarks", generate)
    train, evaluated, config = tmp_path / "train", tmp_path / "eval", quickstart_scenes.RoomConfig()
    quickstart_scenes.generate_rooms(train, evaluated, 2, 1, config, train_seed=3, eval_seed=2)
    assert written == [("train", "train", 3), ("eval", "val", 2), ("eval", "test", 2)]
    assert json.loads((evaluated / quickstart_scenes.SEEDS_FILE).read_text()) == {"val": 2, "test": 2}
    quickstart_scenes.generate_rooms(train, evaluated, 2, 1, config, train_seed=3, eval_seed=2)
    assert len(written) == 3  # the same seeds: found on disk
    with pytest.raises(ValueError, match="holds train rooms of seed 3, not 1"):
        quickstart_scenes.generate_rooms(train, evaluated, 2, 1, config)
    with pytest.raises(ValueError, match="different seeds"):
        quickstart_scenes.generate_rooms(tmp_path / "a", tmp_path / "b", 2, 1, config, train_seed=4, eval_seed=4)
