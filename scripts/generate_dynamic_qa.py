"""Generate DSR Suite's dynamic spatial reasoning questions from a folder of videos, step by step.

    python scripts/generate_dynamic_qa.py --videos videos/ --output dsr_qa/ --steps a,b,c,d,e --workers 4 \\
        --captions captions.csv --judge-url https://api.deepseek.com/v1 --judge-model deepseek-reasoner \\
        --detector models/grounding-dino-tiny --sam2-checkpoint models/sam2/sam2.1_hiera_large.pt \\
        --pi3 models/pi3/model.safetensors --orientation models/orient_anything/croplargeEX2/dino_weight.pt

Steps (``--steps``, any of them, run in this order; see :mod:`utils.dynamic.pipeline`):

* ``a``: motion curation and agent / object classification from captions (``--captions``) by an LLM;
* ``b``: detection, tracking, Pi3 geometry and orientation -> 3D tracks (objects from step a, else ``--objects``);
* ``c``: template questions from the tracks; ``d``: free-form questions from the tracks by an LLM;
* ``e``: training conversations (``--bench``: also a DSR-Bench-format split).

Every step writes one file per video under ``--output`` and a rerun skips videos whose file exists. A video
that fails is named in ``<output>/summary.json`` (and ``<output>/failures/<step>/<video id>.json``) and the run
goes on. ``--workers``: videos at once (step b: one set of models per worker, on ``--devices`` in turn). The
LLM key is read from the environment variable ``--judge-key-env``. A checkpoint given with ``--*-config``
JSON is a non-default size (e.g. a tiny test model).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.judge import JudgeClient, JudgeConfig, write_json_atomic
from model.geometry.pi3 import Pi3Config, Pi3Model
from utils.dynamic.orientation import OrientationConfig, load_orient_anything
from utils.dynamic.pipeline import conversion, curation, perception, questions
from utils.dynamic.pipeline.runner import (
    Skip,
    StepReport,
    WorkerPool,
    failure_path,
    list_videos,
    read_json,
    run_step,
)
from utils.dynamic.qa_templates import QUESTION_TYPES
from utils.visual_prompts.tracking import build_tracker

STEPS = "abcde"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, required=True, help="folder of the videos (id = file stem)")
    parser.add_argument("--output", type=Path, required=True, help="folder of every step's per-video outputs")
    parser.add_argument("--steps", default="a,b,c,d,e", help="comma-separated steps to run, of a,b,c,d,e")
    parser.add_argument("--workers", type=int, default=1, help="videos processed at once")
    parser.add_argument("--seed", type=int, default=0, help="question sampling seed")
    llm = parser.add_argument_group("LLM (steps a, d)")
    llm.add_argument("--judge-url", help="OpenAI-compatible API root, e.g. http://localhost:8000/v1")
    llm.add_argument("--judge-model", help="model name the endpoint serves")
    llm.add_argument("--judge-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    llm.add_argument("--judge-cache", type=Path, help="answer cache (default <output>/llm_cache)")
    llm.add_argument("--captions", type=Path, help="step a: JSON {video id: caption} or CSV video_id,caption")
    llm.add_argument("--max-objects", type=int, default=5, help="step a: objects per video")
    llm.add_argument("--free-form-count", type=int, default=2, help="step d: questions per video")
    models = parser.add_argument_group("models (step b)")
    models.add_argument("--objects", help="objects when step a has no answer: 'name:agent,name:object,...'")
    models.add_argument("--detector", type=Path, help="Grounding DINO folder (model + processor, transformers)")
    models.add_argument("--sam2-checkpoint", type=Path, help="official SAM2 checkpoint")
    models.add_argument("--sam2-config", default="configs/sam2.1/sam2.1_hiera_l.yaml", help="its sam2 config")
    models.add_argument("--sam2-overrides", type=json.loads, default={}, help="JSON dotted SAM2 config overrides")
    models.add_argument("--pi3", type=Path, help="Pi3 model.safetensors")
    models.add_argument("--pi3-config", type=json.loads, default={}, help="JSON Pi3Config fields (default: release)")
    models.add_argument("--orientation", type=Path, help="Orient Anything dino_weight.pt (none: no facings)")
    models.add_argument("--orientation-config", type=json.loads, default={}, help="JSON OrientationConfig fields")
    models.add_argument(
        "--devices",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="comma-separated devices for the step b workers, used in turn",
    )
    models.add_argument("--perception", type=json.loads, default={}, help="JSON PerceptionConfig fields")
    templates = parser.add_argument_group("templates (step c) and conversion (step e)")
    templates.add_argument("--questions-per-type", type=int, default=1, help="step c: questions per type per video")
    templates.add_argument("--question-types", default=",".join(QUESTION_TYPES), help="step c: template types")
    templates.add_argument("--balance", action="store_true", help="step e: balance template question types")
    templates.add_argument("--bench", action="store_true", help="step e: also write a DSR-Bench-format split")
    args = parser.parse_args(argv)
    args.steps = [step.strip() for step in args.steps.split(",") if step.strip()]
    if not args.steps or set(args.steps) - set(STEPS):
        parser.error(f"--steps must be some of {','.join(STEPS)}, got {args.steps}")
    if args.workers < 1 or args.questions_per_type < 1 or args.free_form_count < 1:
        parser.error("--workers, --questions-per-type and --free-form-count must be positive")
    needs = {
        "a": ["judge_url", "judge_model", "captions"],
        "d": ["judge_url", "judge_model"],
        "b": ["detector", "sam2_checkpoint", "pi3"],
    }
    for step in args.steps:
        missing = [f"--{name.replace('_', '-')}" for name in needs.get(step, []) if getattr(args, name) is None]
        if missing:
            parser.error(f"step {step} needs {' '.join(missing)}")
    return args


def judge_client(args: argparse.Namespace) -> JudgeClient:
    cache = args.judge_cache or args.output / "llm_cache"
    return JudgeClient(JudgeConfig(args.judge_url, args.judge_model, args.judge_key_env, cache, workers=args.workers))


def parse_objects(text: str | None) -> list[dict] | None:
    """``[{"name", "agent"}]`` of ``--objects`` (``name:agent`` or ``name:object``)."""
    if text is None:
        return None
    objects = []
    for item in text.split(","):
        name, _, kind = item.rpartition(":")
        if kind not in ("agent", "object") or not name.strip():
            raise ValueError(f"--objects items are 'name:agent' or 'name:object', got {item!r}")
        objects.append({"name": name.strip(), "agent": kind == "agent"})
    return objects


def build_models(args: argparse.Namespace, device: str) -> perception.PerceptionModels:
    """One set of step (b) models on ``device``."""
    from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

    detector = GroundingDinoForObjectDetection.from_pretrained(args.detector).to(device).eval()
    processor = GroundingDinoProcessor.from_pretrained(args.detector)
    tracker = build_tracker(
        "sam2", checkpoint=args.sam2_checkpoint, config=args.sam2_config, overrides=args.sam2_overrides, device=device
    )
    pi3 = Pi3Model.from_pi3_checkpoint(args.pi3, Pi3Config(**args.pi3_config) if args.pi3_config else None, device)
    orientation = None
    if args.orientation is not None:
        orientation = load_orient_anything(args.orientation, OrientationConfig(**args.orientation_config), device)
    return perception.PerceptionModels(detector, processor, tracker, pi3, orientation, torch.device(device))


def video_objects(args: argparse.Namespace, video_id: str) -> list[dict]:
    """Step (b)'s objects of a video: step (a)'s answer, else ``--objects``; :class:`Skip` for a static video."""
    path = curation.curation_path(args.output, video_id)
    if path.exists():
        record = read_json(path)
        if not record.get("dynamic"):
            raise Skip("static")
        if not record.get("objects"):
            raise Skip("no_objects")
        return record["objects"]
    objects = parse_objects(args.objects)
    if objects is None:
        raise ValueError(f"no objects for {video_id}: step a has no answer for it and --objects is not given")
    return objects


def run_perception(args: argparse.Namespace, videos: dict[str, Path]) -> StepReport:
    """Step (b); the models are built (one set per worker, at most one per pending video) only if needed."""
    config = perception.PerceptionConfig(**args.perception)
    devices = [device.strip() for device in args.devices.split(",")]

    def result(video_id: str) -> Path:
        return perception.perception_path(args.output, video_id)

    pending = sum(not result(video_id).exists() for video_id in videos)
    workers = max(1, min(args.workers, pending))
    pool = WorkerPool([build_models(args, devices[k % len(devices)]) for k in range(workers)]) if pending else None

    def process(video_id: str) -> Counter:
        objects = video_objects(args, video_id)
        arrays, counts = pool.call(lambda models: perception.perceive_video(videos[video_id], objects, models, config))
        perception.save_tracks(args.output, video_id, arrays)
        return counts

    return run_step(perception.STEP, args.output, list(videos), result, process, workers)


def run_templates(args: argparse.Namespace, videos: dict[str, Path]) -> StepReport:
    types = [kind.strip() for kind in args.question_types.split(",") if kind.strip()]

    def process(video_id: str) -> Counter:
        tracks = perception.perception_path(args.output, video_id)
        if not tracks.exists():
            raise Skip("no_tracks")
        scene = perception.load_scene(tracks)
        generated, skipped = questions.template_questions(scene, args.seed, video_id, args.questions_per_type, types)
        path = questions.question_path(args.output, questions.TEMPLATE_STEP, video_id)
        write_json_atomic(path, questions.questions_file(video_id, generated, skipped))
        counts = Counter(f"questions:{question.question_type}" for question in generated)
        return counts + Counter({f"skipped:{key}": value for key, value in skipped.items()})

    def result(video_id: str) -> Path:
        return questions.question_path(args.output, questions.TEMPLATE_STEP, video_id)

    return run_step(questions.TEMPLATE_STEP, args.output, list(videos), result, process, args.workers)


def run_free_form(args: argparse.Namespace, videos: dict[str, Path]) -> StepReport:
    """Step (d): prompts for every video with tracks and no answer yet, asked together, then one file each."""
    step = questions.FREE_FORM_STEP
    report = StepReport(step)
    prompts = {}
    for video_id in videos:
        tracks = perception.perception_path(args.output, video_id)
        if questions.question_path(args.output, step, video_id).exists():
            report.resumed += 1
        elif not tracks.exists():
            report.skipped["no_tracks"] += 1
        else:
            scene = perception.load_scene(tracks)
            if not scene.tracks:
                report.skipped["no_objects"] += 1
                continue
            prompts[video_id] = questions.free_form_prompt(scene, args.free_form_count)
    judgments, counts = judge_client(args).judge_all(prompts, desc="d: free-form")
    report.counts.update({f"llm_{key}": value for key, value in counts.as_dict().items() if value})
    for video_id, judgment in judgments.items():
        if judgment.status != "ok":
            report.failed[video_id] = f"LLM answer: {judgment.status} ({judgment.detail or judgment.text!r})"
            write_json_atomic(failure_path(args.output, step, video_id), {"error": report.failed[video_id]})
            continue
        failure_path(args.output, step, video_id).unlink(missing_ok=True)
        generated, skipped = questions.parse_free_form(judgment.parsed, args.free_form_count)
        write_json_atomic(
            questions.question_path(args.output, step, video_id), questions.questions_file(video_id, generated, skipped)
        )
        report.done += 1
        report.counts.update({"questions": len(generated), **{f"skipped:{k}": v for k, v in skipped.items()}})
    return report


def main(argv: list[str] | None = None) -> dict:
    """Run the steps; returns (and writes to ``<output>/summary.json``) every step's report."""
    args = parse_args(argv)
    videos = list_videos(args.videos)
    args.output.mkdir(parents=True, exist_ok=True)
    summary: dict = {"videos": len(videos), "steps": {}}
    for step in STEPS:
        if step not in args.steps:
            continue
        if step == "a":
            report = curation.curate(
                judge_client(args), args.output, list(videos), curation.read_captions(args.captions), args.max_objects
            )
        elif step == "b":
            report = run_perception(args, videos)
        elif step == "c":
            report = run_templates(args, videos)
        elif step == "d":
            report = run_free_form(args, videos)
        else:
            counts = conversion.convert(args.output, videos, args.balance, args.seed, args.bench)
            report = StepReport("e_conversion", done=1, counts=counts)
        summary["steps"][step] = report.as_dict()
        failed = f", failed {sorted(report.failed)}" if report.failed else ""
        print(f"step {step}: done {report.done}, resumed {report.resumed}, skipped {dict(report.skipped)}{failed}")
    write_json_atomic(args.output / "summary.json", summary)
    return summary


if __name__ == "__main__":
    main()
