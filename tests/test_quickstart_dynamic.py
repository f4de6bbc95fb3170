"""The dynamic spatial reasoning quick start runs end to end (tiny budget here; the full run is
`python scripts/quickstart_dynamic.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from scripts import quickstart_dynamic


def test_the_prior_picks_the_option_nearest_the_typical_training_value_or_the_most_frequent_answer() -> None:
    distances = ["(A) 1.1 m", "(B) 2.3 m", "(C) 4.9 m", "(D) 9.6 m"]
    assert quickstart_dynamic.prior_answer(distances, ["4.0 m", "5.5 m", "6.1 m"]) == "C"
    directions = ["(A) left", "(B) front", "(C) back-right", "(D) right"]
    assert quickstart_dynamic.prior_answer(directions, ["front", "right", "front", "left"]) == "B"
    assert quickstart_dynamic.prior_answer(directions, []) == "A"  # nothing known: the first option


def test_the_table_says_whether_the_gsm_model_beats_every_baseline() -> None:
    rows = {
        "abs_dis": {"questions": 8, "gsm": 0.5, "no_gsm": 0.25, "swapped": 0.25, "blind": 0.375, "prior": 0.25},
        "abs_dir": {"questions": 8, "gsm": 0.5, "no_gsm": 0.25, "swapped": 0.5, "blind": 0.375, "prior": 0.25},
        "overall": {"questions": 8, "gsm": 0.5, "no_gsm": 0.5, "swapped": 0.25, "blind": 0.375, "prior": 0.25},
    }
    lines = quickstart_dynamic.results_table(rows).splitlines()
    assert lines[2] == "| abs_dis | 8 | 0.500 | 0.250 | 0.250 | 0.375 | 0.250 | 0.250 | yes |"
    assert lines[3] == "| abs_dir | 8 | 0.500 | 0.250 | 0.500 | 0.375 | 0.250 | 0.250 | no |"  # ties its control
    assert lines[4] == "| **overall** | 8 | 0.500 | 0.500 | 0.250 | 0.375 | 0.250 | 0.250 | no |"


def test_quickstart_dynamic_trains_with_and_without_the_gsm_and_scores_both_against_blind_and_chance(
    tmp_path: Path, capsys
) -> None:
    args = ["--data-root", str(tmp_path / "data"), "--work-dir", str(tmp_path / "work"), "--seed", "5"]
    args += ["--train-videos", "4", "--eval-videos", "2", "--steps", "2", "--gsm-steps", "2"]
    rows = quickstart_dynamic.main(args)
    work = tmp_path / "work"
    with_gsm = json.loads((work / "gsm" / "final" / "config.json").read_text())["encoders"]
    without = json.loads((work / "no_gsm" / "final" / "config.json").read_text())["encoders"]
    assert with_gsm["geometry"]["pi3_checkpoint"].endswith("assets/pi3_tiny_dynamic/model.safetensors")
    assert with_gsm["geometry"]["gsm_checkpoint"] == str(work / "gsm_alone" / "gsm.safetensors")  # the GSM alone first
    assert json.loads((work / "gsm_alone" / "metrics.json").read_text())["target"] == quickstart_dynamic.GSM_TARGET
    assert "geometry" not in without and set(with_gsm) - {"geometry"} == set(without)
    assert (tmp_path / "data" / "synthetic_dynamic_seed5" / "eval" / "benchmark.parquet").is_file()
    assert rows["overall"]["questions"] == sum(row["questions"] for name, row in rows.items() if name != "overall")
    for model in (
        "gsm",
        "no_gsm",
        "swapped",
        "blind",
        "prior",
    ):  # every question predicted and scored by the real scripts
        metrics = json.loads((work / "eval" / model / "metrics.json").read_text())
        assert metrics["overall"]["count"] == rows["overall"]["questions"]
        assert all(0 <= row[model] <= 1 for row in rows.values())
    table = (work / "results.md").read_text()
    assert table in capsys.readouterr().out and "| **overall** |" in table
    quickstart_dynamic.main(args)  # a second run finds everything on disk and only re-scores
    out = capsys.readouterr().out
    assert "skipping" in out and "already trained" in out and "already predicted" in out


def test_a_model_trained_on_option_texts_is_restricted_to_the_option_texts(tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(quickstart_dynamic.run_inference, "main", lambda argv: calls.append(argv))
    monkeypatch.setattr(quickstart_dynamic.run_eval, "main", lambda argv: {})
    for form in ("letter", "option_text"):
        (tmp_path / form / "final").mkdir(parents=True)
        options = {"sources": ["dsr_synthetic"], "mc_prompt": "benchmark", "mc_answer": form}
        config = {"data": {"datasets": {"dsr_synthetic": {"loader": "llava_video", "options": options}}}}
        (tmp_path / form / "config.yaml").write_text(yaml.safe_dump(config))
        assert quickstart_dynamic.answer_form(tmp_path / form / "final") == form
        quickstart_dynamic.evaluate_model("unigr", tmp_path / form / "final", tmp_path, tmp_path / "out")
    letters, texts = calls
    assert "--options-only" not in letters and "--max-new-tokens" in letters
    assert texts[texts.index("--options-only") + 1] == "texts"
