"""The GSM alone: can it answer a synthetic DSR question from Pi3's geometry and the question, with no LLM?

A diagnostic for the DSR quick start (issue 16): when the GSM model scores what the same model scores with another
video's geometry, either the GSM passes on nothing or the LLM does not read it. This script takes the LLM out. It
builds the UniGR model of ``--config`` (its ``model.encoders.geometry`` block: the GSM and the frozen Pi3) and
trains only the GSM, on the training split of a ``generate_synthetic_dynamic.py`` dataset, with a small head on its
appended tokens (each apart, as the LLM reads them):

* ``--target answer``: the right option among the four (each option's tokens, embedded by the model's frozen input
  embeddings, read by a GRU; a score per option from the GSM's output and the option);
* ``--target position``: where the question's first target object is, seen from the camera, at the first and the
  last of its frames (:func:`~utils.synthetic.dynamic_selection.asked_position`: image direction and log depth), what
  every answer is computed from;
* ``--target value``: the question's exact value without the options (``Question.value``: the direction's sector
  among :data:`~utils.dynamic.qa_templates.DIRECTIONS`, or the log of a distance, speed or speed ratio), one output
  per question type.

The question is the user turn the model reads (DSR-Bench's wording, options and instruction), embedded by the
model's frozen input embeddings, as Q-Former 1 reads it in the model. ``--selection-weight`` adds a target for
where Q-Former 2 looks: the cross-entropy of its last layer's attention (mean over queries) against the geometry
tokens that show the question's objects at its frames (:func:`utils.synthetic.dynamic_selection.query_cells`,
from the saved worlds). ``--oracle-selection`` instead imposes that selection on Q-Former 2's last layer (every query
reads the asked tokens evenly): what the GSM passes on when it looks where it should. Pi3's grouped features are
computed once per video (``<out>/pi3_<split>.pt``, reused).

The evaluated split is scored with each question's own geometry and with another evaluated video's
(:func:`baselines.swapped_geometry.donor_indices`, as ``run_inference --predictor swapped_geometry``): the gap is
what the geometry gives. Also reported: the attention Q-Former 2 puts on the asked objects' tokens, on the tokens
of the asked frames, and on the tokens of the scene's other objects at those frames, and the asked objects' share of
the attention on any object beside an even reader's (:func:`even_object_reader`), and the share on the tokens of
the question's first target (the object the ``position`` target asks about), own and swapped. Results go to
``<out>/metrics.json`` and the console; the loss curve to TensorBoard (``<out>/tb``).

    python scripts/probe_gsm.py --config configs/quickstart_dynamic.yaml --data-root data/synthetic_dynamic \\
        --out work_dirs/gsm_probe [--target answer|value] [--steps 1000] [--selection-weight 1.0]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from baselines.swapped_geometry import donor_indices  # noqa: E402
from model.encoders.geometry import GeometryEncoder  # noqa: E402
from train import build_model  # noqa: E402
from utils.data.collate import resize_geometry_frames  # noqa: E402
from utils.data.dsr_bench import dsr_questions, option_text  # noqa: E402
from utils.data.llava_video import question_options  # noqa: E402
from utils.data.prompts import multiple_choice_question  # noqa: E402
from utils.data.question_times import token_seconds  # noqa: E402
from utils.dynamic.qa_templates import DIRECTIONS, QUESTION_TYPES  # noqa: E402
from utils.synthetic.dynamic_formats import TRAINING_FILE, TRAINING_SUBSET, read_world, split_questions  # noqa: E402
from utils.synthetic.dynamic_selection import asked_position, query_cells, query_frames  # noqa: E402
from utils.training.config import load_config  # noqa: E402
from utils.video.clip import read_clip  # noqa: E402
from utils.video.model_inputs import QwenVideo, qwen_video, video_processor_kwargs  # noqa: E402

TARGETS = ("answer", "value", "position")
POSITION_FIELDS = ("x/z first", "y/z first", "log depth first", "x/z last", "y/z last", "log depth last")
"""The ``position`` target: :func:`~utils.synthetic.dynamic_selection.asked_position`."""
HEAD_WIDTH = 256
"""Hidden width of the answer head."""


@dataclass
class ProbeQuestion:
    """One question: its video, the user turn, its options' texts, the right option, its type, exact value and the
    geometry tokens it is about."""

    video: str
    prompt: str
    options: list[str]
    answer: int
    question_type: str
    value: float | str
    cells: list[int]
    position: list[float]
    slots: list[int] = field(default_factory=list)
    """The temporal slots of the merged token grid that hold the question's frames."""
    other_cells: list[int] = field(default_factory=list)
    """The tokens where the scene's other objects are at the question's frames (none of :attr:`cells`)."""
    position_cells: list[int] = field(default_factory=list)
    """The tokens where the object of :attr:`position` (the question's first target) is at its frames (of
    :attr:`cells`, which also hold the other targets and the observer)."""


