"""The HOI-QA quick start runs end to end (tiny budget here; the full run is `python scripts/quickstart_hoi.py`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2

from scripts import quickstart_hoi
from utils.data.hoi_qa import TASKS


def test_the_table_puts_box_tasks_first_and_says_whether_the_trained_model_beats_every_baseline() -> None:
    rows = {
        "objBB2objN": {"questions": 3, "trained acc": 0.5, "blind acc": 0.1, "prior": 0.2, "random": 0.1},
        "handN2handBB": {"questions": 4, "trained acc": 0.5, "blind acc": 0.25, "prior": 0.5, "random": 0.0},
    }
    rows["objBB2objN"] |= {"trained IoU": math.nan, "blind IoU": math.nan}
    rows["handN2handBB"] |= {"trained IoU": 0.6, "blind IoU": 0.3}
    lines = quickstart_hoi.results_table(rows).splitlines()
    assert lines[2] == "| handN2handBB | box | 4 | 0.500 | 0.250 | 0.500 | 0.000 | 0.600 | 0.300 | no |"
    assert lines[3] == "| objBB2objN | noun | 3 | 0.500 | 0.100 | 0.200 | 0.100 | - | - | yes |"


def test_quickstart_hoi_trains_and_scores_every_task_against_blind_and_chance(tmp_path: Path, capsys) -> None:
    args = ["--data-root", str(tmp_path / "data"), "--work-dir", str(tmp_path / "work")]
    args += ["--num-train", "40", "--num-test", "3", "--steps", "2", "--max-new-tokens", "4"]
    rows = quickstart_hoi.main(args)
    work, eval_root = tmp_path / "work", tmp_path / "data" / "synthetic_hoi"
    config = json.loads((work / "final" / "config.json").read_text())
    assert "position2d" in config["encoders"]
    tokens = json.loads((work / "final" / "tokenizer.json").read_text())["added_tokens"]
    assert {"<0>", "<17>", "<100>"} <= {token["content"] for token in tokens}  # location tokens
    processor = json.loads((work / "final" / "processor_config.json").read_text())["image_processor"]
    assert processor["size"]["longest_edge"] == quickstart_hoi.MAX_PIXELS
    chance = json.loads((eval_root / "chance_baselines.json").read_text())
    assert list(rows) == [task for task in TASKS if task in chance] and "objN2objBB" in rows
    assert json.loads((work / "results.json").read_text()).keys() == rows.keys()
    for task, row in rows.items():
        assert row["questions"] == chance[task]["questions"] > 0
        assert (row["prior"], row["random"]) == (chance[task]["prior"], chance[task]["random"])
        assert all(0 <= row[f"{model} acc"] <= 1 for model in quickstart_hoi.MODELS)
        assert math.isnan(row["trained IoU"]) == (TASKS[task][1] != "box")
    for model in ("trained", "blind"):  # every test question predicted by the real scripts
        metrics = json.loads((work / "eval" / model / "metrics.json").read_text())
        assert metrics["overall"]["count"] == sum(row["questions"] for row in rows.values())
    sheet = cv2.imread(str(work / "boxes.png"))  # test frames with the true and the predicted boxes
    assert sheet is not None and sheet.shape[0] >= 108 * quickstart_hoi.SHEET_SCALE
    table = (work / "results.md").read_text()
    assert table in capsys.readouterr().out
    assert "| objN2objBB | box |" in table and "| handN2objN | noun |" in table
    # A second run finds the frames, the model and the predictions on disk and only re-scores.
    quickstart_hoi.main(args)
    out = capsys.readouterr().out
    assert "already generated" in out and "already written" in out and "already trained" in out
    assert "already predicted" in out
