"""Step (a): which videos show motion, and which of their moving things are agents, asked of an LLM from captions.

DSR Suite curates its videos from their captions with an LLM (DeepSeek-R1, ``deepseek_motion.py``: drop
videos of static scenes) and then asks it which objects are agents (``deepseek_agent.py``: humans and
animals, whose orientation is meaningful) and which are not. Here both questions go to any OpenAI-compatible
endpoint through :class:`evaluation.judge.JudgeClient` (cached on disk, retried, counted), one video per
prompt, and each video's answer is written to ``<output>/a_curation/<video id>.json``::

    {"video_id": ..., "caption": ..., "dynamic": true, "motion_reason": ...,
     "objects": [{"name": "the man in a red shirt", "agent": true}, ...]}

(``objects`` is empty for a static video). A video whose caption is missing, or whose answer is not the JSON
asked for (after the client's retries), is a failure named in the step's report and asked again next run.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from evaluation.judge import JudgeClient, Judgment, write_json_atomic
from utils.dynamic.pipeline.runner import StepReport, failure_path

STEP = "a_curation"

MOTION_PROMPT = (
    "You filter videos for a dataset about how objects move in 3D. From the video's caption, decide whether "
    "the video shows at least one clearly moving object or person (a dynamic scene), not only a static scene "
    "or camera motion over still things. Answer in JSON: "
    '{"dynamic": true or false, "reason": "<one sentence>"}.'
)
OBJECTS_PROMPT = (
    "From the video's caption, list the distinct moving (or clearly visible) objects and people a detector "
    "should find, each as a short noun phrase a detector understands (e.g. 'the man in a red shirt', 'the "
    "white car'), at most {max_objects}. Mark each as an agent (a person or animal, something with a front "
    "it faces) or not. Answer in JSON: "
    '{{"objects": [{{"name": "<noun phrase>", "agent": true or false}}]}}.'
)


def curation_path(output: Path, video_id: str) -> Path:
    return output / STEP / f"{video_id}.json"


def read_captions(path: str | Path) -> dict[str, str]:
    """``{video id: caption}`` from a JSON object, or a CSV with ``video_id`` and ``caption`` columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path}")
    if path.suffix.lower() == ".json":
        captions = json.loads(path.read_text())
        if not isinstance(captions, dict):
            raise ValueError(f"{path}: expected a JSON object {{video id: caption}}")
        return {str(key): str(value) for key, value in captions.items()}
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    if rows and not {"video_id", "caption"} <= set(rows[0]):
        raise ValueError(f"{path}: a captions CSV needs 'video_id' and 'caption' columns, got {sorted(rows[0])}")
    return {row["video_id"]: row["caption"] for row in rows}


def _messages(system: str, caption: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Caption: {caption}"}]


def _objects(judgment: Judgment, max_objects: int) -> list[dict]:
    """The ``[{"name", "agent"}]`` of an objects answer; ``ValueError`` on anything else."""
    objects = (judgment.parsed or {}).get("objects")
    if not isinstance(objects, list):
        raise ValueError(f"the objects answer has no 'objects' list: {judgment.text!r}")
    cleaned = []
    for entry in objects[:max_objects]:
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"].strip()):
            raise ValueError(f"an object without a name in the answer: {entry!r}")
        cleaned.append({"name": entry["name"].strip(), "agent": bool(entry.get("agent", False))})
    return cleaned


def _failure(judgment: Judgment, what: str) -> str | None:
    if judgment.status == "ok":
        return None
    return f"{what}: {judgment.status} ({judgment.detail or judgment.text!r})"


def curate(
    client: JudgeClient,
    output: Path,
    video_ids: Sequence[str],
    captions: Mapping[str, str],
    max_objects: int = 5,
) -> StepReport:
    """Step (a) for ``video_ids`` whose curation file is missing (see the module docstring)."""
    report = StepReport(STEP)
    pending = []
    for video_id in video_ids:
        if curation_path(output, video_id).exists():
            report.resumed += 1
        elif video_id not in captions:
            report.failed[video_id] = "no caption for this video"
        else:
            pending.append(video_id)
    motion, counts = client.judge_all(
        {video_id: _messages(MOTION_PROMPT, captions[video_id]) for video_id in pending}, desc="a: motion"
    )
    report.counts.update({f"motion_{key}": value for key, value in counts.as_dict().items()})
    dynamic = [video_id for video_id in pending if (motion[video_id].parsed or {}).get("dynamic") is True]
    prompt = OBJECTS_PROMPT.format(max_objects=max_objects)
    objects, counts = client.judge_all(
        {video_id: _messages(prompt, captions[video_id]) for video_id in dynamic}, desc="a: objects"
    )
    report.counts.update({f"objects_{key}": value for key, value in counts.as_dict().items()})
    for video_id in pending:
        error = _failure(motion[video_id], "motion answer")
        if error is None and not isinstance(motion[video_id].parsed.get("dynamic"), bool):
            error = f"motion answer without a true/false 'dynamic': {motion[video_id].text!r}"
        record = {"video_id": video_id, "caption": captions[video_id], "objects": []}
        if error is None and video_id in objects:
            error = _failure(objects[video_id], "objects answer")
            try:
                record["objects"] = _objects(objects[video_id], max_objects) if error is None else []
            except ValueError as problem:
                error = str(problem)
        if error is not None:
            report.failed[video_id] = error
            write_json_atomic(failure_path(output, STEP, video_id), {"video_id": video_id, "error": error})
            continue
        record |= {
            "dynamic": motion[video_id].parsed["dynamic"],
            "motion_reason": motion[video_id].parsed.get("reason"),
        }
        write_json_atomic(curation_path(output, video_id), record)
        failure_path(output, STEP, video_id).unlink(missing_ok=True)
        report.done += 1
        report.counts["dynamic" if record["dynamic"] else "static"] += 1
    report.counts = Counter({key: value for key, value in report.counts.items() if value})
    return report
