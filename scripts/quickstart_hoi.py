"""The egocentric HOI-QA quick start: synthetic kitchen frames -> the tiny UniGR trained on HOI-QA's eight tasks ->
each task scored for the trained model, the same model given no frame, and chance.

Frames come from :func:`utils.synthetic.egocentric.write_hoi_qa` through :mod:`scripts.generate_synthetic_hoi`:
the training frames (its train split) with seed :data:`TRAIN_SEED` under ``<data-root>/synthetic_hoi_train``, the
evaluated ones (its test split) with seed :data:`EVAL_SEED` under ``<data-root>/synthetic_hoi``, so no evaluated
frame, video or kitchen is trained on. Training starts from the shipped quick-start model with its processor's
pixel budget raised to the frames' own size (:func:`start_model`) and the 2D position encoder added
(``configs/quickstart_hoi.yaml``, :mod:`model.encoders.position2d`); questions keep their task tags
(:data:`LOADER_OPTIONS`), in training and evaluation alike. The test split
is predicted and scored by the real scripts (:mod:`evaluation.run_inference`, :mod:`evaluation.run_eval`; HOI-QA's
rules, :mod:`evaluation.hoi_scoring`: a box is right when its IoU with the ground truth is above 0.5).

Baselines:

* blind: ``run_inference --predictor blind``, the trained model asked the same questions with no frame. It never
  trained without one, and without a frame it mostly writes no readable box; chance's ``prior`` is the stronger
  answer from the question's words alone.
* chance: the two levels :mod:`scripts.generate_synthetic_hoi` writes to ``chance_baselines.json`` for the
  evaluated split (from the train split generated beside it, same seed, same world): ``prior`` answers the mean
  train box (the most frequent noun / hand) of the question's kind, ``random`` puts a box of the kind's median size
  at a random place (a uniform guess among the train nouns / hands). They are accuracies only (no mean IoU).

Each stage skips work already on disk (frames, the trained model, each prediction store), so re-running only
re-scores and re-prints the table.

    python scripts/quickstart_hoi.py [--data-root data] [--work-dir work_dirs/quickstart_hoi] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from evaluation import run_eval, run_inference  # noqa: E402
from evaluation.benchmarks import build_benchmark_dataset  # noqa: E402
from evaluation.prediction_store import PredictionStore  # noqa: E402
from inference.outputs import draw_labelled_box  # noqa: E402
from model.builder import load_unigr  # noqa: E402
from model.location_tokens import add_location_tokens  # noqa: E402
from scripts import generate_synthetic_hoi  # noqa: E402
from utils.data.box_text import grid_to_pixels, parse_grid_boxes  # noqa: E402
from utils.data.hoi_qa import TASKS  # noqa: E402

CONFIG = ROOT / "configs" / "quickstart_hoi.yaml"
SHIPPED = ROOT / "assets" / "unigr_tiny_quickstart"
"""The quick start's trained tiny UniGR, which training starts from (with its processor's pixel budget changed)."""
MIN_PIXELS = 3136
"""Smallest frame the processor sends to the vision encoder: 56 x 56 px, 2 x 2 merged tokens."""
MAX_PIXELS = 25088
"""Largest frame the processor sends to the vision encoder: the synthetic frames' own size (192 x 108 px EPIC-style
frames become 196 x 112, 7 x 4 merged tokens; the shipped model's budget, 12544 px, gives them 5 x 3)."""
TRAIN_SEED = 1
"""Seed of the training frames."""
EVAL_SEED = 0
"""Seed of the evaluated frames (and of the train split beside them that the chance levels are drawn from)."""
TRAIN_ROOT_TEST_FRAMES = 1
"""Test frames written beside the training frames: the loader checks train frames against a test split."""
LOADER_OPTIONS = ("task_tags=keep",)
"""HOI-QA loader options, as :data:`CONFIG` trains with them: questions keep their task tag (``[refer]``, ``[vqa]``,
``[identify]``) where the file has one, as MiniGPT-v2 trains; without it, "Which hand has the cup?" asks for a box
(``objN2handBB``) and for a hand's name (``objN2handN``) alike."""
MODELS = ("trained", "blind")
MAX_NEW_TOKENS = 40
"""Longest generated answer: two boxes (both hands) take 29 tokens of the tiny tokenizer's digits."""


def stage(name: str) -> None:
    print(f"\n=== {name} ===", flush=True)


