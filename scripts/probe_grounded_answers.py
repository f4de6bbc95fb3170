"""Where a grounded-and-read answer goes wrong (ScanQA's ``read_object``, SQA3D's ``situated``): per question form,
how often the grounding head grounds the asked object, how often the word after ``[READ]`` is right when it holds
the right object, and, for SQA3D, how often the head finds where the speaker stands and what they face.

One teacher-forced pass per question of a split: the ``[GRD]`` argmax against the proposal the object's box matches,
and the argmaxes from ``[READ]`` on (which training fills from the targets) against the tokens of the answer's first
word; for SQA3D also the head's stand and face argmaxes (face among the other proposals, as generation picks)
against :func:`~model.heads.proposal_grounding.situation_targets` of the annotated pose. A generated answer needs every
pointer; the read column says what the read alone would give. Rows: SQA3D's question type, ScanQA's first two words
of the question ("what colour", "what is", "how many").

    python scripts/probe_grounded_answers.py --benchmark scanqa --model work_dirs/quickstart_scenes/final \
        --data-root work_dirs/quickstart_scenes_data/synthetic_scenes --split val [--num-frames 8] [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import ProcessorMixin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.builder import load_unigr  # noqa: E402
from model.heads.proposal_grounding import single_targets, situation_targets  # noqa: E402
from utils.data import scanqa  # noqa: E402,F401  (registers the loaders)
from utils.data.collate import SampleCollator  # noqa: E402
from utils.data.prompts import READ_TOKEN  # noqa: E402
from utils.data.registry import LOADERS  # noqa: E402
from utils.data.schema import Sample  # noqa: E402

LOADER_OPTIONS = {"scanqa": {"read_object": True}, "sqa3d": {"situated": True}}


def question_form(sample: Sample, benchmark: str) -> str:
    """The row a question is counted in: SQA3D's question type, ScanQA's first two words of the question."""
    if benchmark == "sqa3d":
        return sample.meta["category"]
    return " ".join(sample.conversation[0]["content"].lower().split()[:2])


@torch.no_grad()
def probe(
    model_dir: str, data_root: str, split: str, num_frames: int, limit: int | None, benchmark: str = "sqa3d"
) -> dict[str, Counter]:
    """Per question form, counts of ``questions``; of those about one object (``grounded``) the ``object`` grounded
    and the ``read`` right; for SQA3D, the ``stand`` and ``face`` found."""
    if benchmark not in LOADER_OPTIONS:
        raise ValueError(f"benchmark must be one of {sorted(LOADER_OPTIONS)}, got {benchmark!r}")
    situated = benchmark == "sqa3d"
    model, processor = load_unigr(model_dir)
    model.eval()
    if model.grounding_head is None or (situated and model.grounding_head.situation is None):
        what = "with situation queries" if situated else ""
        raise ValueError(f"{model_dir}: the model has no grounding head {what}".rstrip())
    options = LOADER_OPTIONS[benchmark]
    dataset = LOADERS[benchmark].build(data_root, split, num_frames=num_frames, train=False, seed=0, **options)
    collate = SampleCollator.for_model(model, processor)
    read_id = processor.tokenizer.convert_tokens_to_ids(READ_TOKEN)
    counts: dict[str, Counter] = {}
    for index in tqdm(range(min(len(dataset), limit or len(dataset))), desc=f"probe {benchmark}"):
        sample = dataset[index]
        batch = collate([sample])
        proposals = batch["proposals"][0]
        targets = situation_targets(batch["gt_situations"][0][0], proposals) if situated else None
        if situated and targets is None:
            continue
        out = model(**batch)
        head = model.grounding_head.predict(
            out.last_hidden_state, batch["input_ids"], {**batch, "input_embeddings": model.get_input_embeddings()}
        )
        row = counts.setdefault(question_form(sample, benchmark), Counter())
        row["questions"] += 1
        if situated:
            stand_logits, face_logits = head["situation_logits"][0][0]
            stand = int(stand_logits.argmax())
            face_logits = face_logits.clone()
            face_logits[stand] = -torch.inf
            row["stand"] += stand == targets[0]
            row["face"] += int(face_logits.argmax()) == targets[1]
        if "gt_boxes_3d" not in batch or sample.grounding_multi:
            continue
        row["grounded"] += 1
        target = single_targets(
            [batch["gt_boxes_3d"][0][0][:1].float()], proposals.float(), model.grounding_head.config.iou_threshold
        )
        row["object"] += int(head["grounding_logits"][0][0].argmax()) == int(target[0])
        read = int((batch["input_ids"][0] == read_id).nonzero()[0, 0])
        row["read"] += read_word_right(out.logits[0], batch["input_ids"][0], read, sample.meta["answers"][0], processor)
    return counts


def read_word_right(
    logits: torch.Tensor, input_ids: torch.Tensor, read: int, answer: str, processor: ProcessorMixin
) -> bool:
    """Whether, teacher forced, every token of the answer's first word after ``[READ]`` (at ``read``) is the argmax
    of the logits before it (a small tokenizer splits words like "white" into several tokens)."""
    word, answer_ids = answer.split()[0], input_ids[read + 1 :]
    for length in range(1, len(answer_ids) + 1):
        if processor.tokenizer.decode(answer_ids[:length].tolist()).strip() == word:
            predicted = logits[read : read + length].argmax(dim=-1)
            return bool((predicted == answer_ids[:length]).all())
    raise ValueError(f"the answer after {READ_TOKEN} does not begin with {word!r}")


def table(counts: dict[str, Counter], situated: bool = True) -> str:
    """A markdown table: per question form, its questions and each column right (object and read: of the questions
    about one object; stand and face only where ``situated``)."""
    columns = ["stand", "face"] if situated else []
    columns += ["grounded", "object", "read"]
    names = {
        "stand": "stand found",
        "face": "face found",
        "grounded": "about one object",
        "object": "object grounded",
        "read": "read right",
    }
    lines = [
        "| question | questions | " + " | ".join(names[column] for column in columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for kind in sorted(counts):
        row = counts[kind]
        lines.append(f"| {kind} | {row['questions']} | " + " | ".join(str(row[column]) for column in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", choices=sorted(LOADER_OPTIONS), default="sqa3d")
    parser.add_argument("--model", required=True, help="a UniGR folder with the grounding head")
    parser.add_argument("--data-root", required=True, help="the benchmark's files and scenes/ (official layout)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None, help="probe only the first N questions")
    args = parser.parse_args(argv)
    counts = probe(args.model, args.data_root, args.split, args.num_frames, args.limit, args.benchmark)
    print(table(counts, situated=args.benchmark == "sqa3d"))


if __name__ == "__main__":
    main()
