"""Twelve multiple-choice question templates about moving objects, computed from their 3D trajectories.

The question types follow DSR Suite ("Learning to Reason in 4D"; the task names of DSR-Bench): distance,
direction, orientation, speed, speed comparison and direction prediction, each asked from an absolute and
from a relative viewpoint (:data:`QUESTION_TYPES`, ``abs_*`` / ``rel_*``). As in DSR Suite's question
generation, a question is asked from the perspective of an observer, the camera or an agent (an object with a
facing direction):

* **absolute** (``abs_*``, "From the perspective of X at 1.5 s"): the observer's pose at one reference frame,
  frozen, is the frame of reference for the whole question;
* **relative** (``rel_*``, "Following the perspective of X"): the frame of reference moves and turns with the
  observer, frame by frame.

The observer's frame is upright (:func:`observer_frames`): its origin is the camera centre or the agent's
centre, "front" is the horizontal part of the camera's viewing direction or the agent's facing, "right" is
90 degrees clockwise from it seen from above, and z is up. In it, per type:

* ``*_dis``: how far the object's centre is from the observer's origin at a frame (metres);
* ``*_dir``: the direction the object moves between two frames (its displacement);
* ``*_ori``: the direction an agent faces at a frame;
* ``*_spd``: the object's mean speed between two frames (path length / duration; the same in every frozen
  frame, so ``abs_spd`` is the speed over the ground, while ``rel_spd`` includes the observer's own motion and
  turning);
* ``*_spd_comp``: the ratio of two objects' mean speeds, answered as one of four bins (:data:`RATIO_BINS`:
  more than twice, faster, slower, less than half), the ratio clipped to ``[1 / MAX_RATIO, MAX_RATIO]``;
* ``*_dir_pred``: the direction the object moves right after the video ends (the scene's trajectories continue
  past its last shown frame), from its last shown frame to the trajectory's end.

Directions are one of eight 45-degree sectors (:data:`DIRECTIONS`). A question whose answer lies within
:data:`DIRECTION_MARGIN` degrees of a sector border or within :data:`RATIO_MARGIN` of a ratio bin's edge, or
about an object that barely moves (:data:`MIN_SPEED`, :data:`MIN_DISPLACEMENT`) is ill-posed:
:func:`make_question` raises :class:`IllPosed` with a reason, which :func:`generate_questions` counts.

Options: three distractors. Numbers sit on a geometric ladder around the true value (the true value's rank
drawn uniformly, ratio 1.3 to 1.6 between neighbours, so options differ by at least ~25%); directions are
three other sectors, neighbours and the opposite sector drawn more often; ratio bins are all four bins.
Options are shuffled (numbers are sorted ascending, the true rank being random), so answer letters are
uniform. Everything is a function of the scene and the ``numpy`` generator passed in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

QUESTION_TYPES = (
    "abs_dis",
    "abs_dir",
    "abs_ori",
    "abs_spd",
    "abs_spd_comp",
    "abs_dir_pred",
    "rel_dis",
    "rel_dir",
    "rel_ori",
    "rel_spd",
    "rel_spd_comp",
    "rel_dir_pred",
)
"""DSR-Bench's template task names (its ``non_temp`` free-form questions are not templated)."""

DIRECTIONS = ("front", "front-right", "right", "back-right", "back", "back-left", "left", "front-left")
"""Sector ``k`` is centred ``45 k`` degrees clockwise (seen from above) from the reference's front."""

RATIO_BINS = ((2.0, np.inf), (1.0, 2.0), (0.5, 1.0), (0.0, 0.5))
"""Speed ratio ``A / B`` bins of the speed comparison questions, ``[low, high)``."""

LETTERS = "ABCD"
DIRECTION_MARGIN = 7.5
"""Degrees: a direction closer than this to a sector border is ambiguous."""
RATIO_MARGIN = 0.12
"""A speed ratio within this relative distance of a bin edge is ambiguous."""
MIN_SPEED = 0.1
"""Metres per second: slower mean speeds (absolute or relative) are "barely moving"."""
MIN_DISPLACEMENT = 0.2
"""Metres: a shorter displacement after the video gives no direction to predict."""
MAX_RATIO = 100.0
"""Speed ratios are clipped to ``[1 / MAX_RATIO, MAX_RATIO]`` (a still object's ratio is 0 or infinite)."""
MIN_INTERVAL_FRAMES = 4
"""Speed questions span at least this many frame steps."""
LADDER_RATIOS = (1.3, 1.6)
"""Range of the ratio between neighbouring numeric options."""


