"""The 3D-scene quick start: synthetic rooms -> the tiny UniGR trained on the five ScanNet scene benchmarks'
formats (two stages) -> each benchmark scored for the trained model, the same model given no frames, and chance.

Rooms come from :func:`utils.synthetic.scene3d_formats.generate_scene_benchmarks`: the training rooms (split
``train``) with seed :data:`TRAIN_SEED` (``--train-seed``), the evaluated ones (``val``, and ``test`` for SQA3D)
with seed :data:`EVAL_SEED` (``--eval-seed``), so no evaluated room is trained on. Training starts from the shipped
quick-start model in two stages: stage 1 (:data:`READING_CONFIG`) teaches it to read an object's token, describing a
region-prompted object and answering ScanQA questions about one object by grounding it and reading it back
(``[GRD][READ]``) and SQA3D's situated questions, on 2 frames per room for thousands of cheap steps; stage 2
(:data:`CONFIG`) trains all five benchmarks on 8 frames from stage 1's model. Without situations (SQA3D answered
from its words alone): ``--config configs/quickstart_scenes.yaml --reading-config
configs/quickstart_scenes_reading.yaml``. Every benchmark is predicted and scored by the real scripts
(:mod:`evaluation.run_inference`, :mod:`evaluation.run_eval`); grounding is answered by the head (loader option
``grounding=head``).

Chance, per benchmark (answers written to a store and scored by :mod:`evaluation.run_eval` like the models'):

* ScanRefer: the exact expected score of one proposal of the scene drawn uniformly (one such draw per
  description, seed :data:`CHANCE_SEED`, is also scored and shown beside the table).
* Multi3DRefer: one proposal of the scene drawn uniformly (seed :data:`CHANCE_SEED`).
* Scan2Cap: the training split's most frequent caption (ties: the first in sorted order), for every object.
* ScanQA, SQA3D: the training split's most frequent answer for the question's type (its first word,
  :func:`utils.data.scene3d.question_type`), or overall for a type the training split lacks.

The blind baseline (``run_inference --predictor blind``) sees no frame, so its grounding head has no visual token to
score proposals with: its grounding answers name no proposal.

Captions (Scan2Cap, ScanQA's caption metrics) are tokenised as :data:`CAPTION_TOKENIZER` says.

Each stage skips work already on disk (rooms, the trained model, each prediction store), so re-running
only re-scores and re-prints the table.

    python scripts/quickstart_scenes.py [--data-root data] [--work-dir work_dirs/quickstart_scenes] [--steps N]
        [--reading-steps N | --reading-config none]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation import run_eval, run_inference  # noqa: E402
from evaluation.benchmarks import BENCHMARKS, build_benchmark_dataset  # noqa: E402
from evaluation.prediction_store import PredictionStore  # noqa: E402
from evaluation.scene3d_scoring import sample_metadata  # noqa: E402
from utils.data.scan2cap import SCANREFER_FILE  # noqa: E402
from utils.data.scene3d import grounding_answer  # noqa: E402
from utils.scene3d.boxes import box_iou_3d  # noqa: E402
from utils.synthetic.rooms import RoomConfig  # noqa: E402
from utils.synthetic.scene3d_formats import generate_scene_benchmarks  # noqa: E402
from utils.training.config import load_config  # noqa: E402

CONFIG = ROOT / "configs" / "quickstart_scenes_situated.yaml"
"""Stage 2: the five benchmarks on 8 frames, SQA3D's situations closed by ``[SIT]`` and located by the grounding head
(the config: ``configs/quickstart_scenes.yaml`` plus the situated keys)."""
READING_CONFIG = ROOT / "configs" / "quickstart_scenes_situated_reading.yaml"
"""Stage 1: captions of region-prompted objects, grounded-and-read ScanQA answers and situated SQA3D answers on 2
frames, thousands of cheap steps (see the config)."""
TRAIN_SEED = 1
"""Seed of the training rooms."""
EVAL_SEED = 0
"""Seed of the evaluated rooms (``val``; ``test`` for SQA3D): another world than the training rooms."""
CHANCE_SEED = 0
"""Seed of the chance baseline's proposal draws."""
SEEDS_FILE = "quickstart_seeds.json"
"""Per rooms folder, the seed of each split generated there (``{"train": 1}``)."""
SCENE_BENCHMARKS = ("scanrefer", "multi3drefer", "scan2cap", "scanqa", "sqa3d")
GROUNDING_BENCHMARKS = ("scanrefer", "multi3drefer")
HEADLINE_METRICS = {
    "scanrefer": ("Acc@0.25", "Acc@0.5"),
    "multi3drefer": ("F1@0.25", "F1@0.5"),
    "scan2cap": ("CIDEr@0.25", "BLEU-4@0.25"),
    "scanqa": ("EM", "CIDEr"),
    "sqa3d": ("EM", "EM-refined"),
}
"""The metrics the table shows per benchmark (columns of :data:`evaluation.benchmarks.BENCHMARKS`)."""
MODELS = ("trained", "blind", "chance")
CAPTION_TOKENIZER = "simple"
"""How caption metrics tokenise: the pure-Python stand-in for the PTB tokenizer GPT4Scene and Chat-Scene report
(lower case, punctuation dropped; :mod:`evaluation.metrics.captions`), the same on every machine, Java or not."""
MAX_NEW_TOKENS = 48
"""Longest generated answer by default: the synthetic captions are one or two short sentences."""


