"""Annotations of synthetic rooms in the 3D benchmarks' layouts, computed from each room's ground truth.

Every text names objects the way the frames show them: by colour and class (``"the red chair"``, unique in a
room because objects of one class differ in colour, :mod:`utils.synthetic.rooms`) and by the nearest other
object (``"the chair next to the blue table"``, written only when the target is clearly the closest object of
its class to that neighbour). Answers follow from the layout alone:

* ScanRefer (:func:`scanrefer_items`): two descriptions per object, ``ann_id`` 0 by colour + class + neighbour,
  1 by class + neighbour where that identifies it (else colour + class + neighbour again).
* Multi3DRefer (:func:`multi3drefer_items`): ``st_w_d`` (the red chair, other chairs around), ``st_wo_d``
  (the only bed), ``mt`` (all the chairs), ``zt_w_d`` (a colour no object of a present class has) and
  ``zt_wo_d`` (a class the room lacks).
* Scan2Cap: ScanRefer's file (the descriptions are the captions).
* ScanQA (:func:`scanqa_items`): colour of an object named by its neighbour, what stands next to an object,
  how many objects of a class there are.
* SQA3D (:func:`sqa3d_items`): standing at one object facing another, whether a third is on the left or the
  right, which way to turn to face it, the colour of what one faces, and a count. Annotations hold the situation's
  ``position`` (the standing object's centre on the floor) and ``rotation`` (facing the other's centre), as SQA3D's
  do, and, beyond SQA3D's fields, the ``object_ids`` of the object a question is about (the counted ones for a count).

:func:`write_official` writes the files the benchmarks release (names and fields in the loader modules
:mod:`utils.data.scanrefer`, :mod:`utils.data.scan2cap`, :mod:`utils.data.scanqa`); :func:`write_llava` converts
them as Video-3D LLM's ``process_*.py`` do (user turns :data:`~utils.data.scene3d.LLAVA_TEMPLATES`, grounding
answer ``"<ground>"`` with the ground-truth ``"box"``), or with ``target="obj"`` as GPT4Scene-style answers
naming the best proposal per target as ``<OBJ###>`` (:func:`~utils.data.scene3d.grounding_answer`; an
assumption, its file is not public). :func:`generate_scene_benchmarks` writes rooms and every benchmark.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from utils.data.scan2cap import SCANREFER_FILE
from utils.data.scanqa import SCANQA_FILE, SQA3D_ANNOTATIONS_FILE, SQA3D_FORWARD_YAW, SQA3D_QUESTIONS_FILE
from utils.data.scanrefer import MULTI3DREFER_FILE
from utils.data.scene3d import (
    LAYOUTS,
    LLAVA_FILES,
    LLAVA_GROUND_TOKEN,
    LLAVA_TEMPLATES,
    LLAVA_VIDEO_PREFIX,
    MATCH_IOU,
    SCENE_ROOT,
    grounding_answer,
    match_proposals,
    question_type,
)
from utils.synthetic.rooms import CLASS_SIZES, COLOURS, Room, RoomConfig, generate_rooms

BENCHMARKS = ("scanrefer", "multi3drefer", "scan2cap", "scanqa", "sqa3d")
CLEAR_MARGIN = 0.3
"""Metres by which a relation must win (nearest neighbour, closest of a class) to be written."""
SIDE_MARGIN = 0.3
"""``|sin|`` of the angle off the facing direction below which left / right is not asked."""
SITUATIONS_PER_ROOM = 4
"""SQA3D situations per room (each standing at another object)."""
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")
CAPTION_INPUT_IOU = 0.5
"""Video-3D LLM gives Scan2Cap validation items the best proposal as ``box_input`` only from this IoU."""


# --- what the room says --------------------------------------------------------------------------------


def _distances(room: Room) -> np.ndarray:
    """``(M, M)`` floor-plane distances between object centres (inf on the diagonal)."""
    centres = room.boxes[:, :2]
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    return distances


def phrase(room: Room, k: int) -> str:
    """``"red chair"``: colour and class of object ``k`` (unique in its room)."""
    return f"{room.colours[k]} {room.labels[k]}"


def clear_neighbour(room: Room, k: int) -> int | None:
    """The object nearest to ``k`` if it is nearer than the second nearest by :data:`CLEAR_MARGIN`, else ``None``."""
    row = _distances(room)[k]
    first, second = np.argsort(row)[:2]
    return int(first) if row[second] - row[first] >= CLEAR_MARGIN else None


def named_by_neighbour(room: Room, k: int, anchor: int) -> bool:
    """Whether ``k`` is, by :data:`CLEAR_MARGIN`, the closest object of its class to ``anchor``."""
    row = _distances(room)[anchor]
    rivals = [j for j, label in enumerate(room.labels) if label == room.labels[k] and j not in (k, anchor)]
    return all(row[j] - row[k] >= CLEAR_MARGIN for j in rivals)


def descriptions(room: Room, k: int) -> list[str]:
    """ScanRefer-style descriptions of object ``k``, ``ann_id`` order (see the module docstring)."""
    anchor = int(np.argmin(_distances(room)[k]))
    near = f"the {phrase(room, anchor)}"
    first = f"this is a {phrase(room, k)}. it is next to {near}."
    if named_by_neighbour(room, k, anchor):
        return [first, f"the {room.labels[k]} next to {near}."]
    return [first, f"the {phrase(room, k)} close to {near}."]


def tokens(text: str) -> list[str]:
    """ScanRefer's ``token``: lower-case words and punctuation marks."""
    return re.findall(r"\w+|[^\w\s]", text.lower())


