"""Run UniGR on your own video, frame folder or image from the command line.

    python -m scripts.infer --input cat.mp4 --prompt "the cat" --out work_dirs/infer/cat
    python -m scripts.infer --input cat.mp4 --prompt "What is <region> doing?" --region box.json --out ...
    python -m scripts.infer --batch requests.json --out work_dirs/infer/batch

Tasks (``--task``): ``segment`` prints the answer and writes every ``[SEG]``'s mask per frame
(``masks/<frame>.png``, DAVIS-style indexed PNGs: 1 is the first object) and ``overlay.mp4`` (an
image: ``overlay.png``); ``region`` asks about what ``--region`` points at (a box, clicks, a scribble
or a mask on one frame; see :mod:`inference.region_prompt`), tracks it to every frame and writes its
masks and overlay the same way; ``answer`` only answers. ``auto``: ``region`` when ``--region`` is
given, else ``segment`` (``answer`` for a model without a segmentation head). Each run writes
``result.json``.

``--batch`` takes a JSON list of requests ``{"input": ..., "prompt": ..., "region": {...} or "file",
"task": ..., "kind": ..., "name": ...}`` (paths relative to the list's folder), writes each to
``<out>/<name or index>/`` and ``<out>/summary.json``; a request that fails is reported and counted,
the others still run, and the exit status is 1 if any failed.

The model is any UniGR folder (default: the quick start's trained tiny model, made by
``python scripts/quickstart.py``). The same :class:`~inference.pipeline.UniGRInference` serves ``app.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from inference.media import Media, MediaError, MediaLimits, load_media
from inference.outputs import overlay_frames, write_mask_pngs, write_overlay_video
from inference.pipeline import SEGMENTATION_KINDS, UniGRInference
from inference.region_prompt import read_region_file, region_from_dict

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "assets" / "unigr_tiny_quickstart"
TASKS = ("auto", "segment", "region", "answer")


def check_model_folder(path: Path) -> Path:
    """``path`` if it holds a UniGR model, else a ``SystemExit`` saying how to make or get one."""
    if (path / "config.json").is_file():
        return path
    hint = " Make it with: python scripts/quickstart.py" if path == DEFAULT_MODEL else ""
    raise SystemExit(f"error: {path} is not a UniGR model folder (no config.json).{hint}")


def run_request(inference: UniGRInference, request: dict, base: Path, out: Path, limits: MediaLimits) -> dict:
    """Run one request (the keys of a ``--batch`` entry) and write its outputs to ``out``; returns its record."""
    for key in ("input", "prompt"):
        if not isinstance(request.get(key, ""), str):
            raise ValueError(f"{key} must be a string, got {request[key]!r}")
    region = request.get("region")
    if region is not None and not isinstance(region, str | dict):
        raise ValueError(f"region must be a file name or an object, got {region!r}")
    media = load_media(base / request["input"], limits)
    prompt, task = request.get("prompt", ""), request.get("task", "auto")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "auto":
        task = "region" if region is not None else "segment" if inference.can_segment else "answer"
    if (task == "region") != (region is not None):
        raise ValueError("a region task needs a region, and a region needs the region task")
    out.mkdir(parents=True, exist_ok=True)
    record = {"input": str(media.source), "prompt": prompt, "task": task, "frames": len(media.frames)}
    record["notes"] = media.notes
    if task == "segment":
        result = inference.segment(media, prompt, request.get("kind", "auto"))
        record.update(answer=result.answer, objects=int(len(result.masks)))
        record.update(write_masks(media, result.masks, out))
    elif task == "region":
        user = region_from_dict(region, base, "region") if isinstance(region, dict) else read_region_file(base / region)
        user = user.scaled(media.scale, *media.frames.shape[1:3])  # region pixels are the source's
        mask = inference.prompt_mask(media, user)
        tracked = inference.track(media, user.frame, mask)
        record["answer"] = inference.answer(inference.region_sample(media, prompt, tracked, user.kind))
        record.update(region={"frame": user.frame, "kind": user.kind}, **write_masks(media, tracked[None], out))
    else:
        record["answer"] = inference.answer(inference.sample(media, prompt))
    (out / "result.json").write_text(json.dumps(record, indent=2))
    return record


def write_masks(media: Media, masks: np.ndarray, out: Path) -> dict:
    """Masks as PNGs and the overlay (``overlay.mp4`` for a video, ``overlay.png`` for an image)."""
    write_mask_pngs(out / "masks", masks, media.frame_names)
    if media.medium == "image":
        overlay = out / "overlay.png"
        Image.fromarray(overlay_frames(media.frames, masks)[0]).save(overlay)
    else:
        overlay = write_overlay_video(out / "overlay.mp4", media.frames, masks, media.fps)
    return {"masks": str(out / "masks"), "overlay": str(overlay)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a UniGR folder (default: %(default)s)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help="a video file, a frame folder or an image")
    source.add_argument("--batch", type=Path, help="a JSON list of requests (see above)")
    parser.add_argument("--prompt", default="", help="the expression to segment, or the question")
    parser.add_argument("--region", type=Path, help="a region file: JSON box / points / scribble / mask, or a mask PNG")
    parser.add_argument("--task", choices=TASKS, default="auto")
    parser.add_argument("--kind", choices=SEGMENTATION_KINDS, default="auto", help="how a segmentation is asked")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default="auto", help="auto: bf16 on a GPU")
    parser.add_argument("--num-frames", type=int, help="frames the LLM sees (default: the model's own)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--tracker", default="sam2", help="sam2, optical_flow or cotracker (carries a region)")
    defaults = MediaLimits()
    parser.add_argument("--max-frames", type=int, default=defaults.max_frames, help="frames decoded (sampled)")
    parser.add_argument("--max-seconds", type=float, default=defaults.max_seconds, help="longest video")
    parser.add_argument("--max-side", type=int, default=defaults.max_side, help="larger frames are scaled down")
    parser.add_argument("--max-megabytes", type=float, default=defaults.max_megabytes, help="largest input")
    parser.add_argument("--folder-fps", type=float, default=defaults.folder_fps, help="a frame folder's frame rate")
    args = parser.parse_args(argv)
    if args.input is not None and not args.prompt.strip():
        parser.error("--input needs --prompt")
    if args.batch is not None and (args.region is not None or args.prompt):
        parser.error("--batch takes prompts and regions from its requests")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limits = MediaLimits(args.max_megabytes, args.max_seconds, args.max_frames, args.max_side, args.folder_fps)
    inference = UniGRInference(
        check_model_folder(args.model), args.device, args.dtype, args.num_frames, args.max_new_tokens, args.tracker
    )
    if args.input is not None:
        request = {"input": str(args.input.resolve()), "prompt": args.prompt, "task": args.task, "kind": args.kind}
        if args.region is not None:
            request["region"] = str(args.region.resolve())
        try:
            record = run_request(inference, request, Path.cwd(), args.out, limits)
        except (MediaError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(record["answer"])
        if "overlay" in record:
            print(f"masks: {record['masks']}\noverlay: {record['overlay']}", file=sys.stderr)
        return 0
    return run_batch(inference, args.batch, args.out, limits)


def run_batch(inference: UniGRInference, path: Path, out: Path, limits: MediaLimits) -> int:
    """Every request of the list at ``path``; failures are reported and counted in ``<out>/summary.json``."""
    try:
        requests = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        print(f"error: {path}: cannot read the request list ({error})", file=sys.stderr)
        return 1
    if not isinstance(requests, list) or not all(isinstance(r, dict) and "input" in r for r in requests):
        print(f"error: {path}: expected a JSON list of objects with an 'input' each", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    summary = {"requests": len(requests), "failed": 0, "results": []}
    for index, request in enumerate(tqdm(requests, desc="requests")):
        name = str(request.get("name", f"{index:04d}"))
        try:
            record = run_request(inference, request, path.parent, out / name, limits)
            summary["results"].append({"name": name, **record})
            tqdm.write(f"{name}: {record['answer']}")
        except (MediaError, ValueError, KeyError) as error:
            summary["failed"] += 1
            summary["results"].append({"name": name, "input": request.get("input"), "error": str(error)})
            tqdm.write(f"{name}: error: {error}", file=sys.stderr)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))  # kept up to date: nothing done is lost
    print(f"{len(requests) - summary['failed']} of {len(requests)} requests done; summary: {out / 'summary.json'}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