def stage(name: str) -> None:
    print(f"\n=== {name} ===", flush=True)


def generate_rooms(
    train_root: Path,
    eval_root: Path,
    num_train: int,
    num_eval: int,
    config: RoomConfig,
    train_seed: int = TRAIN_SEED,
    eval_seed: int = EVAL_SEED,
) -> None:
    """Training rooms (seed ``train_seed``) in ``train_root`` and evaluated rooms (``val``, ``test``; seed
    ``eval_seed``) in ``eval_root``, unless written. Each root's :data:`SEEDS_FILE` records the seed of every split
    written there; a split already written with another seed is an error, never silently reused."""
    if train_seed == eval_seed:
        raise ValueError(f"the training and evaluated rooms need different seeds, got {train_seed} for both")
    splits = ((train_root, "train", num_train, train_seed), (eval_root, "val", num_eval, eval_seed))
    for root, split, count, seed in (*splits, (eval_root, "test", num_eval, eval_seed)):
        seeds_file = root / SEEDS_FILE
        seeds = json.loads(seeds_file.read_text()) if seeds_file.is_file() else {}
        if (root / SCANREFER_FILE.format(split=split)).is_file():
            written = seeds.get(split, TRAIN_SEED if split == "train" else EVAL_SEED)  # rooms from before the record
            if written != seed:
                raise ValueError(f"{root} holds {split} rooms of seed {written}, not {seed}: pass another --data-root")
            print(f"{root} {split}: already generated (seed {seed})")
            continue
        generate_scene_benchmarks(root, split, count, seed=seed, config=config)
        seeds_file.write_text(json.dumps({**seeds, split: seed}))
        print(f"{root} {split}: {count} rooms, seed {seed}")


def train(
    train_root: Path, work: Path, steps: int | None, config: Path = CONFIG, start_from: Path | None = None
) -> Path:
    """Train from ``config`` on ``train_root``'s rooms into ``work`` (one process), starting from the UniGR folder
    ``start_from`` instead of the config's ``model.pretrained`` when given; the final model folder."""
    final = work / "final"
    if (final / "config.json").is_file():
        print(f"{final}: already trained")
        return final
    overrides = [f"output_dir={work}"] + ([f"model.pretrained={start_from}"] if start_from is not None else [])
    datasets = load_config(config).data.datasets  # with its defaults merged
    overrides += [f"data.datasets.{name}.root={train_root}" for name in datasets]
    overrides += [f"train.max_steps={steps}"] if steps is not None else []
    command = [sys.executable, "train.py", "--config", str(config), *overrides]
    subprocess.run(command, check=True, cwd=ROOT)
    return final


def loader_options(benchmark: str, config: Path = CONFIG) -> list[str]:
    """Loader options (``KEY=VALUE``) as ``config`` (stage 2's, the one the evaluated model learned last) trains
    ``benchmark`` with them (grounding benchmarks answered by the proposal grounding head, Scan2Cap's object as a region
    token, ScanQA grounding and reading its object, SQA3D locating the speaker first), but for how many questions a
    training sample asks."""
    options = OmegaConf.to_container(load_config(config).data.datasets[benchmark].get("options") or {})
    return [
        f"{key}={str(value).lower() if isinstance(value, bool) else value}"
        for key, value in options.items()
        if key != "questions_per_sample"
    ]


def benchmark_arguments(benchmark: str, eval_root: Path, config: Path = CONFIG) -> list[str]:
    """The arguments :mod:`evaluation.run_inference` and :mod:`evaluation.run_eval` share (loader options as
    ``config`` trains with them)."""
    options = [flag for option in loader_options(benchmark, config) for flag in ("--option", option)]
    return ["--benchmark", benchmark, "--data-root", str(eval_root), *options]


