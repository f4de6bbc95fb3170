"""The synthetic 4D world: its renders agree with its trajectories, every template answer agrees with values
recomputed from the rendered depth and poses, and its writers produce DSR-Bench and LLaVA-Video files."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from scripts.generate_synthetic_dynamic import main as generate_main
from utils.data.llava_video import LLaVAVideoDataset
from utils.dynamic.qa_templates import (
    LETTERS,
    QUESTION_TYPES,
    DynamicScene,
    IllPosed,
    Track,
    generate_questions,
    measure,
    ratio_bin,
)
from utils.scene3d.geometry import depth_to_points
from utils.synthetic.dynamic_formats import (
    DSR_BENCH_SCHEMA,
    TRAINING_FILE,
    TRAINING_SUBSET,
    generate_split,
    read_world,
    split_questions,
    write_world,
)
from utils.synthetic.dynamic_selection import asked_position, query_cells, query_frames
from utils.synthetic.dynamic_world import (
    ARENA_RADIUS,
    OBJECT_GAP,
    DynamicWorldConfig,
    _outline_radius,
    make_world,
    render_world,
)
from utils.synthetic.rooms import room_rng

CONFIG = DynamicWorldConfig()
MIN_BODY_PIXELS, MIN_NOSE_PIXELS = 15, 8


def _fit_sphere_centre(points: np.ndarray) -> np.ndarray:
    """Least-squares centre of ``(P, 3)`` points on a sphere (``|p|^2 = 2 c.p + r^2 - |c|^2`` is linear)."""
    points = points.astype(np.float64)
    system = np.concatenate([2.0 * points, np.ones((len(points), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(system, (points**2).sum(axis=1), rcond=None)
    return solution[:3]


def _pixel_estimates(world, frames) -> tuple[np.ndarray, np.ndarray]:
    """``(centres (N, T, 3), facing (N, T, 3))`` fitted to each object's back-projected depth pixels (NaN
    where too few pixels show it; facing only for robots whose nose is seen)."""
    count, num_frames = len(world.kinds), len(frames.depths)
    centres, noses = np.full((count, num_frames, 3), np.nan), np.full((count, num_frames, 3), np.nan)
    for t in range(num_frames):
        points, _ = depth_to_points(frames.depths[t], frames.intrinsics, frames.poses[t])
        for part, minimum, out in ((0, MIN_BODY_PIXELS, centres), (count, MIN_NOSE_PIXELS, noses)):
            for k in range(count):
                mask = frames.instances[t] == part + k
                if mask.sum() >= minimum:
                    out[k, t] = _fit_sphere_centre(points[mask])
    facing = noses - centres
    facing[..., 2] = 0.0
    return centres, facing / np.linalg.norm(facing, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def rendered_worlds():
    """Three worlds rendered over their whole trajectories (video and future frames)."""
    worlds = []
    for index in range(3):
        world = make_world(5, "eval", index, CONFIG)
        frames = render_world(world, CONFIG, room_rng(5, "eval", index, 1), num_frames=len(world.timestamps))
        worlds.append((world, frames))
    return worlds


def test_spheres_fitted_to_rendered_depth_recover_the_trajectories_and_facing(rendered_worlds):
    checked_centres = checked_facing = 0
    for world, frames in rendered_worlds:
        centres, facing = _pixel_estimates(world, frames)
        seen = np.isfinite(centres[..., 0])
        np.testing.assert_allclose(centres[seen], world.positions[seen], atol=2e-3)
        truth = np.stack([np.cos(world.yaws), np.sin(world.yaws)], axis=-1)
        seen_nose = np.isfinite(facing[..., 0])
        angle = np.degrees(np.arccos(np.clip((facing[seen_nose][:, :2] * truth[seen_nose]).sum(-1), -1, 1)))
        assert angle.max() < 2.0
        checked_centres, checked_facing = checked_centres + seen.sum(), checked_facing + seen_nose.sum()
    assert checked_centres > 0.8 * sum(w.positions.shape[0] * w.positions.shape[1] for w, _ in rendered_worlds)
    assert checked_facing > 10


def _answer_matches_ratio(question, names: list[str], recomputed: float) -> bool:
    """Whether the answer sentence is the bin of ``recomputed`` (A/B faster, more or less than twice)."""
    text, first, second = question.answer_text, names[0][:1].upper() + names[0][1:], names[1][:1].upper() + names[1][1:]
    expected_start, twice = [(first, "more"), (first, "less"), (second, "less"), (second, "more")][
        ratio_bin(recomputed)
    ]
    return text.startswith(expected_start) and f"{twice} than twice" in text


def test_every_template_answer_agrees_with_values_recomputed_from_pixels(rendered_worlds):
    checked, total, types_checked = 0, 0, set()
    for index, (world, frames) in enumerate(rendered_worlds):
        centres, facing = _pixel_estimates(world, frames)
        estimated = DynamicScene(
            [
                Track(track.name, centres[k], facing[k] if track.is_agent else None)
                for k, track in enumerate(world.scene().tracks)
            ],
            frames.poses,
            world.timestamps,
            world.num_video_frames,
        )
        questions, _ = generate_questions(world.scene(), np.random.default_rng(index), questions_per_type=3)
        for question in questions:
            total += 1
            query = question.query
            frames_used = list(range(query.frames[0], query.frames[-1] + 1))
            if not np.isfinite(centres[list(query.targets)][:, frames_used]).all():
                continue  # a target is hidden at some frame the question uses
            if (
                question.question_type.endswith("_ori")
                and not np.isfinite(facing[query.targets[0], query.frames[0]]).all()
            ):
                continue  # the target's nose is hidden
            if query.observer is not None:
                poses_used = query.pose_frames()
                seen = np.isfinite(centres[query.observer, poses_used]) & np.isfinite(
                    facing[query.observer, poses_used]
                )
                if not seen.all():
                    continue  # the observer (an agent) or its facing is hidden at a frame whose pose is used
            try:
                recomputed = measure(estimated, query)
            except IllPosed as error:
                raise AssertionError(f"{question.question!r}: ill-posed from pixels ({error})") from None
            names = [world.names[k] for k in query.targets]
            if isinstance(question.value, str):
                assert recomputed == question.value == question.answer_text, question.question
            elif question.question_type.endswith("_spd_comp"):
                assert _answer_matches_ratio(question, names, recomputed), question.question
            else:
                assert recomputed == pytest.approx(question.value, rel=5e-3), question.question
                numbers = [float(option.split()[0]) for option in question.options]
                assert LETTERS[int(np.argmin(np.abs(np.log(np.array(numbers) / recomputed))))] == question.answer
            checked += 1
            types_checked.add(question.question_type)
    assert checked >= 0.8 * total and types_checked == set(QUESTION_TYPES)


def test_camera_relative_left_and_right_answers_match_where_the_objects_are_drawn():
    checked = 0
    for index in range(8):
        world = make_world(6, "eval", index, CONFIG)
        frames = render_world(world, CONFIG, room_rng(6, "eval", index, 1))
        questions, _ = generate_questions(
            world.scene(), np.random.default_rng(index), 20, attempts_per_type=60, question_types=("rel_dir",)
        )
        for question in questions:  # the camera following itself: "right" moves rightwards in its view
            if question.query.observer is not None or question.value not in ("left", "right"):
                continue
            (target,), (start, end) = question.query.targets, question.query.frames
            columns = [np.nonzero(frames.instances[t] == target)[1] for t in (start, end)]
            if min(len(c) for c in columns) < MIN_BODY_PIXELS:
                continue
            side = np.sign(columns[1].mean() - columns[0].mean())
            assert side == (1 if question.value == "right" else -1), question.question
            checked += 1
    assert checked >= 10


def test_worlds_are_deterministic_and_splits_differ():
    first, again, other = make_world(0, "eval", 2), make_world(0, "eval", 2), make_world(0, "train", 2)
    np.testing.assert_array_equal(first.positions, again.positions)
    np.testing.assert_array_equal(first.camera_poses, again.camera_poses)
    assert first.positions.shape != other.positions.shape or not np.allclose(first.positions, other.positions)


def test_objects_stay_inside_the_arena_apart_and_include_a_robot_and_a_ball():
    for index in range(20):
        world = make_world(1, "train", index)
        reach = np.array([_outline_radius(kind, r) for kind, r in zip(world.kinds, world.radii)])
        xy = world.positions[..., :2]
        assert (np.linalg.norm(xy, axis=-1) + reach[:, None] <= ARENA_RADIUS + 1e-9).all()
        gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1) - reach[:, None, None] - reach[None, :, None]
        off_diagonal = ~np.eye(len(reach), dtype=bool)
        assert gaps[off_diagonal].min() >= OBJECT_GAP - 1e-9
        assert {"ball", "robot"} <= set(world.kinds) and len(set(world.colours)) == len(world.colours)
        assert np.isnan(world.yaws[[k == "ball" for k in world.kinds]]).all()


def test_eval_split_is_written_as_dsr_bench_parquet_with_balanced_types(tmp_path):
    summary = generate_split(tmp_path, "eval", 3, seed=11)
    table = pq.read_table(tmp_path / "benchmark.parquet")
    assert table.schema.equals(DSR_BENCH_SCHEMA)
    rows = table.to_pylist()
    assert len(rows) == sum(summary.questions.values()) > 0
    assert len(set(summary.questions.values())) == 1  # balanced
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    for row, record in zip(rows, truth, strict=True):
        assert (tmp_path / "videos" / f"{row['videoID']}.mp4").is_file()
        assert [option[:3] for option in row["options"]] == ["A. ", "B. ", "C. ", "D. "]
        assert row["answer"] in LETTERS and row["task_type"] == record["task_type"] in QUESTION_TYPES
        assert record["videoID"] == row["videoID"]
    assert summary.generated >= len(rows) and sum(summary.skipped.values()) > 0


def test_train_split_reads_through_the_llava_video_loader(tmp_path):
    generate_split(tmp_path, "train", 2, seed=12)
    items = json.loads((tmp_path / TRAINING_SUBSET / TRAINING_FILE).read_text())
    dataset = LLaVAVideoDataset(tmp_path, num_frames=4, sources=("dsr_synthetic",))
    assert len(dataset) == len(items) > 0
    sample = dataset[0]
    assert sample.frames.shape == (4, CONFIG.height, CONFIG.width, 3)
    assert sample.meta["answer"] == items[0]["conversations"][1]["value"] and sample.meta["answer"] in LETTERS
    assert len(sample.meta["options"]) == 4


def test_script_writes_both_splits_with_different_seeds_and_skips_a_rerun(tmp_path, capsys):
    arguments = ["--out", str(tmp_path), "--train-videos", "1", "--eval-videos", "1", "--seed", "3"]
    generate_main(arguments)
    record = json.loads((tmp_path / "generation.json").read_text())
    assert record["complete"] and record["split_seeds"]["train"] != record["split_seeds"]["eval"]
    assert (tmp_path / "eval" / "benchmark.parquet").is_file()
    assert (tmp_path / "train" / TRAINING_SUBSET / TRAINING_FILE).is_file()
    generate_main(arguments)
    assert "skipping" in capsys.readouterr().out


def test_training_questions_worded_as_the_benchmark_match_the_evaluated_prompt_word_for_word(tmp_path):
    import pyarrow as pa

    from evaluation.benchmarks import build_benchmark_dataset
    from utils.data.llava_video import question_stem

    generate_split(tmp_path, "train", 2, seed=12)
    released = LLaVAVideoDataset(tmp_path, num_frames=4, sources=("dsr_synthetic",))
    worded = LLaVAVideoDataset(tmp_path, num_frames=4, sources=("dsr_synthetic",), mc_prompt="benchmark")
    rows = []  # the same questions as a DSR-Bench parquet
    for index in range(len(released)):
        sample = released[index]
        text = sample.conversation[0]["content"]
        options = [f"{o[1]}. {o[4:]}" for o in sample.meta["options"]]
        question = question_stem(text, "test")
        rows.append({"videoID": "v", "question": question, "options": options, "answer": sample.meta["answer"]})
    (tmp_path / "bench" / "videos").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bench" / "benchmark.parquet")
    (tmp_path / "bench" / "videos" / "v.mp4").write_bytes(b"")
    evaluated, _ = build_benchmark_dataset("dsr_bench", tmp_path / "bench", None, [])
    for index in range(len(worded)):
        prompt = worded[index].conversation[0]["content"]
        assert prompt == evaluated.user_turn(evaluated.questions[index])
        assert prompt != released[index].conversation[0]["content"]  # the file's own "A. text" lines
        assert worded[index].conversation[1]["content"] == released[index].meta["answer"]


def test_an_answer_written_as_its_option_text_is_scored_as_that_option(tmp_path):
    from evaluation.dynamic_scoring import final_choice

    generate_split(tmp_path, "train", 2, seed=12)
    letters = LLaVAVideoDataset(tmp_path, num_frames=4, sources=("dsr_synthetic",), mc_prompt="benchmark")
    texts = LLaVAVideoDataset(
        tmp_path, num_frames=4, sources=("dsr_synthetic",), mc_prompt="benchmark", mc_answer="option_text"
    )
    for index in range(len(letters)):
        letter, text = letters[index], texts[index]
        assert text.conversation[0] == letter.conversation[0]  # the same prompt
        answer = text.conversation[1]["content"]
        assert answer == text.meta["answer"] and f"({letter.meta['answer']}) {answer}" in letter.meta["options"]
        assert final_choice(answer, letter.meta["options"]) == letter.meta["answer"]
    with pytest.raises(ValueError, match="mc_answer"):
        LLaVAVideoDataset(tmp_path, num_frames=4, sources=("dsr_synthetic",), mc_answer="words")


def test_an_unknown_multiple_choice_wording_is_an_error(tmp_path):
    generate_split(tmp_path, "train", 1, seed=12)
    with pytest.raises(ValueError, match="mc_prompt"):
        LLaVAVideoDataset(tmp_path, num_frames=4, sources=("dsr_synthetic",), mc_prompt="letters")


def test_questions_about_one_video_are_asked_in_turn_in_one_sample(tmp_path):
    generate_split(tmp_path, "train", 2, seed=12)
    single = LLaVAVideoDataset(tmp_path, num_frames=4, sources=("dsr_synthetic",))
    grouped = LLaVAVideoDataset(tmp_path, num_frames=4, sources=("dsr_synthetic",), questions_per_sample=4)
    videos = {single.items[i][3]["video"] for i in range(len(single))}
    per_video = {v: sum(single.items[i][3]["video"] == v for i in range(len(single))) for v in videos}
    assert len(grouped) == sum(-(-count // 4) for count in per_video.values())
    asked = []
    for index in range(len(grouped)):
        sample = grouped[index]
        members = [int(p) for p in sample.sample_id.rsplit("/", 1)[1].split("+")]
        assert 1 <= len(members) <= 4 and len({single.items[m][3]["video"] for m in members}) == 1
        assert sample.conversation == [turn for m in members for turn in single[m].conversation]
        assert sample.meta["answer"] == single[members[-1]].meta["answer"]
        asked += members
    assert sorted(asked) == list(range(len(single)))  # every question once
    with pytest.raises(ValueError, match="questions_per_sample"):
        LLaVAVideoDataset(tmp_path, num_frames=4, sources=("dsr_synthetic",), questions_per_sample=0)


def test_a_written_world_reads_back_field_for_field(tmp_path):
    world = make_world(5, "eval", 0, CONFIG)
    write_world(tmp_path / f"{world.video_id}.npz", world)
    read = read_world(tmp_path / f"{world.video_id}.npz")
    assert (read.video_id, read.kinds, read.colours, read.num_video_frames) == (
        world.video_id,
        world.kinds,
        world.colours,
        world.num_video_frames,
    )
    for name in ("radii", "positions", "yaws", "camera_poses", "intrinsics", "timestamps"):
        np.testing.assert_array_equal(getattr(read, name), getattr(world, name))


def test_split_questions_recover_what_every_written_question_is_about_and_its_value(tmp_path):
    generate_split(tmp_path, "eval", 2, seed=11)
    questions = split_questions("eval", 11, 2)
    rows = pq.read_table(tmp_path / "benchmark.parquet").to_pylist()
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    for row, record in zip(rows, truth, strict=True):
        question = questions[(row["videoID"], row["question"])]
        query = question.query
        assert query.question_type == row["task_type"] and question.answer == row["answer"]
        assert question.value == record["value"]
        assert (list(query.targets), list(query.frames), query.observer) == (
            record["targets"],
            record["frames"],
            record["observer"],
        )


def test_query_cells_are_the_tokens_that_show_the_asked_objects(rendered_worlds):
    checked = 0
    for world, frames in rendered_worlds:
        questions, _ = generate_questions(world.scene(), room_rng(5, "eval", 0, 2))
        height, width = frames.colors.shape[1:3]
        rows, columns = 4, 5  # a merged grid of 4 x 5 tokens over the frame
        for question in questions:
            query = question.query
            cells = query_cells(world, query, (height, width), (CONFIG.num_frames // 2, rows, columns))
            objects = {*query.targets, *([query.observer] if query.observer is not None else [])}
            frames_asked = query_frames(query, world.num_video_frames)
            assert cells and all(cell // (rows * columns) in {f // 2 for f in frames_asked} for cell in cells)
            for cell in cells:  # each cell shows a pixel of an asked object in one of its slot's asked frames
                slot, row, column = cell // (rows * columns), cell // columns % rows, cell % columns
                block = (
                    slice(row * height // rows, (row + 1) * height // rows),
                    slice(column * width // columns, (column + 1) * width // columns),
                )
                shown = {
                    int(k) % len(world.kinds)
                    for f in frames_asked
                    if f // 2 == slot
                    for k in np.unique(frames.instances[f][block])
                    if k >= 0
                }
                assert shown & objects, (question.question, cell)
                checked += 1
    assert checked > 20


def test_the_asked_position_is_where_the_rendered_target_is_seen(rendered_worlds):
    seen = []
    for world, frames in rendered_worlds:
        questions, _ = generate_questions(world.scene(), room_rng(5, "eval", 0, 2))
        focal, (cx, cy) = frames.intrinsics[0, 0], frames.intrinsics[:2, 2]
        for question in questions:
            query = question.query
            position = asked_position(world, query)
            for frame, (ratio_x, ratio_y, log_depth) in zip(
                (query.frames[0], query.frames[-1]), np.reshape(position, (2, 3))
            ):
                frame = min(frame, world.num_video_frames - 1)
                u, v = round(focal * ratio_x + cx), round(focal * ratio_y + cy)
                if not (0 <= v < frames.depths.shape[1] and 0 <= u < frames.depths.shape[2]):
                    continue
                target = query.targets[0]
                shown = frames.instances[frame, v, u] == target
                radius = world.radii[target]
                seen.append(shown and abs(frames.depths[frame, v, u] - (np.exp(log_depth) - radius)) < 0.6 * radius)
    assert len(seen) > 20 and np.mean(seen) > 0.8  # the rest: hidden behind another object