class IllPosed(ValueError):
    """A question that has no unambiguous answer; ``reason`` says why (counted by :func:`generate_questions`)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def forward_from_yaw(yaw: np.ndarray) -> np.ndarray:
    """``(T, 3)`` horizontal unit facing vectors of ``(T,)`` yaw angles (radians, counter-clockwise from +x)."""
    yaw = np.asarray(yaw, dtype=np.float64)
    return np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], axis=-1)


@dataclass(frozen=True)
class Track:
    """One object: ``name`` (how questions call it, e.g. "the red ball"), ``positions`` ``(T, 3)`` world
    centres in metres (z up), ``forward`` ``(T, 3)`` facing vectors for an agent or ``None`` (orientation
    questions are asked about agents only; :func:`forward_from_yaw` converts yaw angles)."""

    name: str
    positions: np.ndarray
    forward: np.ndarray | None = None

    @property
    def is_agent(self) -> bool:
        """Whether the object has a facing direction (can be asked about its orientation, or be an observer)."""
        return self.forward is not None


@dataclass(frozen=True)
class DynamicScene:
    """Objects moving in front of a moving camera.

    Attributes:
        tracks: the objects (at least two).
        camera_poses: ``(T, 4, 4)`` camera-to-world, OpenCV axes (x right, y down, z forward).
        timestamps: ``(T,)`` seconds, increasing.
        num_video_frames: frames ``0 .. num_video_frames - 1`` are shown; later frames only say where the
            objects go after the video (direction prediction). Default: all ``T``.
    """

    tracks: list[Track]
    camera_poses: np.ndarray
    timestamps: np.ndarray
    num_video_frames: int | None = None

    def __post_init__(self) -> None:
        count = len(self.timestamps)
        if self.camera_poses.shape != (count, 4, 4):
            raise ValueError(f"camera_poses must be ({count}, 4, 4) like timestamps, got {self.camera_poses.shape}")
        if not np.all(np.diff(self.timestamps) > 0):
            raise ValueError("timestamps must increase")
        for track in self.tracks:
            shapes = [track.positions.shape] + ([track.forward.shape] if track.forward is not None else [])
            if any(shape != (count, 3) for shape in shapes):
                raise ValueError(f"{track.name}: positions and forward must be ({count}, 3), got {shapes}")
        if self.num_video_frames is None:
            object.__setattr__(self, "num_video_frames", count)
        if not MIN_INTERVAL_FRAMES < self.num_video_frames <= count:
            raise ValueError(
                f"num_video_frames must be in [{MIN_INTERVAL_FRAMES + 1}, {count}], got {self.num_video_frames}"
            )


@dataclass(frozen=True)
class Query:
    """What a question asks about: ``targets`` (object indices), ``frames`` (one frame, or the two ends of an
    interval), ``observer`` (object index of an agent, or ``None`` for the camera) and ``reference`` (the frame
    whose observer pose is frozen for ``abs_*`` types; ``None`` for ``rel_*``, whose frame follows the
    observer)."""

    question_type: str
    targets: tuple[int, ...]
    frames: tuple[int, ...]
    observer: int | None = None
    reference: int | None = None

    def pose_frames(self) -> list[int]:
        """The frames whose observer pose the question uses."""
        if self.reference is not None:
            return [self.reference]
        return list(range(self.frames[0], self.frames[-1] + 1)) if len(self.frames) > 1 else list(self.frames)


@dataclass(frozen=True)
class Question:
    """A multiple-choice question: ``options`` four texts (without letters), ``answer`` the letter of the
    correct one, ``value`` the exact ground truth it was computed from (metres, metres per second or a speed
    ratio as a float; a :data:`DIRECTIONS` label as a string)."""

    question_type: str
    question: str
    options: tuple[str, str, str, str]
    answer: str
    value: float | str
    query: Query = field(repr=False)

    def lettered_options(self) -> list[str]:
        """``["A. text", "B. text", ...]``."""
        return [f"{letter}. {text}" for letter, text in zip(LETTERS, self.options)]

    @property
    def answer_text(self) -> str:
        return self.options[LETTERS.index(self.answer)]


# --- measurements --------------------------------------------------------------------------------------


def observer_frames(scene: DynamicScene, observer: int | None, frames: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(origins (K, 3), axes (K, 3, 3))`` of the camera (``None``) or agent ``observer`` at ``frames`` ``(K,)``:
    ``axes`` rows are the upright frame's front, right and up in world coordinates (see the module docstring)."""
    if observer is None:
        origins, fronts = scene.camera_poses[frames, :3, 3], scene.camera_poses[frames, :2, 2]
    else:
        track = scene.tracks[observer]
        origins, fronts = track.positions[frames], track.forward[frames, :2]
    lengths = np.linalg.norm(fronts, axis=1)
    if not np.all(lengths > 1e-6):
        raise IllPosed("no_facing", f"the observer has no horizontal front at some of frames {frames}")
    front_x, front_y = fronts[:, 0] / lengths, fronts[:, 1] / lengths
    zeros, ones = np.zeros_like(front_x), np.ones_like(front_x)
    axes = np.stack(
        [
            np.stack([front_x, front_y, zeros], 1),
            np.stack([front_y, -front_x, zeros], 1),
            np.stack([zeros, zeros, ones], 1),
        ],
        axis=1,
    )
    return origins, axes