def evaluate_model(
    benchmark: str,
    predictor: str,
    model: Path,
    eval_root: Path,
    out: Path,
    config: Path = CONFIG,
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> dict:
    """Predict ``benchmark`` with ``predictor`` (``unigr`` / ``blind``) into ``out`` and score it, with the real
    scripts and the loader options ``config`` trained with (samples already in ``out`` are not predicted again)."""
    common = benchmark_arguments(benchmark, eval_root, config)
    inference = ["--predictor", predictor, "--model", str(model), "--out", str(out), "--device", "cpu"]
    run_inference.main([*common, *inference, "--max-new-tokens", str(max_new_tokens)])
    return score(benchmark, eval_root, out, config)


def score(benchmark: str, eval_root: Path, out: Path, config: Path = CONFIG) -> dict:
    """Score the predictions in ``out`` with :mod:`evaluation.run_eval` (captions tokenised as
    :data:`CAPTION_TOKENIZER`); the metrics are also written to ``out/metrics.json``."""
    arguments = [
        *benchmark_arguments(benchmark, eval_root, config),
        "--pred",
        str(out),
        "--out",
        str(out / "metrics.json"),
    ]
    return run_eval.main([*arguments, "--caption-tokenizer", CAPTION_TOKENIZER])


def most_frequent(answers: list[str]) -> str:
    """The most frequent of ``answers`` (ties: the first in sorted order)."""
    counts = Counter(answers)
    return min(counts, key=lambda answer: (-counts[answer], answer))


def training_answers(benchmark: str, train_root: Path) -> dict[str | None, str]:
    """Chance answers from the training split: ``{question type: most frequent answer}`` and under ``None`` the
    most frequent overall (Scan2Cap: its captions, one type)."""
    dataset, _ = build_benchmark_dataset(benchmark, train_root, "train")
    by_type: dict[str | None, list[str]] = {None: []}
    for index in range(len(dataset)):
        _, _, _, meta = sample_metadata(dataset, index)
        answers = list(meta["answers"])
        by_type[None] += answers
        if benchmark != "scan2cap":
            by_type.setdefault(meta["category"], []).extend(answers)
    return {kind: most_frequent(answers) for kind, answers in by_type.items()}


def chance_answers(benchmark: str, eval_root: Path, train_root: Path, config: Path = CONFIG) -> dict[str, str]:
    """``{sample_id: answer}`` of the chance baseline (module docstring) on ``benchmark``'s evaluated split."""
    dataset, _ = build_benchmark_dataset(benchmark, eval_root, None, loader_options(benchmark, config))
    rng = np.random.default_rng(CHANCE_SEED)
    frequent = training_answers(benchmark, train_root) if benchmark not in GROUNDING_BENCHMARKS else {}
    answers = {}
    for index in range(len(dataset)):
        sample_id, _, proposals, meta = sample_metadata(dataset, index)
        if benchmark in GROUNDING_BENCHMARKS:
            answers[sample_id] = grounding_answer([rng.integers(len(proposals))] if len(proposals) else [])
        else:
            answers[sample_id] = frequent.get(meta.get("category"), frequent[None])
    return answers


def evaluate_chance(benchmark: str, eval_root: Path, train_root: Path, out: Path, config: Path = CONFIG) -> dict:
    """Write the chance baseline's answers to a store at ``out`` (unless there) and score it with the real script."""
    store = PredictionStore(out)
    answers = chance_answers(benchmark, eval_root, train_root, config)
    done = store.done_ids()
    for sample_id, answer in answers.items():
        if sample_id not in done:
            store.write(sample_id, [], None, {"answer": answer})
    return score(benchmark, eval_root, out, config)


def expected_random_proposal_accuracy(eval_root: Path) -> dict[str, float]:
    """ScanRefer's expected Acc@0.25 / Acc@0.5 (fractions, as the scorer's) of one proposal drawn uniformly per
    description: the mean over descriptions of the fraction of the scene's proposals that reach each IoU with the
    target."""
    dataset, _ = build_benchmark_dataset("scanrefer", eval_root)
    hits = {0.25: [], 0.5: []}
    for index in range(len(dataset)):
        _, _, proposals, meta = sample_metadata(dataset, index)
        ious = box_iou_3d(np.asarray(meta["gt_boxes"], np.float64), np.asarray(proposals, np.float64)).max(axis=0)
        for threshold, values in hits.items():
            values.append(float((ious >= threshold).mean()) if len(proposals) else 0.0)
    return {f"Acc@{threshold}": float(np.mean(values)) for threshold, values in hits.items()}


def headline_metrics(results: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{benchmark: {model: {metric: value}}}``: the :data:`HEADLINE_METRICS` of each scorer's ``overall``."""
    return {
        benchmark: {
            model: {metric: rows[model]["overall"][metric] for metric in HEADLINE_METRICS[benchmark]}
            for model in MODELS
        }
        for benchmark, rows in results.items()
    }


def results_table(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown of :func:`headline_metrics`: per benchmark and metric, the trained model, blind and chance, and
    whether the trained model beats both."""
    header = ["benchmark", "metric", *MODELS, "trained beats both"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for benchmark, rows in summary.items():
        for metric in HEADLINE_METRICS[benchmark]:
            values = [rows[model][metric] for model in MODELS]
            beats = "yes" if values[0] > max(values[1:]) else "no"
            lines.append(f"| {benchmark} | {metric} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {beats} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="data", type=Path)
    parser.add_argument("--work-dir", default="work_dirs/quickstart_scenes", type=Path)
    parser.add_argument("--num-train", type=int, default=200, help="training rooms")
    parser.add_argument("--num-eval", type=int, default=20, help="evaluated rooms (val; as many test rooms for SQA3D)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    parser.add_argument("--config", type=Path, default=CONFIG, help="stage 2's config (default: %(default)s)")
    parser.add_argument(
        "--reading-config",
        type=Path,
        default=READING_CONFIG,
        help="stage 1's config (default: %(default)s); 'none': train stage 2 from its own model.pretrained",
    )
    parser.add_argument("--reading-steps", type=int, default=None, help="stage 1's steps (default: its config's)")
    parser.add_argument("--train-seed", type=int, default=TRAIN_SEED, help="seed of the training rooms")
    parser.add_argument("--eval-seed", type=int, default=EVAL_SEED, help="seed of the evaluated rooms")
    parser.add_argument("--frame-size", type=int, nargs=2, default=(96, 128), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--room-frames", type=int, default=16, help="frames of each room's camera walk")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS, help="longest generated answer")
    parser.add_argument(
        "--benchmarks", nargs="+", choices=SCENE_BENCHMARKS, default=list(SCENE_BENCHMARKS), help="what to score"
    )
    args = parser.parse_args(argv)
    if str(args.reading_config).lower() == "none":
        args.reading_config = None
    return args


def main(argv: list[str] | None = None) -> dict[str, dict[str, dict]]:
    args = parse_args(argv)
    train_root = args.data_root / "synthetic_scenes_train"
    eval_root = args.data_root / "synthetic_scenes"
    work = args.work_dir
    start = time.monotonic()

    stage(f"synthetic rooms: train (seed {args.train_seed}), val and test (seed {args.eval_seed})")
    height, width = args.frame_size
    room_config = RoomConfig(height=height, width=width, num_frames=args.room_frames)
    generate_rooms(train_root, eval_root, args.num_train, args.num_eval, room_config, args.train_seed, args.eval_seed)

    start_from = None
    if args.reading_config is not None:
        stage("training, stage 1 (reading): region-prompted captions and grounded-and-read ScanQA answers on 2 frames")
        start_from = train(train_root, work / "reading", args.reading_steps, args.reading_config)
    stage("training, stage 2: the five scene benchmarks")
    final = train(train_root, work, args.steps, args.config, start_from)

    results: dict[str, dict[str, dict]] = {}
    for benchmark in args.benchmarks:
        stage(f"{benchmark} {BENCHMARKS[benchmark].split}: trained, blind, chance")
        out = work / "eval" / benchmark
        config, tokens = args.config, args.max_new_tokens  # evaluated with the options stage 2 trained with
        results[benchmark] = {
            "trained": evaluate_model(benchmark, "unigr", final, eval_root, out / "trained", config, tokens),
            "blind": evaluate_model(benchmark, "blind", final, eval_root, out / "blind", config, tokens),
            "chance": evaluate_chance(benchmark, eval_root, train_root, out / "chance", config),
        }

    summary = headline_metrics(results)
    note = ""
    if "scanrefer" in summary:  # the exact expectation, rather than one draw, is ScanRefer's chance
        sampled = summary["scanrefer"]["chance"]
        summary["scanrefer"]["chance"] = expected_random_proposal_accuracy(eval_root)
        note = "\n\nScanRefer chance: the exact expectation of a uniformly drawn proposal (one draw per description, "
        note += (
            f"seed {CHANCE_SEED}, scored by run_eval: " + ", ".join(f"{k} {v:.3f}" for k, v in sampled.items()) + ")"
        )
    table = results_table(summary) + note
    (work / "results.md").write_text(table + "\n")
    (work / "results.json").write_text(json.dumps(summary, indent=1))
    minutes = (time.monotonic() - start) / 60
    print(f"\n{table}\n\n3D-scene quick start took {minutes:.1f} min; table in {work / 'results.md'}")
    return results


if __name__ == "__main__":
    main()
