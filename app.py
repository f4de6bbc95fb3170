"""The UniGR demo: ``python app.py`` (the quick start's tiny model) or ``python app.py --version PATH``.

Opens on http://127.0.0.1:7860 by default; ``--host 0.0.0.0`` serves other machines and ``--share``
makes a public Gradio link (both off unless asked). Tabs: referring segmentation, questions about
a region the user points at, and questions about a 3D scene (``--scene-root``: a folder of scene folders
made by ``scripts/preprocess_scenes.py``; a .zip of one can also be uploaded), how things move in a video
(``--detector``: a Grounding DINO folder, to also track and draw the objects asked about) and hand-object
questions about a frame (see :mod:`demo.tabs`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from demo.app import build_demo
from demo.context import DemoContext, default_output_root
from inference.media import MediaLimits
from inference.pipeline import UniGRInference
from scripts.infer import DEFAULT_MODEL, check_model_folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", type=Path, default=DEFAULT_MODEL, help="a UniGR folder (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default="auto", help="auto: bf16 on a GPU")
    parser.add_argument("--num-frames", type=int, help="frames the LLM sees (default: the model's own)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--tracker", default="sam2", help="sam2, optical_flow or cotracker (carries a region)")
    parser.add_argument("--concurrency", type=int, default=1, help="model requests run at once")
    parser.add_argument("--scene-root", type=Path, help="folder of 3D scene folders (scripts/preprocess_scenes.py)")
    parser.add_argument("--detector", type=Path, help="Grounding DINO folder (transformers) to track objects with")
    defaults = MediaLimits()
    parser.add_argument("--max-megabytes", type=float, default=defaults.max_megabytes, help="largest upload")
    parser.add_argument("--max-seconds", type=float, default=defaults.max_seconds, help="longest video")
    parser.add_argument("--max-frames", type=int, default=defaults.max_frames, help="frames decoded (sampled)")
    parser.add_argument("--max-side", type=int, default=defaults.max_side, help="larger frames are scaled down")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.scene_root is not None and not args.scene_root.is_dir():
        raise SystemExit(f"--scene-root {args.scene_root} is not a folder; make one with scripts/preprocess_scenes.py")
    if args.detector is not None and not args.detector.is_dir():
        raise SystemExit(f"--detector {args.detector} is not a folder; give a Grounding DINO folder (transformers)")
    inference = UniGRInference(
        check_model_folder(args.version), args.device, args.dtype, args.num_frames, args.max_new_tokens, args.tracker
    )
    limits = MediaLimits(args.max_megabytes, args.max_seconds, args.max_frames, args.max_side)
    context = DemoContext(inference, limits, default_output_root(), args.concurrency, args.scene_root, args.detector)
    demo = build_demo(context)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=f"{args.max_megabytes:g}mb",
        allowed_paths=[str(context.output_root)],
    )


if __name__ == "__main__":
    main()