def pi3_cache(model, processor, videos: dict[str, Path], path: Path) -> dict:
    """``{"groups": {video: (N, 8, C)}, "grid": [t, h, w], "frame_size": [H, W], "seconds_per_slot": s}`` of ``videos``
    (Qwen's grid and slot length, one for all), read from ``path`` when it holds them; with the GSM's
    ``appearance_keys``, also ``"appearance": {video: (N, D)}``, the model's (frozen) video tokens."""
    encoder: GeometryEncoder = model.input_assembly.encoders["geometry"]
    appearance = encoder.appearance_proj is not None
    if path.is_file():
        cache = torch.load(path, weights_only=True)
        if set(cache["groups"]) == set(videos) and (not appearance or "appearance" in cache):
            return cache
    groups, looks, shapes = {}, {}, set()
    for name, video in tqdm(sorted(videos.items()), desc=f"Pi3 features -> {path.name}"):
        clip = read_clip(video)
        frames = np.stack(clip.frames)  # (T, H, W, 3) uint8
        qwen = qwen_video(frames, clip.timestamps, processor.video_processor)
        grid = qwen.video_grid_thw.tolist()
        groups[name] = encoder.pi3_groups(resize_geometry_frames(frames, grid, processor.video_processor.patch_size))
        if appearance:
            looks[name] = video_tokens(model, processor, qwen)
        shapes.add((*grid, *frames.shape[1:3], round(qwen.second_per_grid_ts, 6)))
    if len(shapes) != 1:
        raise ValueError(f"{path.name}: the probe needs one grid, frame size and frame rate; the videos have {shapes}")
    shape = shapes.pop()
    cache = {"groups": groups, "grid": list(shape[:3]), "frame_size": list(shape[3:5]), "seconds_per_slot": shape[5]}
    if appearance:
        cache["appearance"] = looks
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(cache, path)
    return cache


@torch.no_grad()
def video_tokens(model, processor, video: QwenVideo) -> torch.Tensor:
    """The model's ``(N, D)`` merged video tokens of one video (Qwen's vision tower and merger, as the LLM gets them
    before the input encoders add to them)."""
    pixels = processor.video_processor(videos=[video.frames], **video_processor_kwargs([video]), return_tensors="pt")
    features = model.backbone.model.get_video_features(
        pixels["pixel_values_videos"], pixels["video_grid_thw"], return_dict=True
    )
    return torch.cat(features.pooler_output)


