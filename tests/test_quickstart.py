"""The quick start runs end to end (tiny budget here; the full run is `bash run_torchrun.sh`)."""

from __future__ import annotations

import json
from pathlib import Path

from scripts import quickstart


def test_quickstart_runs_every_stage_and_prints_the_table(tmp_path: Path, capsys) -> None:
    args = [
        "--data-root",
        str(tmp_path / "data"),
        "--work-dir",
        str(tmp_path / "work"),
        "--num-train",
        "3",
        "--num-valid",
        "1",
        "--num-region-test",
        "1",
        "--train-grounding",
        "--grounding-steps",
        "2",
        "--train-sam2-prompts",
        "--sam2-steps",
        "2",
        "--steps",
        "2",
    ]
    quickstart.main(args)
    work = tmp_path / "work"
    assert (work / "parts" / "qwen2_5_vl_tiny" / "model.safetensors").is_file()
    assert (work / "parts" / "sam2.1_hiera_tiny_prompted.pt").is_file()
    assert (work / "parts" / "unigr_tiny_grounded" / "model.safetensors").is_file()
    assert (work / "grounding" / "hit_rates.png").is_file()
    assert (work / "final" / "model.safetensors").is_file() and (work / "untrained" / "model.safetensors").is_file()
    results = json.loads((work / "results.json").read_text())
    other = results.pop("seed 1")
    region = results.pop("region questions")
    assert list(region) == ["seed 0", "seed 1"]
    for rows in region.values():
        assert list(rows) == [
            "UniGR-tiny, trained",
            "UniGR-tiny, trained, options only",
            "blind (same model, no frames), options only",
        ]
        assert all(0 <= r["overall"]["accuracy"] <= 1 and r["overall"]["count"] > 0 for r in rows.values())
    assert list(results) == ["UniGR-tiny, trained", "UniGR-tiny, before stage 2", "segment every object"]
    assert list(other) == ["UniGR-tiny, trained", "segment every object"]
    assert all(set(r["by_type"]) == {"attribute", "motion"} for r in [*results.values(), *other.values()])
    assert (work / "curves.png").is_file()
    assert sorted(p.name for p in (work / "overlays").iterdir()) == ["attribute.png", "motion.png"]
    table = (work / "results.md").read_text()
    assert table in capsys.readouterr().out and "| segment every object |" in table
    assert "region questions, seed 1 (VideoRefer-Bench-Q format)" in table and "| chance |" in table
    # A second run finds every stage done and only re-prints the table.
    quickstart.main(args)
    assert "already predicted" in capsys.readouterr().out


def test_shipped_sam2_checkpoint_loads_strictly_into_the_tiny_config(tiny_cfg) -> None:
    from model.sam2_builder import build_sam2

    seg = tiny_cfg["seg"]
    build_sam2(seg["sam2_config"], seg["sam2_overrides"], checkpoint=quickstart.SHIPPED_SAM2)