def observer_coordinates(scene: DynamicScene, query: Query, points: np.ndarray, frames: list[int]) -> np.ndarray:
    """``(K, 3)`` world ``points`` at ``frames`` ``(K,)`` in the query's observer frame (front, right, up): the
    frozen pose at ``query.reference`` (absolute) or the pose at each point's own frame (relative)."""
    pose_frames = [query.reference] * len(frames) if query.reference is not None else list(frames)
    origins, axes = observer_frames(scene, query.observer, pose_frames)
    return np.einsum("kij,kj->ki", axes, points - origins)


def direction_label(vector: np.ndarray, min_length: float = 0.0, reason: str = "too_close") -> str:
    """The :data:`DIRECTIONS` sector of the horizontal part of ``vector`` ``(front, right, up)``.

    Raises :class:`IllPosed` (``reason``) when the horizontal part is shorter than ``min_length`` and
    ("ambiguous_direction") when it lies within :data:`DIRECTION_MARGIN` degrees of a sector border.
    """
    front, right = float(vector[0]), float(vector[1])
    if not np.hypot(front, right) >= max(min_length, 1e-9):
        raise IllPosed(reason, f"horizontal length {np.hypot(front, right):.3f} m")
    degrees = np.degrees(np.arctan2(right, front))
    sector = int(np.round(degrees / 45.0))
    if abs(degrees - 45.0 * sector) > 22.5 - DIRECTION_MARGIN:
        raise IllPosed("ambiguous_direction", f"{degrees:.1f} degrees is near a sector border")
    return DIRECTIONS[sector % 8]


def ratio_bin(ratio: float) -> int:
    """Index of the :data:`RATIO_BINS` bin holding ``ratio``; :class:`IllPosed` near an edge."""
    for edge in (0.5, 1.0, 2.0):
        if abs(np.log(ratio / edge)) < np.log1p(RATIO_MARGIN):
            raise IllPosed("ambiguous_ratio", f"speed ratio {ratio:.3f} is near {edge}")
    return next(k for k, (low, high) in enumerate(RATIO_BINS) if low <= ratio < high)


def _mean_speed(scene: DynamicScene, query: Query, target: int) -> float:
    """Mean speed of ``target`` over the query's interval in its observer frame (path length / duration)."""
    start, end = query.frames
    frames = list(range(start, end + 1))
    path = observer_coordinates(scene, query, scene.tracks[target].positions[start : end + 1], frames)
    return float(
        np.linalg.norm(np.diff(path, axis=0), axis=1).sum() / (scene.timestamps[end] - scene.timestamps[start])
    )


def measure(scene: DynamicScene, query: Query) -> float | str:
    """The ground truth of ``query`` (see the module docstring); :class:`IllPosed` where it has none."""
    kind, frames = query.question_type, list(query.frames)
    if kind not in QUESTION_TYPES:
        raise ValueError(f"unknown question type {kind!r}; expected one of {QUESTION_TYPES}")
    if (query.reference is not None) != kind.startswith("abs_"):
        raise ValueError(f"{kind}: an absolute question needs a reference frame, a relative one none; got {query}")
    track = scene.tracks[query.targets[0]]
    quantity = kind.split("_", 1)[1]
    if quantity == "dis":
        return float(np.linalg.norm(observer_coordinates(scene, query, track.positions[frames], frames)[0]))
    if quantity in ("dir", "dir_pred"):
        ends = observer_coordinates(scene, query, track.positions[frames], frames)
        return direction_label(ends[1] - ends[0], MIN_DISPLACEMENT, "barely_moves")
    if quantity == "ori":
        (frame,) = frames
        _, axes = observer_frames(scene, query.observer, [frame if query.reference is None else query.reference])
        return direction_label(axes[0] @ track.forward[frame], min_length=0.1, reason="no_facing")
    speeds = [_mean_speed(scene, query, target) for target in query.targets]
    if max(speeds) < MIN_SPEED:
        raise IllPosed("barely_moves", f"mean speed below {MIN_SPEED} m/s")
    if quantity == "spd":
        return speeds[0]
    ratio = float(np.clip(speeds[0] / max(speeds[1], 1e-9), 1 / MAX_RATIO, MAX_RATIO))
    ratio_bin(ratio)
    return ratio