def split_probe_questions(
    root: Path, split: str, generation: dict, cache: dict, temporal: int, merge: int
) -> list[ProbeQuestion]:
    """The questions of ``split`` (``train``: the training conversations, ``eval``: the DSR-Bench parquet) of the
    dataset at ``root`` (``generation.json`` beside the splits), with their exact values and the tokens of ``cache``'s
    grid that show what each is about (``temporal`` frames per slot, ``merge`` x ``merge`` patches per token)."""
    count = generation["train_videos" if split == "train" else "eval_videos"]
    truths = split_questions(split, generation["split_seeds"][split], count, generation["questions_per_type"])
    asked = []
    if split == "train":
        for item in json.loads((root / "train" / TRAINING_SUBSET / TRAINING_FILE).read_text()):
            text = item["conversations"][0]["value"].removeprefix("<video>\n")
            letter = item["conversations"][1]["value"].strip()
            asked.append((Path(item["video"]).stem, text.split("\n")[0], question_options(text), letter))
    else:
        for row in dsr_questions(root / "eval"):
            asked.append((row.meta["video"], row.question, list(row.options), row.answers[0]))
    slots, height, width = cache["grid"]
    worlds, questions = {}, []
    for video, question, options, letter in asked:
        truth = truths.get((video, question))
        if truth is None:
            raise ValueError(f"{root / split}: {video} asks {question!r}, which its world does not generate")
        if video not in worlds:
            worlds[video] = read_world(root / split / "worlds" / f"{video}.npz")
        grid = (slots, height // merge, width // merge)
        cells = query_cells(worlds[video], truth.query, tuple(cache["frame_size"]), grid, temporal)
        every_object = replace(truth.query, targets=tuple(range(len(worlds[video].positions))), observer=None)
        others = query_cells(worlds[video], every_object, tuple(cache["frame_size"]), grid, temporal)
        first_target = replace(truth.query, targets=truth.query.targets[:1], observer=None)
        position_cells = query_cells(worlds[video], first_target, tuple(cache["frame_size"]), grid, temporal)
        frames = worlds[video].num_video_frames
        questions.append(
            ProbeQuestion(
                video=video,
                prompt=multiple_choice_question(question, options),
                options=[option_text(option) for option in options],
                answer=ord(letter) - ord("A"),
                question_type=truth.question_type,
                value=truth.value,
                cells=cells,
                position=asked_position(worlds[video], truth.query),
                slots=sorted({frame // temporal for frame in query_frames(truth.query, frames)}),
                other_cells=sorted(set(others) - set(cells)),
                position_cells=position_cells,
            )
        )
    return questions


class ProbeHead(nn.Module):
    """What the probe reads off the GSM's appended tokens ``(B, num_queries, D)``, each apart, as the LLM sees them
    (a linear map of their concatenation): option scores ``(B, 4)`` (``answer``), per question type 8 direction
    logits and one log value ``(B, types, 9)`` (``value``), or the asked object's place ``(B, 6)`` (``position``)."""

    def __init__(self, target: str, num_queries: int, width: int, embeddings: nn.Embedding):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.target, self.embeddings = target, embeddings
        self.reader = nn.Sequential(nn.Linear(num_queries * width, HEAD_WIDTH), nn.GELU())
        self.option_reader = nn.GRU(width, HEAD_WIDTH, batch_first=True) if target == "answer" else None
        outputs = {"value": len(QUESTION_TYPES) * (len(DIRECTIONS) + 1), "position": len(POSITION_FIELDS)}
        self.scorer = (
            nn.Sequential(nn.Linear(3 * HEAD_WIDTH, HEAD_WIDTH), nn.GELU(), nn.Linear(HEAD_WIDTH, 1))
            if target == "answer"
            else nn.Linear(HEAD_WIDTH, outputs[target])
        )

    def forward(self, tokens: torch.Tensor, options: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        gsm = self.reader(tokens.flatten(1))  # (B, HEAD_WIDTH)
        if self.target == "value":
            return self.scorer(gsm).view(len(gsm), len(QUESTION_TYPES), len(DIRECTIONS) + 1)
        if self.target == "position":
            return self.scorer(gsm)
        ids, lengths = options  # (B * 4, L) padded option tokens, (B * 4,) lengths
        read, _ = self.option_reader(self.embeddings(ids))
        option = read[torch.arange(len(ids)), lengths - 1].view(len(gsm), 4, -1)  # each option's last state
        gsm = gsm[:, None].expand_as(option)
        return self.scorer(torch.cat([gsm, option, gsm * option], dim=-1))[..., 0]


def log_value(question: ProbeQuestion) -> float:
    """The log of a numeric exact value (metres, metres per second or a speed ratio; at least 1e-3)."""
    return math.log(max(question.value, 1e-3))


def value_loss(outputs: torch.Tensor, questions: list[ProbeQuestion]) -> torch.Tensor:
    """Mean over the questions: the direction's cross-entropy, or the squared error of the log value."""
    terms = []
    for output, question in zip(outputs, questions):
        row = output[QUESTION_TYPES.index(question.question_type)]
        if isinstance(question.value, str):
            terms.append(F.cross_entropy(row[None, :-1], torch.tensor([DIRECTIONS.index(question.value)])))
        else:
            terms.append((row[-1] - log_value(question)) ** 2)
    return torch.stack(terms).mean()


def selection_loss(attention: torch.Tensor, questions: list[ProbeQuestion]) -> torch.Tensor | None:
    """``-log`` of the share of Q-Former 2's attention (mean over queries) on each question's cells, averaged over the
    questions that have cells (``None`` if none has)."""
    terms = [
        -torch.log(weights.mean(0)[question.cells].sum() + 1e-6)
        for weights, question in zip(attention, questions)
        if question.cells
    ]
    return torch.stack(terms).mean() if terms else None


def oracle_selection(questions: list[ProbeQuestion], tokens: int) -> torch.Tensor:
    """``(B, tokens)``: per question, attention spread evenly over its cells (over every token if it has none)."""
    selection = torch.full((len(questions), tokens), 1.0 / tokens)
    for row, question in enumerate(questions):
        if question.cells:
            selection[row] = 0.0
            selection[row, question.cells] = 1.0 / len(question.cells)
    return selection


class GSMProbe:
    """The GSM of a UniGR model, its frozen input embeddings and tokenizer, and a :class:`ProbeHead`."""

    def __init__(self, model, processor, target: str, oracle: bool = False):
        self.encoder: GeometryEncoder = model.input_assembly.encoders["geometry"]
        self.embeddings = model.backbone.get_input_embeddings().requires_grad_(False)
        self.tokenizer = processor.tokenizer
        width = self.embeddings.weight.shape[1]
        self.head = ProbeHead(target, self.encoder.num_appended, width, self.embeddings)
        self._tokens: dict[str, list[int]] = {}
        self.oracle_selection = oracle

    def parameters(self) -> list[nn.Parameter]:
        trained = [p for name, p in self.encoder.named_parameters() if not name.startswith("pi3.")]
        return trained + [p for name, p in self.head.named_parameters() if not name.startswith("embeddings.")]

    def tokens(self, text: str) -> list[int]:
        if text not in self._tokens:
            self._tokens[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._tokens[text]

    def padded(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, L)`` token ids of ``texts`` (0 after each end) and the ``(B, L)`` mask of the real ones."""
        ids = [self.tokens(text) for text in texts]
        length = max(map(len, ids))
        padded, mask = torch.zeros(len(ids), length, dtype=torch.long), torch.zeros(len(ids), length, dtype=torch.bool)
        for row, tokens in enumerate(ids):
            padded[row, : len(tokens)], mask[row, : len(tokens)] = torch.tensor(tokens), True
        return padded, mask

    def __call__(
        self,
        questions: list[ProbeQuestion],
        groups: torch.Tensor,
        codes: torch.Tensor | None,
        appearance: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's outputs and Q-Former 2's ``(B, queries, N)`` attention for ``questions`` read with the Pi3 groups
        ``(B, N, 8, C)`` (and, with ``appearance_keys``, the ``(B, N, D)`` video tokens of the questions' own
        videos)."""
        ids, mask = self.padded([question.prompt for question in questions])
        seconds = token_seconds(ids, mask, self.tokenizer) if self.encoder.question_times else None
        geometry = self.encoder.merge_groups(groups)  # (B, N, D)
        selection = oracle_selection(questions, geometry.shape[1]) if self.oracle_selection else None
        tokens, attention = self.encoder.select_batch(
            self.embeddings(ids), geometry, codes, mask, selection, appearance, seconds
        )
        options = None
        if self.head.target == "answer":
            option_ids, option_mask = self.padded([option for question in questions for option in question.options])
            options = (option_ids, option_mask.sum(1))
        return self.head(tokens, options), attention


def appearance(cache: dict, questions: list[ProbeQuestion]) -> torch.Tensor | None:
    """The ``(B, N, D)`` video tokens of the questions' own videos, when ``cache`` holds them (``appearance_keys``)."""
    if "appearance" not in cache:
        return None
    return torch.stack([cache["appearance"][question.video] for question in questions])


def even_object_reader(question: ProbeQuestion) -> float:
    """The share of the asked objects' tokens among every object's tokens at the question's frames: what a reader that
    finds the objects but not which one (all objects' tokens evenly) puts on the asked ones."""
    return len(question.cells) / (len(question.cells) + len(question.other_cells))


def evaluate(probe: GSMProbe, questions, cache, codes, batch_size: int) -> dict:
    """Per question type and overall: accuracy (answers, directions) or R^2 of the log value, and the attention on the
    asked objects' tokens, each with the question's own geometry and with another video's. The attention on the
    objects is also reported as the asked objects' share of it (``attention_on_asked_among_objects``: which object),
    beside what an even reader over every object's tokens would give (:func:`even_object_reader`), and the share on
    the tokens of the object the ``position`` target asks about (``attention_on_position_object``: the question's
    first target, without its other targets and its observer)."""
    donors = donor_indices([question.video for question in questions])
    results: dict[str, dict[str, list]] = {"own": defaultdict(list), "swapped": defaultdict(list)}
    probe.encoder.eval()
    with torch.no_grad():
        for start in range(0, len(questions), batch_size):
            batch = questions[start : start + batch_size]
            looks = appearance(cache, batch)  # the questions' own video tokens, with either geometry
            for name, videos in (
                ("own", [question.video for question in batch]),
                ("swapped", [questions[donors[start + k]].video for k in range(len(batch))]),
            ):
                groups = torch.stack([cache["groups"][video] for video in videos])
                outputs, attention = probe(batch, groups, codes, looks)
                for question, output, weights in zip(batch, outputs, attention):
                    scores, selected = results[name], weights.mean(0)  # (N,) the queries' mean attention
                    if question.cells:
                        asked = float(selected[question.cells].sum())
                        others = float(selected[question.other_cells].sum())
                        scores["attention_on_asked"].append(asked)
                        scores["attention_on_other_objects"].append(others)
                        scores["attention_on_asked_among_objects"].append(asked / max(asked + others, 1e-12))
                        scores["attention_on_asked_among_objects_even_reader"].append(even_object_reader(question))
                        on_target = float(selected[question.position_cells].sum())
                        scores["attention_on_position_object"].append(on_target)
                    per_slot = len(selected) // cache["grid"][0]
                    on_slots = selected.view(-1, per_slot)[question.slots].sum()
                    scores["attention_on_asked_frames"].append(float(on_slots))
                    if probe.head.target == "position":
                        for field, predicted, true in zip(POSITION_FIELDS, output.tolist(), question.position):
                            scores[field].append((predicted, true))
                    else:
                        scores[question.question_type].append(_score(probe.head.target, output, question))
    probe.encoder.train()
    return {name: _summary(scores) for name, scores in results.items()}


def _score(target: str, output: torch.Tensor, question: ProbeQuestion):
    if target == "answer":
        return float(int(output.argmax()) == question.answer)
    row = output[QUESTION_TYPES.index(question.question_type)]
    if isinstance(question.value, str):
        return float(DIRECTIONS[int(row[:-1].argmax())] == question.value)
    return (float(row[-1]), log_value(question))


def _summary(scores: dict[str, list]) -> dict[str, float]:
    summary, correct = {}, []
    for name, values in sorted(scores.items()):
        if values and isinstance(values[0], tuple):  # (predicted, true) log values or positions: R^2
            predicted, true = np.array(values).T
            summary[f"{name}_r2"] = round(float(1 - ((predicted - true) ** 2).mean() / max(true.var(), 1e-12)), 3)
        else:
            summary[name] = round(float(np.mean(values)), 3)
            correct += values if not name.startswith("attention_on_") else []
    if correct:
        summary["accuracy"] = round(float(np.mean(correct)), 3)
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "quickstart_dynamic.yaml")
    parser.add_argument("--data-root", type=Path, default=Path("data/synthetic_dynamic"))
    parser.add_argument("--out", type=Path, default=Path("work_dirs/gsm_probe"))
    parser.add_argument("--target", choices=TARGETS, default="answer")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--selection-weight", type=float, default=0.0, help="weight of the selection target (0: off)")
    parser.add_argument(
        "--oracle-selection",
        action="store_true",
        help="Q-Former 2's last layer reads the asked objects' tokens evenly instead of where it looks (in training "
        "and evaluation, own and another video's geometry alike): what the GSM passes on where it looks right",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--save",
        action="store_true",
        help="write the trained GSM to <out>/gsm.safetensors (model.encoders.geometry.gsm_checkpoint)",
    )
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    cfg = load_config(str(args.config), args.override)
    if not cfg.model.encoders.get("geometry"):
        raise ValueError(f"{args.config}: model.encoders.geometry is not set; the probe trains the GSM")
    model, processor = build_model(cfg, torch.float32)
    probe = GSMProbe(model, processor, args.target, args.oracle_selection)
    temporal = probe.encoder.visual_tokens.temporal_patch_size
    merge = probe.encoder.visual_tokens.spatial_merge_size
    generation = json.loads((args.data_root / "generation.json").read_text())
    data, caches = {}, {}
    for split in ("train", "eval"):
        folder = args.data_root / split / (f"{TRAINING_SUBSET}/videos" if split == "train" else "videos")
        videos = {path.stem: path for path in folder.glob("*.mp4")}
        caches[split] = pi3_cache(model, processor, videos, args.out / f"pi3_{split}.pt")
        data[split] = split_probe_questions(args.data_root, split, generation, caches[split], temporal, merge)
    if any(caches["eval"][key] != caches["train"][key] for key in ("grid", "seconds_per_slot")):
        raise ValueError("the training and evaluated videos have different grids or frame rates")
    grid, seconds = caches["train"]["grid"], caches["train"]["seconds_per_slot"]
    codes = probe.encoder.token_codes(grid, seconds) if probe.encoder.position_proj is not None else None
    parameters = probe.parameters()
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.03)
    writer = SummaryWriter(args.out / "tb")
    train = data["train"]
    for step in (bar := tqdm(range(args.steps), desc="GSM probe")):
        batch = rng.sample(train, min(args.batch_size, len(train)))  # a tiny split: all of it
        groups = torch.stack([caches["train"]["groups"][question.video] for question in batch])
        outputs, attention = probe(batch, groups, codes, appearance(caches["train"], batch))
        if args.target == "answer":
            task = F.cross_entropy(outputs, torch.tensor([question.answer for question in batch]))
        elif args.target == "position":
            task = F.mse_loss(outputs, torch.tensor([question.position for question in batch]))
        else:
            task = value_loss(outputs, batch)
        loss = task
        selection = selection_loss(attention, batch) if args.selection_weight else None
        if selection is not None:
            loss = loss + args.selection_weight * selection
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        writer.add_scalar("loss/task", task.item(), step)
        if selection is not None:
            writer.add_scalar("loss/selection", selection.item(), step)
        bar.set_postfix(task=f"{task.item():.3f}")
    writer.close()
    if args.save:
        save_file(probe.encoder.gsm_state_dict(), str(args.out / "gsm.safetensors"))
    results = evaluate(probe, data["eval"], caches["eval"], codes, args.batch_size)
    metrics = {"target": args.target, "steps": args.steps, "selection_weight": args.selection_weight}
    metrics.update(oracle_selection=args.oracle_selection, **results)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(_table(results))
    return metrics


def _table(results: dict) -> str:
    lines = ["| | own geometry | another video's geometry |", "|---|---:|---:|"]
    for name in results["own"]:
        lines.append(f"| {name} | {results['own'][name]:.3f} | {results['swapped'][name]:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