# --- official items ------------------------------------------------------------------------------------


def scanrefer_items(rooms: Sequence[Room]) -> list[dict]:
    """ScanRefer's items (also Scan2Cap's) for ``rooms``."""
    items = []
    for room in rooms:
        for k, object_id in enumerate(room.object_ids):
            for ann_id, text in enumerate(descriptions(room, k)):
                item = {"scene_id": room.scene_id, "object_id": str(object_id), "object_name": room.labels[k]}
                items.append({**item, "ann_id": str(ann_id), "description": text, "token": tokens(text)})
    return items


def multi3drefer_items(rooms: Sequence[Room]) -> list[dict]:
    """Multi3DRefer's items for ``rooms``: every eval type a room allows."""
    items = []
    for room in rooms:
        found: list[tuple[str, list[int], str, str]] = []  # (description, positions, eval type, class)
        for k, label in enumerate(room.labels):
            if room.is_unique(k):
                found.append((f"the {label}.", [k], "st_wo_d", label))
            else:
                found.append((f"the {phrase(room, k)}.", [k], "st_w_d", label))
        for label in sorted(set(room.labels)):
            members = [k for k, name in enumerate(room.labels) if name == label]
            if len(members) > 1:
                found.append((f"all the {label}s.", members, "mt", label))
            unused = [colour for colour in COLOURS if colour not in {room.colours[k] for k in members}]
            found.append((f"the {unused[0]} {label}.", [], "zt_w_d", label))
        absent = [label for label in CLASS_SIZES if label not in room.labels]
        if absent:
            found.append((f"the {absent[0]} in the room.", [], "zt_wo_d", absent[0]))
        for ann_id, (text, members, eval_type, label) in enumerate(found):
            ids = [int(room.object_ids[k]) for k in members]
            item = {"scene_id": room.scene_id, "object_name": label, "ann_id": ann_id, "description": text}
            items.append({**item, "object_ids": ids, "eval_type": eval_type})
    return items