def generate_frames(root: Path, num_train: int, num_test: int, seed: int) -> None:
    """Write HOI-QA frames and ``chance_baselines.json`` under ``root`` (:mod:`scripts.generate_synthetic_hoi`),
    unless they are there."""
    if (root / generate_synthetic_hoi.CHANCE_FILE).is_file():
        print(f"{root}: already generated")
        return
    arguments = ["--out", str(root), "--train", str(num_train), "--test", str(num_test), "--seed", str(seed)]
    generate_synthetic_hoi.main(arguments)


def start_model(folder: Path, min_pixels: int, max_pixels: int, location_tokens: bool) -> Path:
    """:data:`SHIPPED` copied to ``folder`` with its processor resizing every frame (image or video) to between
    ``min_pixels`` and ``max_pixels`` pixels and, with ``location_tokens``, the grid's values added as tokens
    (:mod:`model.location_tokens`), unless there; ``folder``."""
    config = folder / "processor_config.json"
    if config.is_file():
        print(f"{folder}: already written")
        return folder
    shutil.copytree(SHIPPED, folder, dirs_exist_ok=True)
    if location_tokens:
        model, processor = load_unigr(SHIPPED)
        add_location_tokens(model, processor.tokenizer)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    settings = json.loads(config.read_text())
    for processor_name in ("image_processor", "video_processor"):
        settings[processor_name]["size"] = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    config.write_text(json.dumps(settings, indent=2))
    tokens = ", location tokens <0> .. <100> added" if location_tokens else ""
    print(f"{folder}: {SHIPPED.name}, frames resized to {min_pixels} to {max_pixels} px{tokens}")
    return folder


def train(train_root: Path, start: Path, work: Path, steps: int | None, overrides: list[str]) -> Path:
    """Train from :data:`CONFIG`, starting from the model in ``start``, on ``train_root``'s frames into ``work`` (one
    process); the final model folder."""
    final = work / "final"
    if (final / "config.json").is_file():
        print(f"{final}: already trained")
        return final
    arguments = [f"output_dir={work}", f"model.pretrained={start}", f"data.datasets.hoi_qa.root={train_root}"]
    arguments += [f"train.max_steps={steps}"] if steps is not None else []
    command = [sys.executable, "train.py", "--config", str(CONFIG), *arguments, *overrides]
    subprocess.run(command, check=True, cwd=ROOT)
    return final


def evaluate_model(predictor: str, model: Path, eval_root: Path, out: Path, max_new_tokens: int) -> dict:
    """Predict HOI-QA's test split with ``predictor`` (``unigr`` / ``blind``) into ``out`` and score it, with the
    real scripts (samples already in ``out`` are not predicted again)."""
    options = [flag for option in LOADER_OPTIONS for flag in ("--option", option)]
    common = ["--benchmark", "hoi_qa", "--data-root", str(eval_root), *options]
    inference = ["--predictor", predictor, "--model", str(model), "--out", str(out), "--device", "cpu"]
    run_inference.main([*common, *inference, "--max-new-tokens", str(max_new_tokens)])
    return run_eval.main([*common, "--pred", str(out), "--out", str(out / "metrics.json")])


TRUE_COLOUR = np.array([60, 220, 60], dtype=np.uint8)
PREDICTED_COLOUR = np.array([255, 0, 255], dtype=np.uint8)
SHEET_SCALE = 3
"""Frames are drawn this many times their size (the synthetic ones are 108 px high)."""


