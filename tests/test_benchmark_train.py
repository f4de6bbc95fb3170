"""The throughput benchmark runs end to end on the tiny config and reports sane figures."""

from __future__ import annotations

import math
from pathlib import Path

from scripts import benchmark_train

TINY = Path(__file__).resolve().parents[1] / "configs" / "model" / "tiny.yaml"


def test_benchmark_reports_positive_finite_figures() -> None:
    figures = benchmark_train.main(
        [
            "--model-config",
            str(TINY),
            "--device",
            "cpu",
            "--frames",
            "2",
            "--batch-size",
            "2",
            "--steps",
            "2",
            "--warmup",
            "0",
            "--qa-fraction",
            "0.5",
        ]
    )
    rates = ("samples_per_s", "samples_per_s_serial", "tokens_per_s", "llm_tflops_per_s", "peak_memory_gib")
    phases = ("collate_ms", "backbone_fwd_ms", "head_fwd_ms", "head_bwd_ms", "backbone_bwd_ms", "optimizer_ms")
    for name in rates + phases + ("step_ms", "tokens_per_sample"):
        assert math.isfinite(figures[name]) and figures[name] > 0, name
    assert 0 <= figures["pad_fraction"] < 1
    assert "mfu" not in figures  # no peak FLOP/s known on the CPU
