"""Write synthetic egocentric frames as HOI-QA (train and test) and print each task's chance level.

    python scripts/generate_synthetic_hoi.py --out data/synthetic_hoi --train 2000 --test 200 --seed 0

The frames and files are those of :mod:`utils.synthetic.egocentric` (hands holding or touching named
objects on a kitchen counter; EPIC-style 16:9 and Ego4D-style 4:3 videos), in the layout
:mod:`utils.data.hoi_qa` reads (``--data-root <out>``, loader ``hoi_qa``). ``--train`` / ``--test`` count
frames; each frame gives many questions. The train split is read back with ``test_overlap="refuse"``, so
a frame shared with the test files would stop the script.

Chance levels (:func:`chance_baselines`, also written to ``<out>/chance_baselines.json``) are scored with
HOI-QA's rules (:mod:`evaluation.hoi_scoring`) on the test split:

* box tasks: ``prior`` answers every question with the mean train box of its kind (its task, the hand
  sides the question names and its box count: one box per hand for both hands); ``random`` with boxes of
  that kind's median train size at uniformly random places (mean of ``draws`` draws);
* noun and hand tasks: ``prior`` answers the most frequent train answer of its kind; ``random`` is the
  expected accuracy of a uniform guess among those train answers.

None of them looks at the frame; they read the question's words only (an identify question's box is not
read, though where it lies says a lot about which hand it shows).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.hoi_scoring import box_result, noun_correct  # noqa: E402
from utils.data.hoi_qa import TASKS, HoiQADataset  # noqa: E402
from utils.synthetic.egocentric import EgoConfig, write_hoi_qa  # noqa: E402

CHANCE_FILE = "chance_baselines.json"
SIDE = re.compile(r"\b(left|right)\b")


def _answers(dataset: HoiQADataset) -> list[dict]:
    """Per question: its prior's key (task, hand sides the question names, box count), annotation frame size,
    gt boxes ``(K, 4)`` divided by that size or the gt text."""
    answers = []
    for index in range(len(dataset)):
        meta = dataset[index].meta
        size = np.array(meta["frame_size"] * 2, np.float64)
        boxes = np.asarray(meta["gt_boxes"], np.float64) / size if "gt_boxes" in meta else None
        key = (meta["task"], tuple(SIDE.findall(meta["question"].lower())), 0 if boxes is None else len(boxes))
        answers.append({"task": meta["task"], "key": key, "size": size, "boxes": boxes, "text": meta.get("gt_text")})
    return answers


def _slots(boxes: np.ndarray) -> np.ndarray:
    """``(K, 4)`` boxes in a fixed order (by left edge), so several-box answers average slot by slot."""
    return boxes[np.argsort(boxes[:, 0], kind="stable")]


def chance_baselines(
    train: HoiQADataset, test: HoiQADataset, seed: int = 0, draws: int = 20
) -> dict[str, dict[str, float]]:
    """``{task: {"questions", "prior", "random"}}``: accuracy (box hits per target, or noun / hand answers
    right) of answering ``test`` without looking at the frame, from ``train``'s answers (module docstring).

    Tasks without test questions are left out; a test question without train answers of its kind is a
    ``ValueError``.
    """
    rng = np.random.default_rng(seed)
    learned: dict[tuple, list[np.ndarray]] = defaultdict(list)
    texts: dict[tuple, list[str]] = defaultdict(list)
    for answer in _answers(train):
        if answer["boxes"] is not None:
            learned[answer["key"]].append(_slots(answer["boxes"]))
        else:
            texts[answer["key"]].append(answer["text"])
    scores: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for answer in _answers(test):
        task = answer["task"]
        if answer["boxes"] is None:
            seen = Counter(texts.get(answer["key"], ()))
            if not seen:
                raise ValueError(f"no train answers like {answer['key']} to draw a chance level from")
            prior = float(noun_correct(answer["text"], seen.most_common(1)[0][0]))
            uniform = float(np.mean([noun_correct(answer["text"], guess) for guess in seen]))
            scores[task].append((prior, uniform))
            continue
        gt, count = answer["boxes"] * answer["size"], len(answer["boxes"])
        seen_boxes = learned.get(answer["key"])
        if not seen_boxes:
            raise ValueError(f"no train answers like {answer['key']} to draw a chance level from")
        stacked = np.stack(seen_boxes)  # (N, K, 4), divided by the frame size
        prior = box_result(gt, stacked.mean(axis=0) * answer["size"])[1] / count
        extent = np.median(stacked[..., 2:] - stacked[..., :2], axis=0)  # (K, 2)
        corners = rng.uniform(0, 1, (draws, count, 2)) * (1 - extent)
        guesses = np.concatenate([corners, corners + extent], axis=-1) * answer["size"]
        uniform = float(np.mean([box_result(gt, guess)[1] / count for guess in guesses]))
        scores[task].append((prior, uniform))
    return {
        task: {
            "questions": len(scores[task]),
            "prior": float(np.mean([s[0] for s in scores[task]])),
            "random": float(np.mean([s[1] for s in scores[task]])),
        }
        for task in TASKS
        if scores[task]
    }


def chance_table(chance: dict[str, dict[str, float]]) -> str:
    """Markdown: per task its answer kind, question count and the two chance levels."""
    lines = ["| task | answer | questions | prior | random |", "|---|---|---:|---:|---:|"]
    for task, row in chance.items():
        lines.append(f"| {task} | {TASKS[task][1]} | {row['questions']} | {row['prior']:.3f} | {row['random']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", type=int, required=True, help="train frames")
    parser.add_argument("--test", type=int, required=True, help="test frames")
    parser.add_argument("--seed", type=int, required=True, help="non-negative world seed")
    parser.add_argument("--height", type=int, default=EgoConfig.height, help="frame height, px (a multiple of 9)")
    parser.add_argument("--frames-per-video", type=int, default=EgoConfig.frames_per_video)
    args = parser.parse_args(argv)
    if args.train < 1 or args.test < 1:
        parser.error("--train and --test must be positive (chance levels need both)")
    config = EgoConfig(height=args.height, frames_per_video=args.frames_per_video)
    start = time.perf_counter()
    counts = write_hoi_qa(args.out, args.seed, args.train, args.test, config, progress=True)
    seconds = time.perf_counter() - start
    for name, count in counts.items():
        print(f"{args.out / name}: {count} entries")
    print(f"{args.train + args.test} frames in {seconds:.1f} s ({(args.train + args.test) / seconds:.0f} frames/s)")
    train = HoiQADataset(args.out, "train", test_overlap="refuse")
    test = HoiQADataset(args.out, "test")
    chance = chance_baselines(train, test, seed=args.seed)
    (args.out / CHANCE_FILE).write_text(json.dumps(chance, indent=1))
    print(f"train {len(train)} questions, test {len(test)} questions; chance levels on the test split:")
    print(chance_table(chance))
    return chance


if __name__ == "__main__":
    main()
