"""Where a situated SQA3D answer goes wrong: per question type, how often the grounding head finds where the speaker
stands and what they face, how often it grounds the asked object, and how often the word after ``[READ]`` is right
when it holds the right object seen from the right pose.

One teacher-forced pass per question of a split (loader option ``situated``, the annotations' ``position`` /
``rotation`` and ``object_ids``): the head's stand and face argmaxes (face among the other proposals, as generation
picks) against :func:`~model.heads.proposal_grounding.situation_targets` of the annotated pose, the ``[GRD]`` argmax
against the proposal the object's box matches, and the argmax after ``[READ]`` (which training fills from the
targets) against the answer's first word. A generated answer needs all three pointers; the last column says what
the read alone would give.

    python scripts/probe_situations.py --model work_dirs/quickstart_scenes/final \
        --data-root work_dirs/quickstart_scenes_data/synthetic_scenes --split test [--num-frames 8] [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.builder import load_unigr  # noqa: E402
from model.heads.proposal_grounding import single_targets, situation_targets  # noqa: E402
from utils.data import scanqa  # noqa: E402,F401  (registers the loaders)
from utils.data.collate import SampleCollator  # noqa: E402
from utils.data.prompts import READ_TOKEN  # noqa: E402
from utils.data.registry import LOADERS  # noqa: E402


@torch.no_grad()
def probe(model_dir: str, data_root: str, split: str, num_frames: int, limit: int | None) -> dict[str, Counter]:
    """Per question type, counts of ``questions``, ``stand`` and ``face`` found, and of the questions about one
    object (``grounded``) the ``object`` grounded and the ``read`` right."""
    model, processor = load_unigr(model_dir)
    model.eval()
    if model.grounding_head is None or model.grounding_head.situation is None:
        raise ValueError(f"{model_dir}: the model has no grounding head with situation queries")
    dataset = LOADERS["sqa3d"].build(data_root, split, num_frames=num_frames, train=False, seed=0, situated=True)
    collate = SampleCollator.for_model(model, processor)
    read_id = processor.tokenizer.convert_tokens_to_ids(READ_TOKEN)
    counts: dict[str, Counter] = {}
    for index in tqdm(range(min(len(dataset), limit or len(dataset))), desc="probe"):
        sample = dataset[index]
        batch = collate([sample])
        proposals = batch["proposals"][0]
        targets = situation_targets(batch["gt_situations"][0][0], proposals)
        if targets is None:
            continue
        out = model(**batch)
        head = model.grounding_head.predict(
            out.last_hidden_state, batch["input_ids"], {**batch, "input_embeddings": model.get_input_embeddings()}
        )
        row = counts.setdefault(sample.meta["category"], Counter())
        row["questions"] += 1
        stand_logits, face_logits = head["situation_logits"][0][0]
        stand = int(stand_logits.argmax())
        face_logits = face_logits.clone()
        face_logits[stand] = -torch.inf
        row["stand"] += stand == targets[0]
        row["face"] += int(face_logits.argmax()) == targets[1]
        if "gt_boxes_3d" not in batch or sample.grounding_multi:
            continue
        row["grounded"] += 1
        target = single_targets([batch["gt_boxes_3d"][0][0][:1].float()], proposals.float(), 0.25)
        row["object"] += int(head["grounding_logits"][0][0].argmax()) == int(target[0])
        read = (batch["input_ids"][0] == read_id).nonzero()[0, 0]
        word = processor.tokenizer.decode([int(out.logits[0, read].argmax())]).strip()
        row["read"] += word == sample.meta["answers"][0].split()[0]
    return counts


def table(counts: dict[str, Counter]) -> str:
    """A markdown table: per question type, its questions and each column right (object and read: of the questions
    about one object)."""
    lines = [
        "| question type | questions | stand found | face found | about one object | object grounded | read right |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in sorted(counts):
        row = counts[kind]
        cells = [row["questions"], row["stand"], row["face"], row["grounded"], row["object"], row["read"]]
        lines.append(f"| {kind} | " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a UniGR folder with the grounding head's situation")
    parser.add_argument("--data-root", required=True, help="SQA3D's files and scenes/ (official layout)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None, help="probe only the first N questions")
    args = parser.parse_args(argv)
    print(table(probe(args.model, args.data_root, args.split, args.num_frames, args.limit)))


if __name__ == "__main__":
    main()
