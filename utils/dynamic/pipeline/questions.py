"""Steps (c) and (d): multiple-choice questions about a video's 3D trajectories, from templates and from an LLM.

(c) **templates** (:func:`template_questions`): the twelve DSR templates of
:mod:`utils.dynamic.qa_templates` on the tracks of step (b), ``questions_per_type`` per type, each video drawing
from its own generator (``seed`` and the video id), the ill-posed ones counted by ``"<type>:<reason>"``.

(d) **free-form** (:func:`free_form_prompt`, :func:`parse_free_form`): as DSR Suite's ``qa_nontemp.py`` asks
DeepSeek-R1 with the objects' 3D trajectories, the trajectories over the shown frames go to an OpenAI-compatible
endpoint (:class:`evaluation.judge.JudgeClient`): positions sampled over time in the first frame's camera view
(metres to the front, right and up of the camera), an agent's facing as degrees clockwise from the camera's
front. It answers ``{"questions": [{"question", "options": [4 texts], "answer": "A".."D"}]}``; malformed
questions are counted (``invalid``) and dropped.

Both steps write ``<output>/<step>/<video id>.json``: ``{"video_id", "questions": [records], "skipped":
{reason: count}}`` (:func:`question_record` and :func:`question_from_record` convert a
:class:`~utils.dynamic.qa_templates.Question`; free-form questions have ``question_type``
:data:`FREE_FORM_TYPE` and their answer's text as ``value``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from utils.dynamic.qa_templates import (
    LETTERS,
    QUESTION_TYPES,
    DynamicScene,
    Query,
    Question,
    generate_questions,
    observer_frames,
)

TEMPLATE_STEP = "c_templates"
FREE_FORM_STEP = "d_free_form"
FREE_FORM_TYPE = "non_temp"
"""DSR-Bench's task name of free-form (non-template) questions."""

FREE_FORM_PROMPT = (
    "You write multiple-choice questions about how objects move in a video, for training a vision-language "
    "model on dynamic spatial reasoning. You are given each object's 3D trajectory, measured in the view of "
    "the camera's first frame: 'front', 'right' and 'up' are metres from the camera along its first viewing "
    "direction, to its right and upwards; an agent's 'facing' is degrees clockwise (seen from above) from that "
    "front. Write {count} questions that need the motion over time to answer (relative positions, distances, "
    "directions, speeds, approaching or moving apart, what happens next), whose answer follows from the "
    "numbers, with four options of which exactly one is correct. Name objects as given. Answer in JSON: "
    '{{"questions": [{{"question": "...", "options": ["...", "...", "...", "..."], "answer": "A"}}]}}.'
)


def question_path(output: Path, step: str, video_id: str) -> Path:
    return output / step / f"{video_id}.json"


def video_rng(seed: int, video_id: str) -> np.random.Generator:
    """A generator of its own for each ``(seed, video id)``."""
    digest = int.from_bytes(hashlib.sha256(video_id.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest])


def question_record(question: Question) -> dict:
    """A JSON-ready dict of ``question`` (with its query)."""
    query = question.query
    return {
        "question_type": question.question_type,
        "question": question.question,
        "options": list(question.options),
        "answer": question.answer,
        "value": question.value,
        "query": {
            "question_type": query.question_type,
            "targets": list(query.targets),
            "frames": list(query.frames),
            "observer": query.observer,
            "reference": query.reference,
        },
    }


def question_from_record(record: dict) -> Question:
    """The :class:`Question` of a :func:`question_record`."""
    query = record["query"]
    return Question(
        record["question_type"],
        record["question"],
        tuple(record["options"]),
        record["answer"],
        record["value"],
        Query(
            query["question_type"],
            tuple(query["targets"]),
            tuple(query["frames"]),
            query["observer"],
            query["reference"],
        ),
    )


def template_questions(
    scene: DynamicScene,
    seed: int,
    video_id: str,
    questions_per_type: int = 1,
    question_types: Sequence[str] = QUESTION_TYPES,
) -> tuple[list[Question], Counter]:
    """Template questions of ``scene`` and the skipped ones by ``"<type>:<reason>"`` (``"no_objects"`` for a scene
    without tracks)."""
    if not scene.tracks:
        return [], Counter({"no_objects": 1})
    return generate_questions(
        scene, video_rng(seed, video_id), questions_per_type, question_types=tuple(question_types)
    )


def trajectory_summary(scene: DynamicScene, samples: int = 8) -> str:
    """The objects' trajectories over the shown frames at up to ``samples`` times as text, in the first frame's
    camera view."""
    frames = np.unique(np.linspace(0, scene.num_video_frames - 1, samples).round().astype(int))
    origin, axes = observer_frames(scene, None, [0])
    lines = [f"The video is shown from {scene.timestamps[0]:.1f} s to {scene.timestamps[frames[-1]]:.1f} s."]
    for track in scene.tracks:
        local = (track.positions[frames] - origin[0]) @ axes[0].T  # (K, 3) front, right, up
        steps = [
            f"t={scene.timestamps[t]:.1f}s: front {p[0]:.2f}, right {p[1]:.2f}, up {p[2]:.2f}"
            for t, p in zip(frames, local)
        ]
        if track.is_agent:
            heading = track.forward[frames] @ axes[0].T  # (K, 3)
            facing = np.degrees(np.arctan2(heading[:, 1], heading[:, 0]))
            steps = [f"{step}, facing {angle:.0f} deg" for step, angle in zip(steps, facing)]
        kind = "agent" if track.is_agent else "object"
        lines.append(f"{track.name} ({kind}): " + "; ".join(steps))
    return "\n".join(lines)


def free_form_prompt(scene: DynamicScene, count: int) -> list[dict[str, str]]:
    """The chat messages asking for ``count`` free-form questions about ``scene``."""
    return [
        {"role": "system", "content": FREE_FORM_PROMPT.format(count=count)},
        {"role": "user", "content": trajectory_summary(scene)},
    ]


def parse_free_form(parsed: dict, count: int) -> tuple[list[Question], Counter]:
    """The well-formed questions (at most ``count``) of an LLM answer and the count of ``invalid`` ones."""
    questions, skipped = [], Counter()
    entries = parsed.get("questions")
    for entry in entries if isinstance(entries, list) else [entries]:
        options = entry.get("options") if isinstance(entry, dict) else None
        answer = str(entry.get("answer", "")).strip().strip(".()").upper() if isinstance(entry, dict) else ""
        valid = (
            isinstance(entry, dict)
            and isinstance(entry.get("question"), str)
            and entry["question"].strip()
            and isinstance(options, list)
            and len(options) == 4
            and all(isinstance(option, str) and option.strip() for option in options)
            and len({option.strip() for option in options}) == 4
            and answer in LETTERS
        )
        if not valid or len(questions) == count:
            skipped["invalid" if not valid else "extra"] += 1
            continue
        texts = tuple(option.strip() for option in options)
        questions.append(
            Question(
                FREE_FORM_TYPE,
                entry["question"].strip(),
                texts,
                answer,
                texts[LETTERS.index(answer)],
                Query(FREE_FORM_TYPE, (), ()),
            )
        )
    return questions, skipped


def questions_file(video_id: str, questions: list[Question], skipped: Counter) -> dict:
    return {
        "video_id": video_id,
        "questions": [question_record(question) for question in questions],
        "skipped": dict(sorted(skipped.items())),
    }


def read_questions(path: Path) -> list[Question]:
    """The questions of a step (c) or (d) file."""
    return [question_from_record(record) for record in json.loads(Path(path).read_text())["questions"]]