def overlay_sheet(eval_root: Path, store: Path, out: Path, per_task: int = 3, columns: int = 4) -> Path:
    """A PNG of test frames of the box tasks (``per_task`` each), the true boxes in green and the trained model's
    in magenta, each labelled with its task; ``out``."""
    dataset, _ = build_benchmark_dataset("hoi_qa", eval_root, None, list(LOADER_OPTIONS))
    records = PredictionStore(store).records()
    chosen: dict[str, list] = {task: [] for task in TASKS if TASKS[task][1] == "box"}
    for index in range(len(dataset)):
        sample = dataset[index]
        picked = chosen.get(sample.meta["task"])
        if picked is not None and len(picked) < per_task and sample.sample_id in records:
            picked.append(sample)
    tiles = []
    for task, samples in chosen.items():
        for sample in samples:
            frame = sample.frames[0].copy()
            height, width = frame.shape[:2]
            frame = cv2.resize(frame, (width * SHEET_SCALE, height * SHEET_SCALE), interpolation=cv2.INTER_NEAREST)
            for box in sample.boxes[:, 0]:
                draw_labelled_box(frame, box * SHEET_SCALE, "", TRUE_COLOUR)
            predicted = parse_grid_boxes(records[sample.sample_id]["answer"]).boxes
            for box in grid_to_pixels(predicted, (width, height)):
                draw_labelled_box(frame, box * SHEET_SCALE, "", PREDICTED_COLOUR)
            draw_labelled_box(frame, np.array([0, 0, 0, 0]), task, np.array([255, 255, 255], dtype=np.uint8))
            tiles.append(frame)
    if not tiles:
        raise ValueError(f"{store}: no box task was predicted")
    tile_h = max(tile.shape[0] for tile in tiles)
    tile_w = max(tile.shape[1] for tile in tiles)
    rows = -(-len(tiles) // columns)
    sheet = np.zeros((rows * tile_h, columns * tile_w, 3), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        top, left = (i // columns) * tile_h, (i % columns) * tile_w
        sheet[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return out


def task_rows(results: dict[str, dict], chance: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per task of the evaluated split: ``questions``, each model's ``<model> acc`` (box acc for box tasks, noun acc
    for noun and hand tasks) and ``<model> IoU`` (box tasks; NaN otherwise), and chance's ``prior`` / ``random``."""
    rows = {}
    for task in TASKS:
        if task not in chance:
            continue
        is_box = TASKS[task][1] == "box"
        row: dict[str, float] = {"questions": chance[task]["questions"]}
        for model in MODELS:
            scores = results[model]["groups"][f"task={task}"]
            row[f"{model} acc"] = scores["box acc" if is_box else "noun acc"]
            row[f"{model} IoU"] = scores["mean IoU"] if is_box else math.nan
        row["prior"], row["random"] = chance[task]["prior"], chance[task]["random"]
        rows[task] = row
    return rows


def _cell(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def results_table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown of :func:`task_rows`, box tasks first, with whether the trained model beats blind and both chance
    levels on accuracy."""
    header = "| task | answer | questions | trained acc | blind acc | chance prior | chance random | trained mean IoU "
    header += "| blind mean IoU | trained beats all |"
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    order = sorted(rows, key=lambda task: TASKS[task][1] != "box")
    for task in order:
        row = rows[task]
        beats = "yes" if row["trained acc"] > max(row["blind acc"], row["prior"], row["random"]) else "no"
        values = [row[key] for key in ("trained acc", "blind acc", "prior", "random", "trained IoU", "blind IoU")]
        cells = " | ".join(_cell(value) for value in values)
        lines.append(f"| {task} | {TASKS[task][1]} | {int(row['questions'])} | {cells} | {beats} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="data", type=Path)
    parser.add_argument("--work-dir", default="work_dirs/quickstart_hoi", type=Path)
    parser.add_argument("--num-train", type=int, default=2000, help="training frames (about 16 questions each)")
    parser.add_argument("--num-test", type=int, default=100, help="evaluated frames (about 13 questions each)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS, help="longest generated answer")
    parser.add_argument("--min-pixels", type=int, default=MIN_PIXELS, help="smallest frame the vision encoder sees")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="largest frame the vision encoder sees")
    parser.add_argument(
        "--no-location-tokens",
        dest="location_tokens",
        action="store_false",
        help="keep the tokenizer's digits for the grid's values (default: one token per value)",
    )
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE", help="a config override for train.py"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_args(argv)
    train_root = args.data_root / "synthetic_hoi_train"
    eval_root = args.data_root / "synthetic_hoi"
    work = args.work_dir
    start = time.monotonic()

    stage(f"synthetic HOI-QA frames: train (seed {TRAIN_SEED}), test and chance levels (seed {EVAL_SEED})")
    generate_frames(train_root, args.num_train, TRAIN_ROOT_TEST_FRAMES, TRAIN_SEED)
    generate_frames(eval_root, args.num_train, args.num_test, EVAL_SEED)

    stage("training: the quick-start model on HOI-QA's eight tasks")
    initial = start_model(work / "start", args.min_pixels, args.max_pixels, args.location_tokens)
    final = train(train_root, initial, work, args.steps, args.override)

    stage("HOI-QA test: trained, blind")
    results = {
        "trained": evaluate_model("unigr", final, eval_root, work / "eval" / "trained", args.max_new_tokens),
        "blind": evaluate_model("blind", final, eval_root, work / "eval" / "blind", args.max_new_tokens),
    }
    chance = json.loads((eval_root / generate_synthetic_hoi.CHANCE_FILE).read_text())
    rows = task_rows(results, chance)
    table = results_table(rows)
    (work / "results.md").write_text(table + "\n")
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    sheet = overlay_sheet(eval_root, work / "eval" / "trained", work / "boxes.png")
    minutes = (time.monotonic() - start) / 60
    print(f"\n{table}\n\nHOI-QA quick start took {minutes:.1f} min; table in {work / 'results.md'}")
    print(f"test frames with the true boxes (green) and the trained model's (magenta): {sheet}")
    return rows


if __name__ == "__main__":
    main()
