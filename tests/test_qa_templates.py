"""Question templates on hand-built trajectories: values, viewpoints, options, skips and type balancing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from utils.dynamic.qa_templates import (
    DIRECTIONS,
    LETTERS,
    QUESTION_TYPES,
    DynamicScene,
    IllPosed,
    Query,
    Track,
    balance_types,
    forward_from_yaw,
    generate_questions,
    make_question,
    measure,
    numeric_options,
)
from utils.synthetic.dynamic_world import look_at_poses

NUM_FRAMES, FPS = 10, 2.0
TIMES = np.arange(NUM_FRAMES) / FPS


def _cameras(eye=(-10.0, 0.0, 2.0), target=(0.0, 0.0, 2.0)) -> np.ndarray:
    """``(T, 4, 4)`` a still camera at ``eye`` looking at ``target`` (default: along +x, so +y is left)."""
    return look_at_poses(np.tile(eye, (NUM_FRAMES, 1)), np.tile(target, (NUM_FRAMES, 1)))


def _line(start, velocity) -> np.ndarray:
    start, velocity = np.broadcast_to(np.asarray(start, float), 3), np.broadcast_to(np.asarray(velocity, float), 3)
    return start + TIMES[:, None] * velocity


def _scene(tracks: list[Track], poses: np.ndarray | None = None, num_video_frames: int | None = None):
    return DynamicScene(tracks, _cameras() if poses is None else poses, TIMES, num_video_frames)


def _agent(name: str, positions: np.ndarray, yaw) -> Track:
    return Track(name, positions, forward_from_yaw(np.broadcast_to(np.asarray(yaw, float), NUM_FRAMES)))


def test_distance_is_from_the_frozen_observer_for_abs_and_the_moving_one_for_rel():
    walker = _agent("the robot", _line(0, (1.0, 0, 0)), 0.0)  # walks 1 m/s along +x
    scene = _scene([walker, Track("the ball", _line((5, 0, 0), 0))])
    question = make_question(scene, Query("abs_dis", (1,), (4,), observer=0, reference=0), np.random.default_rng(0))
    assert question.value == pytest.approx(5.0) and question.answer_text == "5.0 m"
    assert measure(scene, Query("rel_dis", (1,), (4,), observer=0)) == pytest.approx(3.0)  # the robot is at 2 m
    from_camera = measure(scene, Query("abs_dis", (1,), (4,), reference=9))
    assert from_camera == pytest.approx(np.sqrt(15.0**2 + 2.0**2))  # the camera is 2 m up


def test_motion_direction_is_seen_from_the_observer_front():
    mover = Track("the ball", _line((3, 0, 0), (0, 1.0, 0)))  # moves along +y: left of a camera looking along +x
    scene = _scene([mover, _agent("the robot", _line(0, 0), np.pi / 2)])  # the robot faces +y
    assert measure(scene, Query("abs_dir", (0,), (0, 9), reference=0)) == "left"
    assert measure(scene, Query("rel_dir", (0,), (0, 9))) == "left"
    assert measure(scene, Query("abs_dir", (0,), (0, 9), observer=1, reference=3)) == "front"
    turned = _scene(scene.tracks, look_at_poses(np.tile((5, 10, 2.0), (10, 1)), np.tile((5, 0, 2.0), (10, 1))))
    assert measure(turned, Query("rel_dir", (0,), (0, 9))) == "back"  # this camera looks along -y


def test_a_turning_observer_sees_a_still_object_move_only_in_the_relative_frame():
    spinner = _agent("the robot", _line(0, 0), np.linspace(0.0, np.pi, NUM_FRAMES))  # turns from +x to -x
    scene = _scene([spinner, Track("the ball", _line((3, 0, 0), 0))])
    assert measure(scene, Query("rel_dir", (1,), (0, 9), observer=0)) == "back"  # from its front to its back
    with pytest.raises(IllPosed) as skip:
        measure(scene, Query("abs_dir", (1,), (0, 9), observer=0, reference=4))
    assert skip.value.reason == "barely_moves"
    chords = 9 * 2 * 3.0 * np.sin(np.pi / 18)  # the ball's path in the turning frame: 9 chords of a 3 m circle
    assert measure(scene, Query("rel_spd", (1,), (0, 9), observer=0)) == pytest.approx(chords / TIMES[-1])


def test_orientation_is_in_the_frozen_frame_for_abs_and_the_current_frame_for_rel():
    poses = _cameras()
    poses[5:] = look_at_poses(np.tile((0, -10.0, 2), (5, 1)), np.tile((0, 0, 2.0), (5, 1)))  # then looks along +y
    spinner = _agent("the robot", _line(0, 0), np.linspace(0.0, np.pi, NUM_FRAMES))  # faces +x, turns to -x
    scene = _scene([spinner, Track("the ball", _line(1, 0))], poses)
    assert measure(scene, Query("abs_ori", (0,), (0,), reference=0)) == "front"
    assert measure(scene, Query("abs_ori", (0,), (9,), reference=0)) == "back"
    assert measure(scene, Query("rel_ori", (0,), (9,))) == "left"  # -x seen by a camera facing +y
    with pytest.raises(IllPosed) as skip:
        measure(scene, Query("abs_ori", (0,), (1,), reference=0))  # yaw 20 degrees: near the front / front-left border
    assert skip.value.reason == "ambiguous_direction"


def test_speed_is_path_length_over_time_and_zero_for_an_observer_moving_alike():
    mover = Track("the ball", _line((0, 0, 0), (0.6, 0.8, 0)))
    scene = _scene([mover, _agent("the robot", _line((0, 5, 0), (0.6, 0.8, 0)), 0.3)])
    assert measure(scene, Query("abs_spd", (0,), (0, 9), reference=3)) == pytest.approx(1.0)
    assert measure(scene, Query("rel_spd", (0,), (2, 8))) == pytest.approx(1.0)  # the camera stands still
    with pytest.raises(IllPosed) as skip:
        measure(scene, Query("rel_spd", (0,), (2, 8), observer=1))  # moving together
    assert skip.value.reason == "barely_moves"


def test_speed_comparison_answer_is_the_ratio_bin():
    scene = _scene(
        [Track("the red ball", _line(0, (1.0, 0, 0))), Track("the blue ball", _line((0, 3, 0), (0.4, 0, 0)))]
    )
    question = make_question(scene, Query("abs_spd_comp", (0, 1), (0, 9), reference=0), np.random.default_rng(3))
    assert question.value == pytest.approx(2.5)
    assert question.answer_text == "The red ball is more than twice as fast as the blue ball"
    assert len(set(question.options)) == 4
    close = _scene([scene.tracks[0], Track("the slow ball", _line((0, 3, 0), (0.95, 0, 0)))])
    with pytest.raises(IllPosed) as skip:
        measure(close, Query("rel_spd_comp", (0, 1), (0, 9)))
    assert skip.value.reason == "ambiguous_ratio"


def test_direction_prediction_uses_the_frames_after_the_video():
    positions = _line(0, (1.0, 0, 0))
    positions[7:, 1] = (np.arange(3) + 1) * 0.5  # after the video (7 frames) it veers off to +y
    positions[7:, 0] = positions[6, 0]
    scene = _scene([Track("the ball", positions), Track("the box", _line((0, -4, 0), 0))], num_video_frames=7)
    question = make_question(scene, Query("abs_dir_pred", (0,), (6, 9), reference=0), np.random.default_rng(0))
    assert question.value == question.answer_text == "left" and "after the video ends" in question.question
    assert measure(scene, Query("rel_dir_pred", (0,), (6, 9))) == "left"
    with pytest.raises(IllPosed) as skip:
        measure(scene, Query("rel_dir_pred", (1,), (6, 9)))
    assert skip.value.reason == "barely_moves"


def test_queries_must_match_their_viewpoint():
    scene = _scene([Track("the ball", _line(0, 1.0)), Track("the box", _line(3, 0))])
    with pytest.raises(ValueError, match="reference"):
        measure(scene, Query("abs_dis", (0,), (1,)))
    with pytest.raises(ValueError, match="reference"):
        measure(scene, Query("rel_dis", (0,), (1,), reference=2))


def test_ill_posed_questions_are_skipped_and_counted_by_reason():
    still = [Track("the red ball", _line(0, 0)), Track("the blue ball", _line((0.1, 0.1, 0), 0))]
    questions, skipped = generate_questions(_scene(still), np.random.default_rng(0), attempts_per_type=4)
    assert {question.question_type for question in questions} == {"abs_dis", "rel_dis"}  # distances still exist
    assert skipped["abs_spd:barely_moves"] == 4 and skipped["abs_ori:no_agent"] == 4
    assert skipped["rel_dir:barely_moves"] == 4 and skipped["abs_dir_pred:no_future"] == 4
    for kind in set(QUESTION_TYPES) - {"abs_dis", "rel_dis"}:
        assert sum(count for key, count in skipped.items() if key.startswith(f"{kind}:")) == 4


def _random_scene(seed: int) -> DynamicScene:
    rng = np.random.default_rng(seed)
    tracks = []
    for k in range(4):
        start, velocity = rng.uniform(-3, 3, size=3) * [1, 1, 0], rng.uniform(-1, 1, size=3) * [1, 1, 0]
        forward = forward_from_yaw(np.full(NUM_FRAMES, np.arctan2(velocity[1], velocity[0]))) if k % 2 else None
        tracks.append(Track(f"object {k}", _line(start, velocity), forward))
    eyes = np.stack([np.full(NUM_FRAMES, -8.0), np.linspace(-2, 2, NUM_FRAMES), np.full(NUM_FRAMES, 3.0)], 1)
    return _scene(tracks, look_at_poses(eyes, np.zeros((NUM_FRAMES, 3))), num_video_frames=7)


def test_questions_are_deterministic_with_four_distinct_options_and_one_answer():
    first, _ = generate_questions(_random_scene(1), np.random.default_rng(5), questions_per_type=2)
    again, _ = generate_questions(_random_scene(1), np.random.default_rng(5), questions_per_type=2)
    other, _ = generate_questions(_random_scene(1), np.random.default_rng(6), questions_per_type=2)
    assert [(q.question, q.options, q.answer) for q in first] == [(q.question, q.options, q.answer) for q in again]
    assert [q.question for q in first] != [q.question for q in other]
    assert {q.question_type for q in first} == set(QUESTION_TYPES)
    for question in first:
        assert len(set(question.options)) == 4 and question.answer in LETTERS
        if isinstance(question.value, str):
            assert question.answer_text == question.value and set(question.options) <= set(DIRECTIONS)
        assert question.lettered_options()[LETTERS.index(question.answer)].endswith(question.answer_text)


def test_numeric_options_are_ascending_and_well_separated_with_uniform_answer_letters():
    letters = Counter()
    rng = np.random.default_rng(0)
    for value in rng.uniform(0.2, 8.0, size=400):
        options, correct = numeric_options(float(value), "m", rng)
        numbers = np.array([float(text.split()[0]) for text in options])
        assert np.all(numbers[1:] / numbers[:-1] > 1.15)
        assert options[correct] == (f"{value:.2f} m" if value < 1 else f"{value:.1f} m")
        letters[LETTERS[correct]] += 1
    assert min(letters.values()) > 70


def test_balance_types_keeps_the_smallest_type_count_of_each_type_in_order():
    scene = _random_scene(2)
    questions = []
    for seed, types in enumerate([("abs_dis",) * 5, ("rel_dis",) * 3, ("abs_spd",) * 7]):
        for offset, kind in enumerate(types):
            query_type = (kind,)
            made, _ = generate_questions(scene, np.random.default_rng(100 * seed + offset), question_types=query_type)
            questions += made
    counts = Counter(q.question_type for q in questions)
    balanced = balance_types(questions, seed=1)
    assert Counter(q.question_type for q in balanced) == dict.fromkeys(counts, min(counts.values()))
    positions = [next(i for i, q in enumerate(questions) if q is kept) for kept in balanced]
    assert positions == sorted(positions)
    assert balance_types(questions, seed=1) == balanced and balance_types([], seed=0) == []


def test_scenes_with_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="the ball"):
        _scene([Track("the ball", np.zeros((NUM_FRAMES - 1, 3)))])
    with pytest.raises(ValueError, match="camera_poses"):
        DynamicScene([], np.zeros((3, 4, 4)), TIMES)
    with pytest.raises(ValueError, match="num_video_frames"):
        _scene([], num_video_frames=3)