def scanqa_items(rooms: Sequence[Room], split: str) -> list[dict]:
    """ScanQA's items for ``rooms`` (``question_id`` ``<split>-<scene_id>-<n>``)."""
    items = []
    for room in rooms:
        questions: list[tuple[str, list[str], list[int]]] = []
        for k in range(len(room.labels)):
            anchor = int(np.argmin(_distances(room)[k]))
            if named_by_neighbour(room, k, anchor):
                text = f"What colour is the {room.labels[k]} next to the {phrase(room, anchor)}?"
                questions.append((text, [room.colours[k]], [k]))
            neighbour = clear_neighbour(room, k)
            if neighbour is not None:
                answers = [phrase(room, neighbour), room.labels[neighbour]]
                questions.append((f"What is next to the {phrase(room, k)}?", answers, [neighbour]))
        for label in sorted(set(room.labels)):
            members = [k for k, name in enumerate(room.labels) if name == label]
            questions.append((f"How many {label}s are in the room?", [NUMBERS[len(members)]], members))
        for n, (text, answers, members) in enumerate(questions):
            item = {"scene_id": room.scene_id, "question_id": f"{split}-{room.scene_id}-{n}", "question": text}
            ids, names = [int(room.object_ids[k]) for k in members], [room.labels[k] for k in members]
            items.append({**item, "answers": answers, "object_ids": ids, "object_names": names})
    return items


def sqa3d_items(rooms: Sequence[Room]) -> tuple[list[dict], list[dict]]:
    """SQA3D's ``(questions, annotations)`` for ``rooms``: per room :data:`SITUATIONS_PER_ROOM` situations (as SQA3D
    has many per scan), standing at each of its first objects, facing that object's nearest."""
    questions, annotations = [], []
    situations = [(room, here) for room in rooms for here in range(min(SITUATIONS_PER_ROOM, len(room.labels)))]
    for room, here in situations:
        facing = int(np.argmin(_distances(room)[here]))
        position = room.boxes[here, :2]
        forward = room.boxes[facing, :2] - position
        forward /= np.linalg.norm(forward)
        situation = f"I am standing next to the {phrase(room, here)}, facing the {phrase(room, facing)}."
        asked = [(f"What colour is the {room.labels[facing]} I am facing?", room.colours[facing], [facing])]
        for k in range(len(room.labels)):
            offset = room.boxes[k, :2] - position
            offset /= np.linalg.norm(offset) if k != here else 1.0
            side = forward[0] * offset[1] - forward[1] * offset[0] if k not in (here, facing) else 0.0
            if abs(side) >= SIDE_MARGIN:
                answer = "left" if side > 0 else "right"
                asked.append((f"Is the {phrase(room, k)} on my left or my right?", answer, [k]))
                asked.append((f"Which way should I turn to face the {phrase(room, k)}?", answer, [k]))
        label = room.labels[here]
        members = [k for k, name in enumerate(room.labels) if name == label]
        asked.append((f"How many {label}s are in the room?", NUMBERS[len(members)], members))
        heading = float(np.arctan2(forward[1], forward[0])) - SQA3D_FORWARD_YAW
        pose = {
            "position": {"x": float(position[0]), "y": float(position[1]), "z": 0.0},
            "rotation": {"_x": 0.0, "_y": 0.0, "_z": float(np.sin(heading / 2)), "_w": float(np.cos(heading / 2))},
        }
        for question, answer, about in asked:
            question_id = len(questions)
            questions.append(
                {
                    "question_id": question_id,
                    "scene_id": room.scene_id,
                    "situation": situation,
                    "alternative_situation": [],
                    "question": question,
                }
            )
            answers = [{"answer": answer, "answer_id": 1}]
            ids = [int(room.object_ids[k]) for k in about]
            annotation = {"question_id": question_id, "scene_id": room.scene_id, "answers": answers, **pose}
            annotations.append({**annotation, "object_ids": ids})
    return questions, annotations


# --- files ---------------------------------------------------------------------------------------------


