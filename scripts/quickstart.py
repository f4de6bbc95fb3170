"""The quick start, end to end: data -> tiny parts -> stage 0 (grounding) and stage 1 (SAM2 prompts)
-> stage 2 (joint training) -> evaluation.

Stages 0 and 1 are run once and shipped (``assets/``); by default they are copied, and
``--train-grounding`` / ``--train-sam2-prompts`` run them here. Each stage skips work that is already
on disk, so re-running continues where it stopped. It ends with a table of J&F on the synthetic valid
split for the trained model, the same model before stage 2 (the two assets alone), and a "segment every
object" baseline, overall and by expression type, then the same for a valid split generated with
another seed; and the accuracy on region questions (VideoRefer-Bench-Q format, both seeds) of the
trained model (free answers, and answers restricted to the option labels), of the same model given no
frames (blind, restricted to the labels: its free text without frames is no answer), and of chance.

    python scripts/quickstart.py [--data-root data] [--work-dir work_dirs/quickstart]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation import run_eval, run_inference  # noqa: E402
from evaluation.visualize import plot_training_curves, save_sample_overlay  # noqa: E402
from scripts import (  # noqa: E402
    build_tiny_parts,
    generate_synthetic_mevis,
    generate_synthetic_referring,
    pretrain_grounding,
    pretrain_sam2_prompts,
)
from utils.data.mevis import MeViSDataset  # noqa: E402

EVAL_SPLIT = "valid_u"
SHIPPED_SAM2 = ROOT / "assets" / "sam2.1_hiera_tiny_prompted.pt"
"""The tiny SAM2 after stage 1, as made by ``--train-sam2-prompts`` (see README): the quick start's
stand-in for an official prompt-following SAM2 checkpoint."""
SHIPPED_GROUNDED = ROOT / "assets" / "unigr_tiny_grounded"
"""The tiny UniGR after stage 0, as made by ``--train-grounding`` (see README): the quick start's stand-in
for a Qwen2.5-VL that already grounds text in its visual tokens."""
OTHER_SEED = 1
"""Seed of the second valid split the trained model is also scored on (a world it never saw)."""


def stage(name: str) -> None:
    print(f"\n=== {name} ===", flush=True)


def evaluate_predictor(name: str, predictor: str, model: Path | None, data: Path, work: Path) -> dict:
    """Predict ``data``'s valid split with ``predictor`` into ``work/eval/<name>`` and score it."""
    return evaluate("mevis", name, predictor, model, data, work, split=EVAL_SPLIT)


def evaluate_region_qa(
    name: str, predictor: str, model: Path, data: Path, work: Path, options_only: bool = False
) -> dict:
    """Answer ``data``'s VideoRefer-Bench-Q-format questions with ``predictor`` and score them."""
    extra = ["--options-only"] if options_only else []
    return evaluate("videorefer_q", name, predictor, model, data, work / "region_qa", max_new_tokens=16, extra=extra)


def evaluate(
    benchmark: str,
    name: str,
    predictor: str,
    model: Path | None,
    data: Path,
    work: Path,
    split: str | None = None,
    max_new_tokens: int | None = None,
    extra: list[str] = (),
) -> dict:
    """Predict ``benchmark`` with ``predictor`` into ``work/eval/<name>`` and score it, with the real scripts."""
    out = work / "eval" / name
    common = ["--benchmark", benchmark, "--data-root", str(data)] + (["--split", split] if split else [])
    inference = ["--predictor", predictor, "--out", str(out), "--device", "cpu"]
    inference += (["--model", str(model)] if model else []) + (
        ["--max-new-tokens", str(max_new_tokens)] if max_new_tokens else []
    )
    run_inference.main([*common, *inference, *extra])
    return run_eval.main([*common, "--pred", str(out), "--out", str(out / "metrics.json")])