# --- sampling what to ask ------------------------------------------------------------------------------


def sample_query(scene: DynamicScene, question_type: str, rng: np.random.Generator) -> Query:
    """Random objects, frames, observer and (absolute types) reference frame for one ``question_type``;
    :class:`IllPosed` when the scene has no fitting objects ("no_agent", "too_few_objects") or no frames after
    the video ("no_future")."""
    if question_type not in QUESTION_TYPES:
        raise ValueError(f"unknown question type {question_type!r}; expected one of {QUESTION_TYPES}")
    count, shown = len(scene.tracks), scene.num_video_frames
    agents = [k for k, track in enumerate(scene.tracks) if track.is_agent]
    quantity = question_type.split("_", 1)[1]
    if quantity == "ori":
        if not agents:
            raise IllPosed("no_agent", "no object has a facing direction")
        targets = (int(rng.choice(agents)),)
    elif quantity == "spd_comp":
        if count < 2:
            raise IllPosed("too_few_objects", f"{count} objects")
        targets = tuple(int(k) for k in rng.choice(count, size=2, replace=False))
    else:
        targets = (int(rng.integers(count)),)
    observers = [None] + [k for k in agents if k not in targets]
    observer = observers[int(rng.integers(len(observers)))]
    reference = int(rng.integers(shown)) if question_type.startswith("abs_") else None
    if quantity in ("dis", "ori"):
        frames = (int(rng.integers(shown)),)
    elif quantity == "dir_pred":
        if shown == len(scene.timestamps):
            raise IllPosed("no_future", "the trajectories end with the video")
        frames = (shown - 1, len(scene.timestamps) - 1)
    else:
        start = int(rng.integers(shown - MIN_INTERVAL_FRAMES))
        frames = (start, int(rng.integers(start + MIN_INTERVAL_FRAMES, shown)))
    return Query(question_type, targets, frames, observer, reference)


# --- wording and options -------------------------------------------------------------------------------


def _seconds(scene: DynamicScene, frame: int) -> str:
    return f"{scene.timestamps[frame]:.2f}".rstrip("0").rstrip(".") + " s"


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def question_text(scene: DynamicScene, query: Query) -> str:
    """The wording of ``query``: its perspective (absolute or relative), names and times in seconds."""
    quantity, frames = query.question_type.split("_", 1)[1], query.frames
    names = [scene.tracks[k].name for k in query.targets]
    observer = "the camera" if query.observer is None else scene.tracks[query.observer].name
    looks = "looks" if query.observer is None else "faces"
    if query.reference is not None:
        when = _seconds(scene, query.reference)
        perspective = f"From the perspective of {observer} at {when}"
        front = f" ('front' is where {observer} {looks} at {when})"
    else:
        perspective = f"Following the perspective of {observer} as it moves"
        front = f" ('front' is where {observer} {looks} at each moment)"
    at, between = _seconds(scene, frames[0]), f"between {_seconds(scene, frames[0])} and {_seconds(scene, frames[-1])}"
    texts = {
        "dis": f"{perspective}, how far away is {names[0]} at {at}?",
        "dir": f"{perspective}, in which direction does {names[0]} move {between}?{front}",
        "ori": f"{perspective}, which way is {names[0]} facing at {at}?{front}",
        "spd": f"{perspective}, what is the average speed of {names[0]} {between}?",
        "spd_comp": f"{perspective}, how does the average speed of {names[0]} compare with that of {names[-1]} "
        f"{between}?",
        "dir_pred": f"{perspective}, in which direction will {names[0]} move right after the video ends?{front}",
    }
    return texts[quantity]


