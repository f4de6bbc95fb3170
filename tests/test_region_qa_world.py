"""The synthetic referring world: region questions over moving shapes, written in VideoRefer's formats."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from scripts import generate_synthetic_referring
from utils.data.catalog import EVALUATED_SPLITS, LOADERS
from utils.synthetic.moving_shapes import WorldConfig, make_video
from utils.synthetic.region_qa import OPTIONS, region_questions, relation_of

CONFIG = WorldConfig(height=64, width=64, num_frames=6)


def test_answers_are_the_pointed_at_objects_attributes_among_fixed_options() -> None:
    kinds = Counter()
    for index in range(8):
        video = make_video(5, "train", index, CONFIG)
        for q in region_questions(video, np.random.default_rng(index)):
            kinds[q.kind] += 1
            assert q.options == [f"({chr(65 + i)}) {v}" for i, v in enumerate(OPTIONS[q.kind])]
            value = q.answer.split(") ", 1)[1]
            obj = video.objects[q.objects[0]]
            expected = {"colour": obj.colour, "shape": obj.shape, "motion": obj.direction}.get(q.kind)
            if q.kind == "relation":
                a, b = q.objects
                expected = relation_of(video.masks[a, q.frame], video.masks[b, q.frame], 0.0)
                assert all(relation_of(video.masks[a, t], video.masks[b, t], 0.0) == expected for t in q.frames)
            assert value == expected
            assert q.frame in q.frames and all(video.masks[o, t].any() for o in q.objects for t in q.frames)
            assert q.question.count("<region>") == len(q.objects)
    assert set(kinds) == {"colour", "shape", "motion", "relation"}


def test_questions_are_a_function_of_the_seed() -> None:
    video = make_video(5, "train", 0, CONFIG)
    first, again = (region_questions(video, np.random.default_rng(3)) for _ in range(2))
    assert [(q.question, q.answer, q.frame) for q in first] == [(q.question, q.answer, q.frame) for q in again]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("referring")
    generate_synthetic_referring.main(
        ["--out", str(out), "--num-train", "2", "--num-test", "2", "--seed", "4", "--size", "64", "--num-frames", "6"]
    )
    return out


def test_the_written_splits_load_with_the_real_loaders_and_prompt_the_asked_object(written: Path) -> None:
    train = LOADERS["videorefer"].build(
        written / "VideoRefer-700K", "train", num_frames=6, train=True, seed=0, json_files=["synthetic-region-qa.json"]
    )
    test = LOADERS["videorefer_bench_q"].build(
        written / "VideoRefer-Bench-Q", "test", num_frames=None, train=False, seed=0
    )
    assert len(train) > 0 and len(test) > 0
    sample = test[0]
    assert sample.meta["options"] and sample.meta["answer"] in sample.meta["options"]
    assert sample.conversation[-1]["content"] == sample.meta["answer"]
    assert sample.regions and all(p.mask.any() for p in sample.regions)
    assert "<object0><region>" in sample.conversation[0]["content"]
    assert ("videorefer_bench_q", "test") in EVALUATED_SPLITS and ("videorefer", "train") not in EVALUATED_SPLITS
    train_videos = {train[i].meta["video"] for i in range(len(train))}
    test_videos = {test[i].meta["video"] for i in range(len(test))}
    assert not train_videos & test_videos