def results_table(rows: dict[str, dict]) -> str:
    """Markdown: J&F overall and per expression type, J, F, and distinct pairs overall and per type."""
    types = sorted({t for metrics in rows.values() for t in metrics["groups"]})
    header = ["model", "J&F", *[f"J&F {t}" for t in types], "J", "F", "distinct pairs"]
    header += [f"distinct pairs {t}" for t in types]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, metrics in rows.items():
        overall, groups = metrics["overall"], metrics["groups"]
        cells = [name, f"{overall['J&F']:.3f}"]
        cells += [f"{groups[t]['J&F']:.3f}" if t in groups else "-" for t in types]
        cells += [f"{overall['J']:.3f}", f"{overall['F']:.3f}", f"{overall['distinct_pairs']:.3f}"]
        cells += [f"{groups[t]['distinct_pairs']:.3f}" if t in groups else "-" for t in types]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def region_qa_table(rows: dict[str, dict], chance: float) -> str:
    """Markdown: multiple-choice accuracy overall and per category, with chance beside it."""
    categories = sorted({c for metrics in rows.values() for c in metrics["groups"]})
    header = ["model", "accuracy", *categories, "unparsed", "questions"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, metrics in rows.items():
        overall, groups = metrics["overall"], metrics["groups"]
        cells = [name, f"{overall['accuracy']:.3f}"]
        cells += [f"{groups[c]['accuracy']:.3f}" if c in groups else "-" for c in categories]
        cells += [str(overall["unparsed"]), str(overall["count"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"| chance | {chance:.3f} |" + " |" * (len(header) - 2))
    return "\n".join(lines)


def chance_accuracy(bench_q_root: Path) -> float:
    """Expected accuracy of a uniform guess among each question's options."""
    questions = json.loads((bench_q_root / "VideoRefer-Bench-Q.json").read_text())
    return sum(1 / len(q["options"]) for q in questions) / len(questions)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--work-dir", default="work_dirs/quickstart")
    parser.add_argument("--num-train", type=int, default=400, help="synthetic training videos")
    parser.add_argument("--num-valid", type=int, default=40, help="synthetic valid_u videos")
    parser.add_argument(
        "--num-region-test", type=int, default=20, help="videos of the region-question test split (per seed)"
    )
    parser.add_argument(
        "--train-grounding",
        action="store_true",
        help="run stage 0 here instead of starting from the shipped grounded tiny UniGR",
    )
    parser.add_argument("--grounding-steps", type=int, default=None, help="stage-0 steps (default: its config)")
    parser.add_argument(
        "--train-sam2-prompts",
        action="store_true",
        help="run stage 1 here instead of starting from the shipped prompt-following tiny SAM2",
    )
    parser.add_argument("--sam2-steps", type=int, default=None, help="stage-1 steps (default: its config)")
    parser.add_argument("--steps", type=int, default=None, help="joint-training steps (default: its config)")
    args = parser.parse_args(argv)
    data = Path(args.data_root) / "synthetic_mevis"
    referring = Path(args.data_root) / "synthetic_referring"
    work = Path(args.work_dir)
    overrides = [f"output_dir={work}", f"parts_dir={work / 'parts'}", f"data.datasets.synthetic_mevis.root={data}"]
    joint_overrides = [*overrides, f"data.datasets.synthetic_region_qa.root={referring / 'VideoRefer-700K'}"]
    joint_overrides += [f"train.max_steps={args.steps}"] if args.steps is not None else []
    start = time.monotonic()

    stage("synthetic MeViS-format data")
    generate_synthetic_mevis.main(
        ["--out", str(data), "--num-train", str(args.num_train), "--num-valid", str(args.num_valid), "--seed", "0"]
    )
    stage("synthetic referring data: region questions in VideoRefer-700K / Bench-Q format")
    generate_synthetic_referring.main(
        ["--out", str(referring), "--num-train", str(args.num_train), "--num-test", str(args.num_region_test)]
        + ["--seed", "0"]
    )
    stage("tiny parts (stock Qwen2.5-VL folder, official-format SAM2 checkpoint)")
    build_tiny_parts.main(["--config", "configs/quickstart.yaml", *overrides])

    grounded = work / "parts" / "unigr_tiny_grounded"
    stage("stage 0: a tiny backbone that grounds expressions in its visual tokens (no SAM2)")
    if not (grounded / "config.json").is_file() and not args.train_grounding:
        shutil.copytree(SHIPPED_GROUNDED, grounded)
        print(f"copied {SHIPPED_GROUNDED.relative_to(ROOT)} (stage 0 run once; --train-grounding runs it here)")
    if not (grounded / "config.json").is_file():
        grounding_overrides = [*overrides[:2], f"output_dir={work / 'grounding'}"]
        if args.grounding_steps is not None:
            grounding_overrides.append(f"train.max_steps={args.grounding_steps}")
        final_grounded = pretrain_grounding.main(
            ["--config", "configs/quickstart_grounding.yaml", *grounding_overrides]
        )
        shutil.copytree(final_grounded, grounded)

    prompted = work / "parts" / "sam2.1_hiera_tiny_prompted.pt"
    stage("stage 1: a tiny SAM2 that follows clicks, boxes and location maps")
    if not prompted.is_file() and not args.train_sam2_prompts:
        shutil.copyfile(SHIPPED_SAM2, prompted)
        print(f"copied {SHIPPED_SAM2.relative_to(ROOT)} (stage 1 run once; --train-sam2-prompts runs it here)")
    if not prompted.is_file():
        sam2_overrides = [*overrides, f"output_dir={work / 'sam2_prompts'}"]
        if args.sam2_steps is not None:
            sam2_overrides.append(f"train.max_steps={args.sam2_steps}")
        pretrain_sam2_prompts.main(["--config", "configs/quickstart_sam2_prompts.yaml", *sam2_overrides])

    stage("stage 2: joint training under torchrun")
    final = work / "final"
    if not (final / "config.json").is_file():
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=1",
            "train.py",
            "--config",
            "configs/quickstart.yaml",
            *joint_overrides,
        ]
        subprocess.run(command, check=True, cwd=ROOT)

    stage("the same model before stage 2 (stage 0 and stage 1 assets)")
    untrained = work / "untrained"
    if not (untrained / "config.json").is_file():
        from train import build_model
        from utils.training.config import load_config

        cfg = load_config(ROOT / "configs/quickstart.yaml", overrides)
        model, processor = build_model(cfg)
        model.save_pretrained(untrained)
        processor.save_pretrained(untrained)

    stage("evaluation on the synthetic valid split")
    rows = {
        "UniGR-tiny, trained": evaluate_predictor("trained", "unigr", final, data, work),
        "UniGR-tiny, before stage 2": evaluate_predictor("untrained", "unigr", untrained, data, work),
        "segment every object": evaluate_predictor("all_objects", "all_objects", None, data, work),
    }
    stage(f"evaluation on a valid split generated with seed {OTHER_SEED}")
    other = Path(args.data_root) / f"synthetic_mevis_seed{OTHER_SEED}"
    generate_synthetic_mevis.main(
        ["--out", str(other), "--num-train", "0", "--num-valid", str(args.num_valid), "--seed", str(OTHER_SEED)]
    )
    other_work = work / f"seed{OTHER_SEED}"
    other_rows = {
        "UniGR-tiny, trained": evaluate_predictor("trained", "unigr", final, other, other_work),
        "segment every object": evaluate_predictor("all_objects", "all_objects", None, other, other_work),
    }
    stage("region questions (VideoRefer-Bench-Q format), seed 0 and seed 1")
    region_tables = []
    for seed, root in ((0, referring), (OTHER_SEED, Path(args.data_root) / f"synthetic_referring_seed{OTHER_SEED}")):
        if seed != 0:
            generate_synthetic_referring.main(
                ["--out", str(root), "--num-train", "0", "--num-test", str(args.num_region_test)]
                + ["--seed", str(seed)]
            )
        bench_q = root / "VideoRefer-Bench-Q"
        seed_work = work if seed == 0 else other_work
        region_rows = {
            "UniGR-tiny, trained": evaluate_region_qa("trained", "unigr", final, bench_q, seed_work),
            "UniGR-tiny, trained, options only": evaluate_region_qa(
                "trained_options", "unigr", final, bench_q, seed_work, options_only=True
            ),
            "blind (same model, no frames), options only": evaluate_region_qa(
                "blind_options", "blind", final, bench_q, seed_work, options_only=True
            ),
        }
        region_tables.append((seed, region_rows, region_qa_table(region_rows, chance_accuracy(bench_q))))

    stage("pictures")
    logs = {"stage 1: SAM2 prompts": work / "sam2_prompts" / "tb", "stage 2: joint": work / "tb"}
    curves = plot_training_curves(
        {name: log_dir for name, log_dir in logs.items() if log_dir.is_dir()},
        ["train/loss", "train/ce", "train/bce", "train/dice", "train/objectness"],
        work / "curves.png",
    )
    predictions = {
        "trained": work / "eval" / "trained",
        "before stage 2": work / "eval" / "untrained",
        "every object": work / "eval" / "all_objects",
    }
    per_sample = rows["UniGR-tiny, trained"]["per_sample"]
    valid = MeViSDataset(data, EVAL_SPLIT)
    for kind in ("attribute", "motion"):
        sample_id = next(key for key, scores in per_sample.items() if scores["type"] == kind)
        out = save_sample_overlay(valid, sample_id, predictions, work / "overlays" / f"{kind}.png")
        print(f"wrote {out}")
    print(f"wrote {curves}")

    table = f"valid_u, seed 0 (the quick start's world):\n\n{results_table(rows)}\n\n"
    table += f"valid_u, seed {OTHER_SEED} (a freshly generated world):\n\n{results_table(other_rows)}"
    for seed, _, region_table in region_tables:
        table += f"\n\nregion questions, seed {seed} (VideoRefer-Bench-Q format):\n\n{region_table}"
    (work / "results.md").write_text(table + "\n")
    (work / "results.json").write_text(
        json.dumps(
            {
                **{k: {"overall": v["overall"], "by_type": v["groups"]} for k, v in rows.items()},
                f"seed {OTHER_SEED}": {
                    k: {"overall": v["overall"], "by_type": v["groups"]} for k, v in other_rows.items()
                },
                "region questions": {
                    f"seed {seed}": {k: {"overall": v["overall"], "by_category": v["groups"]} for k, v in rows.items()}
                    for seed, rows, _ in region_tables
                },
            },
            indent=1,
        )
    )
    print(f"\n{table}\n\nquick start took {(time.monotonic() - start) / 60:.1f} min; table in {work / 'results.md'}")


if __name__ == "__main__":
    main()