def _number(value: float, unit: str) -> str:
    return f"{value:.2f} {unit}" if value < 1 else f"{value:.1f} {unit}"


def numeric_options(value: float, unit: str, rng: np.random.Generator) -> tuple[list[str], int]:
    """Four ascending option texts on a geometric ladder around ``value`` and the index of ``value``'s."""
    for _ in range(20):
        rank, step = int(rng.integers(4)), rng.uniform(*LADDER_RATIOS)
        ladder = [value * step ** (k - rank) * (1.0 if k == rank else rng.uniform(0.95, 1.05)) for k in range(4)]
        texts = [_number(number, unit) for number in ladder]
        if len(set(texts)) == 4:
            return texts, rank
    raise IllPosed("indistinct_options", f"{value} {unit}")


def direction_options(label: str, rng: np.random.Generator) -> tuple[list[str], int]:
    """``label`` and three other sectors (neighbours and the opposite twice as likely), shuffled."""
    index = DIRECTIONS.index(label)
    others = [k for k in range(8) if k != index]
    weights = np.array([2.0 if (k - index) % 8 in (1, 4, 7) else 1.0 for k in others])
    chosen = [index] + [int(k) for k in rng.choice(others, size=3, replace=False, p=weights / weights.sum())]
    order = rng.permutation(4)
    return [DIRECTIONS[chosen[k]] for k in order], int(np.flatnonzero(order == 0)[0])


def ratio_options(names: list[str], ratio: float, rng: np.random.Generator) -> tuple[list[str], int]:
    """The four :data:`RATIO_BINS` as sentences about objects ``names`` ``[A, B]``, shuffled, and the index of
    the one holding ``ratio``."""
    a, b = _capitalised(names[0]), _capitalised(names[1])
    sentences = [
        f"{a} is more than twice as fast as {names[1]}",
        f"{a} is faster than {names[1]}, but less than twice as fast",
        f"{b} is faster than {names[0]}, but less than twice as fast",
        f"{b} is more than twice as fast as {names[0]}",
    ]
    order = rng.permutation(4)
    return [sentences[k] for k in order], int(np.flatnonzero(order == ratio_bin(ratio))[0])


def make_question(scene: DynamicScene, query: Query, rng: np.random.Generator) -> Question:
    """The question of ``query`` with its options; :class:`IllPosed` where it has no unambiguous answer."""
    value = measure(scene, query)
    kind = query.question_type
    if kind.endswith("_dis"):
        options, correct = numeric_options(value, "m", rng)
    elif kind.endswith("_spd"):
        options, correct = numeric_options(value, "m/s", rng)
    elif kind.endswith("_spd_comp"):
        options, correct = ratio_options([scene.tracks[k].name for k in query.targets], value, rng)
    else:
        options, correct = direction_options(value, rng)
    return Question(kind, question_text(scene, query), tuple(options), LETTERS[correct], value, query)


def generate_questions(
    scene: DynamicScene,
    rng: np.random.Generator,
    questions_per_type: int = 1,
    attempts_per_type: int = 8,
    question_types: tuple[str, ...] = QUESTION_TYPES,
) -> tuple[list[Question], Counter]:
    """Up to ``questions_per_type`` distinct questions of each type, from up to ``attempts_per_type`` random
    queries each; returns them and the count of skipped queries by ``"<type>:<reason>"`` (including
    "<type>:duplicate" for a query asked already)."""
    questions, skipped = [], Counter()
    for kind in question_types:
        asked: set[Query] = set()
        for _ in range(attempts_per_type):
            if len(asked) == questions_per_type:
                break
            try:
                query = sample_query(scene, kind, rng)
                if query in asked:
                    raise IllPosed("duplicate")
                questions.append(make_question(scene, query, rng))
                asked.add(query)
            except IllPosed as skip:
                skipped[f"{kind}:{skip.reason}"] += 1
    return questions, skipped


def balance_types(questions: list[Question], seed: int) -> list[Question]:
    """The same number of questions of every type present (the smallest type's count), drawn at random with
    ``seed``, in their original order."""
    by_type: dict[str, list[int]] = {}
    for position, question in enumerate(questions):
        by_type.setdefault(question.question_type, []).append(position)
    if not by_type:
        return []
    size = min(len(positions) for positions in by_type.values())
    rng = np.random.default_rng(seed)
    kept = {int(p) for kind in sorted(by_type) for p in rng.choice(by_type[kind], size=size, replace=False)}
    return [questions[p] for p in sorted(kept)]
