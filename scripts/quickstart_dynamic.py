"""The dynamic spatial reasoning quick start: synthetic 4D videos -> the tiny UniGR trained with and without the GSM
on DSR-Bench-format questions -> each scored, beside the GSM model given another video's geometry or no frames, and
chance.

Videos come from :mod:`scripts.generate_synthetic_dynamic` (``--seed``, default :data:`SEED`): the training
conversations of its train split and the DSR-Bench-format parquet of its eval split, whose worlds use other
generation seeds, so no evaluated video is trained on. The GSM reads the tiny Pi3 that :mod:`scripts.pretrain_pi3`
trains on the train split's worlds (:data:`PI3_ASSET`, shipped; with ``--pi3-config`` the script trains its own).
Both models start from the shipped quick-start model with :data:`CONFIG` (``configs/quickstart_dynamic.yaml``), the
second with ``model.encoders.geometry=null``: everything else (data, steps, seed, position encoding, learning rates)
is the same. The GSM is first trained alone on the same training split (:mod:`scripts.probe_gsm` ``--target``
:data:`GSM_TARGET` ``--save``, ``--gsm-steps``: the right option from the question and its geometry, with Q-Former 2
told which tokens show the asked objects), as real UniGR starts from parts that already work, and the GSM model
starts from it (``gsm_checkpoint``; the config keeps it frozen). Training conversations are worded as DSR-Bench asks
(``mc_prompt=benchmark``), and every video is read with all its :data:`NUM_FRAMES` frames, in training and
evaluation alike. The eval split is predicted and scored by the real scripts (:mod:`evaluation.run_inference`,
:mod:`evaluation.run_eval`: DSR-Bench's accuracy overall and per question type).

Baselines:

* swapped geometry: ``run_inference --predictor swapped_geometry``, the GSM model with its geometry tokens read from
  another evaluated video (:mod:`baselines.swapped_geometry`), Qwen's video tokens and the question its own: what the
  GSM model keeps without the right geometry.
* blind: ``run_inference --predictor blind``, the GSM model asked the same questions with no video (so no geometry
  either): what the words and options alone give it.
* chance: ``uniform`` is 0.25 (four options, answer letters uniform); ``prior`` answers from the training split's
  answers of the question's type alone (:func:`prior_answers`): for distances and speeds the option nearest (in
  log scale) the type's median training answer, otherwise the option whose text the type's training answers hold
  most often.

Each stage skips work already on disk (videos, models, prediction stores), so re-running only re-scores.

    python scripts/quickstart_dynamic.py [--data-root data] [--work-dir work_dirs/quickstart_dynamic] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation import run_eval, run_inference  # noqa: E402
from evaluation.benchmarks import build_benchmark_dataset  # noqa: E402
from evaluation.prediction_store import PredictionStore  # noqa: E402
from scripts import generate_synthetic_dynamic, probe_gsm  # noqa: E402
from utils.data.dsr_bench import option_text  # noqa: E402
from utils.data.llava_video import question_options  # noqa: E402
from utils.dynamic.qa_templates import QUESTION_TYPES  # noqa: E402
from utils.synthetic.dynamic_formats import TRAINING_FILE, TRAINING_SUBSET  # noqa: E402

CONFIG = ROOT / "configs" / "quickstart_dynamic.yaml"
PI3_ASSET = ROOT / "assets" / "pi3_tiny_dynamic"
"""The shipped tiny Pi3 (``python scripts/pretrain_pi3.py --config configs/pi3/tiny_dynamic.yaml``)."""
SEED = 0
NUM_FRAMES = 16
"""Frames per video the model sees: every frame of the synthetic clips."""
MAX_NEW_TOKENS = 4
"""Longest generated answer: a letter (a model trained on the options' texts is restricted to them instead)."""
GSM_TARGET = "answer"
"""What the GSM learns alone first (:mod:`scripts.probe_gsm` ``--target``)."""
GSM_STEPS = 1000
"""Steps of the GSM alone (``--gsm-steps``)."""
NUMBER = re.compile(r"^\s*([0-9.]+)\s*(m|m/s)\s*$")
MODELS = ("gsm", "no_gsm", "swapped", "blind", "prior")


def stage(name: str) -> None:
    print(f"\n=== {name} ===", flush=True)


def generate_videos(root: Path, train_videos: int, eval_videos: int, seed: int) -> None:
    """The synthetic dataset under ``root`` (:mod:`scripts.generate_synthetic_dynamic` skips it when there)."""
    arguments = ["--out", str(root), "--train-videos", str(train_videos), "--eval-videos", str(eval_videos)]
    generate_synthetic_dynamic.main([*arguments, "--seed", str(seed)])


def pi3_checkpoint(config: Path | None, work: Path) -> Path:
    """The tiny Pi3's ``model.safetensors``: :data:`PI3_ASSET`'s, or trained here from ``config``."""
    if config is None:
        return PI3_ASSET / "model.safetensors"
    out = work / "pi3"
    if not (out / "model.safetensors").is_file():
        command = [sys.executable, "scripts/pretrain_pi3.py", "--config", str(config), f"output_dir={out}"]
        subprocess.run(command, check=True, cwd=ROOT)
    return out / "model.safetensors"


def pretrain_gsm(root: Path, pi3: Path, work: Path, steps: int, overrides: list[str]) -> Path:
    """The GSM of :data:`CONFIG` trained alone on the training split of the dataset at ``root``
    (:mod:`scripts.probe_gsm` with :data:`GSM_TARGET`, its selection target on), into ``work / "gsm_alone"``; its
    ``gsm.safetensors``."""
    out = work / "gsm_alone"
    checkpoint = out / "gsm.safetensors"
    if checkpoint.is_file():
        print(f"{checkpoint}: already trained")
        return checkpoint
    arguments = ["--config", str(CONFIG), "--data-root", str(root), "--out", str(out), "--target", GSM_TARGET]
    arguments += ["--selection-weight", "1.0", "--steps", str(steps), "--save"]
    for override in [f"model.encoders.geometry.pi3_checkpoint={pi3}", *overrides]:
        arguments += ["--override", override]
    probe_gsm.main(arguments)
    return checkpoint


def train(
    name: str,
    train_root: Path,
    pi3: Path,
    work: Path,
    steps: int | None,
    overrides: list[str],
    gsm_checkpoint: Path | None = None,
) -> Path:
    """Train :data:`CONFIG` into ``work / name`` (``no_gsm``: without the geometry encoder; ``gsm``: its GSM started
    from ``gsm_checkpoint`` when given); the final model."""
    out = work / name
    final = out / "final"
    if (final / "config.json").is_file():
        print(f"{final}: already trained")
        return final
    arguments = [f"output_dir={out}", f"data.datasets.dsr_synthetic.root={train_root}"]
    if name == "no_gsm":
        arguments.append("model.encoders.geometry=null")
    else:
        arguments.append(f"model.encoders.geometry.pi3_checkpoint={pi3}")
        if gsm_checkpoint is not None:
            arguments.append(f"model.encoders.geometry.gsm_checkpoint={gsm_checkpoint}")
    arguments += [f"train.max_steps={steps}"] if steps is not None else []
    command = [sys.executable, "train.py", "--config", str(CONFIG), *arguments, *overrides]
    subprocess.run(command, check=True, cwd=ROOT)
    return final


def answer_form(model: Path) -> str:
    """How the model in ``model`` (a run's ``final`` folder) was trained to answer: its run config's ``mc_answer``
    (:data:`utils.data.llava_video.MC_ANSWERS`)."""
    options = OmegaConf.load(model.parent / "config.yaml").data.datasets.dsr_synthetic.options
    return options.get("mc_answer", "letter")


def evaluate_model(predictor: str, model: Path, eval_root: Path, out: Path) -> dict:
    """Predict the DSR-Bench-format split with ``predictor`` into ``out`` and score it, with the real scripts. A model
    trained to answer with an option's text is restricted to the options' texts (``--options-only texts``)."""
    common = ["--benchmark", "dsr_bench", "--data-root", str(eval_root)]
    inference = ["--predictor", predictor, "--model", str(model), "--out", str(out), "--device", "cpu"]
    inference += ["--num-frames", str(NUM_FRAMES), "--max-new-tokens", str(MAX_NEW_TOKENS)]
    inference += ["--options-only", "texts"] if answer_form(model) == "option_text" else []
    run_inference.main([*common, *inference])
    return run_eval.main([*common, "--pred", str(out), "--out", str(out / "metrics.json")])


def training_answers(train_root: Path) -> dict[str, list[str]]:
    """Per question type, the text of every training answer."""
    items = json.loads((train_root / TRAINING_SUBSET / TRAINING_FILE).read_text())
    answers: dict[str, list[str]] = defaultdict(list)
    for item in items:
        options = question_options(item["conversations"][0]["value"])
        letter = item["conversations"][1]["value"].strip()
        answers[item["question_type"]].append(option_text(options[ord(letter) - ord("A")]))
    return answers


def prior_answer(options: list[str], answers: list[str]) -> str:
    """The letter chance's ``prior`` picks among ``options`` (``"(A) text"``) from one type's training ``answers``."""
    texts = [option_text(option) for option in options]
    numbers = [NUMBER.match(text) for text in texts]
    values = sorted(math.log(float(match.group(1))) for match in map(NUMBER.match, answers) if match)
    if all(numbers) and values:
        centre = values[len(values) // 2]  # the median (the upper one of an even count)
        distances = [abs(math.log(max(float(match.group(1)), 1e-6)) - centre) for match in numbers]
        return "ABCD"[distances.index(min(distances))]
    counts = Counter(answers)
    frequency = [counts[text] for text in texts]
    return "ABCD"[frequency.index(max(frequency))]


def prior_answers(train_root: Path, eval_root: Path, out: Path) -> dict:
    """Write chance's ``prior`` answers for the evaluated split into the store ``out`` and score them."""
    answers = training_answers(train_root)
    dataset, _ = build_benchmark_dataset("dsr_bench", eval_root, None, [])
    store = PredictionStore(out)
    done = store.done_ids()
    for question in dataset.questions:
        if question.sample_id not in done:
            letter = prior_answer(list(question.options), answers.get(question.category, []))
            store.write(question.sample_id, [], None, {"answer": letter})
    common = ["--benchmark", "dsr_bench", "--data-root", str(eval_root)]
    return run_eval.main([*common, "--pred", str(out), "--out", str(out / "metrics.json")])


def type_rows(results: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per question type (and ``overall``): ``questions`` and each of :data:`MODELS`' accuracy."""
    rows = {}
    for name in (*QUESTION_TYPES, "overall"):
        scores = {model: results[model]["overall" if name == "overall" else "groups"] for model in MODELS}
        if name != "overall":
            if name not in scores["gsm"]:
                continue
            scores = {model: groups[name] for model, groups in scores.items()}
        rows[name] = {"questions": scores["gsm"]["count"], **{model: scores[model]["accuracy"] for model in MODELS}}
    return rows


def results_table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown of :func:`type_rows`, with whether the GSM model beats the model without it, blind and chance."""
    lines = [
        "| question type | questions | with GSM | without GSM | GSM, another video's geometry | blind | chance prior "
        "| chance uniform | GSM beats all |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in rows.items():
        beats = "yes" if row["gsm"] > max(*(row[model] for model in MODELS[1:]), 0.25) else "no"
        cells = " | ".join(f"{row[model]:.3f}" for model in MODELS)
        label = f"**{name}**" if name == "overall" else name
        lines.append(f"| {label} | {int(row['questions'])} | {cells} | 0.250 | {beats} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="data", type=Path)
    parser.add_argument("--work-dir", default="work_dirs/quickstart_dynamic", type=Path)
    parser.add_argument("--seed", type=int, default=SEED, help="generation seed of the synthetic dataset")
    parser.add_argument("--train-videos", type=int, default=1000, help="training videos (about 9 questions each)")
    parser.add_argument("--eval-videos", type=int, default=100, help="evaluated videos (about 10 questions each)")
    parser.add_argument("--steps", type=int, default=None, help="training steps of each model (default: the config's)")
    parser.add_argument(
        "--gsm-steps",
        type=int,
        default=GSM_STEPS,
        help="steps of the GSM trained alone before the GSM model (0: it starts random; then also override "
        "model.groups.encoder_geometry.mode=full)",
    )
    parser.add_argument(
        "--pi3-config", type=Path, default=None, help="train the tiny Pi3 with this config (default: the shipped one)"
    )
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE", help="a config override for both trainings"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_args(argv)
    root = args.data_root / ("synthetic_dynamic" if args.seed == SEED else f"synthetic_dynamic_seed{args.seed}")
    train_root, eval_root, work = root / "train", root / "eval", args.work_dir
    start = time.monotonic()
    stage(f"synthetic 4D videos (seed {args.seed}): training conversations and a DSR-Bench-format split")
    generate_videos(root, args.train_videos, args.eval_videos, args.seed)
    pi3 = pi3_checkpoint(args.pi3_config, work)
    gsm_checkpoint = None
    if args.gsm_steps:
        stage(f"the GSM alone: {args.gsm_steps} steps on the training split (scripts/probe_gsm.py --save)")
        gsm_checkpoint = pretrain_gsm(root, pi3, work, args.gsm_steps, args.override)
    stage("training: with the GSM, then the same config without it")
    models = {
        "gsm": train("gsm", train_root, pi3, work, args.steps, args.override, gsm_checkpoint),
        "no_gsm": train("no_gsm", train_root, pi3, work, args.steps, args.override),
    }
    stage("DSR-Bench-format split: with GSM, without, with another video's geometry, blind, chance prior")
    results = {
        "gsm": evaluate_model("unigr", models["gsm"], eval_root, work / "eval" / "gsm"),
        "no_gsm": evaluate_model("unigr", models["no_gsm"], eval_root, work / "eval" / "no_gsm"),
        "swapped": evaluate_model("swapped_geometry", models["gsm"], eval_root, work / "eval" / "swapped"),
        "blind": evaluate_model("blind", models["gsm"], eval_root, work / "eval" / "blind"),
        "prior": prior_answers(train_root, eval_root, work / "eval" / "prior"),
    }
    rows = type_rows(results)
    table = results_table(rows)
    (work / "results.md").write_text(table + "\n")
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    minutes = (time.monotonic() - start) / 60
    print(f"\n{table}\n\nDSR quick start took {minutes:.1f} min; table in {work / 'results.md'}")
    return rows


if __name__ == "__main__":
    main()