def _write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_official(root: str | Path, benchmark: str, split: str, rooms: Sequence[Room]) -> list[Path]:
    """Write ``benchmark``'s released file(s) for ``split`` under ``root``; returns them."""
    root = Path(root)
    if benchmark in ("scanrefer", "scan2cap"):
        return [_write_json(root / SCANREFER_FILE.format(split=split), scanrefer_items(rooms))]
    if benchmark == "multi3drefer":
        return [_write_json(root / MULTI3DREFER_FILE.format(split=split), multi3drefer_items(rooms))]
    if benchmark == "scanqa":
        return [_write_json(root / SCANQA_FILE.format(split=split), scanqa_items(rooms, split))]
    if benchmark == "sqa3d":
        questions, annotations = sqa3d_items(rooms)
        return [
            _write_json(root / SQA3D_QUESTIONS_FILE.format(split=split), {"questions": questions}),
            _write_json(root / SQA3D_ANNOTATIONS_FILE.format(split=split), {"annotations": annotations}),
        ]
    raise ValueError(f"unknown benchmark {benchmark!r}; known: {BENCHMARKS}")


def _position(room: Room, object_id: object) -> int:
    """The position in ``room`` of ground-truth ``object_id``."""
    return int(np.flatnonzero(room.object_ids == int(object_id))[0])


def _boxes(room: Room, object_ids: Sequence[object]) -> np.ndarray:
    """``(K, 6)`` ground-truth boxes of ``object_ids``."""
    return room.boxes[[_position(room, i) for i in object_ids]].reshape(-1, 6)


def _item(index: int | str, scene_id: str, benchmark: str, text: str, answer: str, metadata: dict) -> dict:
    """A Video-3D LLM item: ``id``, ``video``, one human and one gpt turn, ``metadata``."""
    separator = "" if benchmark in ("scanrefer", "multi3drefer") else " "  # as its scripts write the media tag
    human = f"<image>{separator}" + LLAVA_TEMPLATES[benchmark][0].replace("{text}", text)
    conversations = [{"value": human, "from": "human"}, {"value": answer, "from": "gpt"}]
    return {"id": index, "video": LLAVA_VIDEO_PREFIX + scene_id, "conversations": conversations, "metadata": metadata}


def _llava_grounding(benchmark: str, rooms: Sequence[Room], target: str) -> list[dict]:
    """ScanRefer / Multi3DRefer: answer ``"<ground>"`` and ``"box"``, or ``<OBJ###>`` answers (``target="obj"``)."""
    by_scene = {room.scene_id: room for room in rooms}
    single = benchmark == "scanrefer"
    items = []
    for i, official in enumerate(scanrefer_items(rooms) if single else multi3drefer_items(rooms)):
        room = by_scene[official["scene_id"]]
        ids = [official["object_id"]] if single else official["object_ids"]
        gt = _boxes(room, ids)
        if target == "box":
            answer = LLAVA_GROUND_TOKEN
        else:
            matched, _ = match_proposals(gt, room.proposals.boxes, MATCH_IOU)
            answer = grounding_answer(matched[matched >= 0])
        kind = official.get("eval_type") or ("unique" if room.is_unique(_position(room, ids[0])) else "multiple")
        metadata = {"dataset": benchmark, "question_type": kind, "ann_id": official["ann_id"]}
        metadata["object_id"] = official["object_id"] if single else official["object_ids"]
        item = _item(i, room.scene_id, benchmark, official["description"].capitalize(), answer, metadata)
        if target == "box":
            item["box"] = gt[0].tolist() if single else gt.tolist()
        items.append(item)
    return items


def _llava_scan2cap(split: str, rooms: Sequence[Room]) -> list[dict]:
    """Scan2Cap: one item per description (train) or per object with every reference (other splits)."""
    by_scene = {room.scene_id: room for room in rooms}
    official = scanrefer_items(rooms)
    references: dict[tuple[str, str], list[str]] = {}
    for item in official:
        references.setdefault((item["scene_id"], item["object_id"]), []).append(item["description"])
    items, seen = [], set()
    for i, item in enumerate(official):
        key = (item["scene_id"], item["object_id"])
        if split != "train" and key in seen:
            continue
        seen.add(key)
        room = by_scene[item["scene_id"]]
        gt = _boxes(room, [item["object_id"]])
        matched, _ = match_proposals(gt, room.proposals.boxes, CAPTION_INPUT_IOU)
        box_input = gt[0] if split == "train" else room.proposals.boxes[matched[0]] if matched[0] >= 0 else None
        kind = "unique" if room.is_unique(_position(room, item["object_id"])) else "multiple"
        metadata = {
            "dataset": "scan2cap",
            "question_type": kind,
            "ann_id": item["ann_id"],
            "object_id": item["object_id"],
        }
        new = _item(i, room.scene_id, "scan2cap", "", item["description"].capitalize(), metadata)
        new["box_input"] = None if box_input is None else [float(v) for v in box_input]
        new["gt_box"] = gt[0].tolist()
        if split != "train":
            new["annotations"] = references[key]
        items.append(new)
    return items


def _llava_scanqa(split: str, rooms: Sequence[Room]) -> list[dict]:
    """ScanQA: one item per answer."""
    metadata = {"dataset": "scanQA", "question_type": "unknow"}  # sic, as Video-3D LLM writes it
    return [
        _item(f"scanqa_{item['question_id']}_{n}", item["scene_id"], "scanqa", item["question"], answer, metadata)
        for item in scanqa_items(rooms, split)
        for n, answer in enumerate(item["answers"])
    ]


def _llava_sqa3d(rooms: Sequence[Room]) -> list[dict]:
    """SQA3D: one item per question, situation and question in one turn."""
    questions, annotations = sqa3d_items(rooms)
    return [
        _item(
            question["question_id"],
            question["scene_id"],
            "sqa3d",
            f"{question['situation']} {question['question']}",
            annotation["answers"][0]["answer"],
            {"dataset": "sqa3d", "question_type": question_type(question["question"])},
        )
        for question, annotation in zip(questions, annotations)
    ]


def write_llava(root: str | Path, benchmark: str, split: str, rooms: Sequence[Room], target: str = "box") -> Path:
    """Write ``benchmark``'s LLaVA-style file for ``split`` under ``root`` (:data:`~utils.data.scene3d.LLAVA_FILES`);
    ``target``: ``"box"`` (Video-3D LLM) or ``"obj"`` (``<OBJ###>`` answers) for the grounding benchmarks."""
    if target not in ("box", "obj"):
        raise ValueError(f"target must be 'box' or 'obj', got {target!r}")
    if benchmark not in LLAVA_FILES:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {BENCHMARKS}")
    if benchmark in ("scanrefer", "multi3drefer"):
        items = _llava_grounding(benchmark, rooms, target)
    elif benchmark == "scan2cap":
        items = _llava_scan2cap(split, rooms)
    else:
        items = _llava_scanqa(split, rooms) if benchmark == "scanqa" else _llava_sqa3d(rooms)
    return _write_json(Path(root) / LLAVA_FILES[benchmark].format(split=split), items)


def generate_scene_benchmarks(
    root: str | Path,
    split: str,
    count: int,
    seed: int = 0,
    layout: str = "official",
    config: RoomConfig | None = None,
) -> list[Room]:
    """Rooms ``0 .. count - 1`` of ``split`` as scene folders in ``<root>/scenes/`` and every benchmark's files in
    ``layout`` under ``root`` (what the loaders of :data:`BENCHMARKS` read); returns the rooms."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    rooms = generate_rooms(Path(root) / SCENE_ROOT, split, count, seed, config)
    for benchmark in BENCHMARKS:
        if layout == "official":
            write_official(root, benchmark, split, rooms)
        else:
            write_llava(root, benchmark, split, rooms)
    return rooms
