"""The video decoding benchmark script: the clip it makes and the table it prints (tiny sizes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import benchmark_video
from utils.synthetic.moving_shapes import WorldConfig, make_video
from utils.video.backends import available_backends
from utils.video.encode import write_video
from utils.video.sources import probe


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-frame 64x96 moving-shapes clip standing in for the real source."""
    video = make_video(0, "benchmark-video", 0, WorldConfig(height=64, width=96, num_frames=12))
    return write_video(tmp_path_factory.mktemp("bench") / "source.mp4", list(video.frames), fps=10)


def test_pingpong_plays_forwards_then_backwards_without_repeating_the_ends() -> None:
    assert list(benchmark_video.pingpong([0, 1, 2], 7)) == [0, 1, 2, 1, 0, 1, 2]


def test_the_clip_has_the_asked_length_rate_and_key_frame_interval(source: Path, tmp_path: Path) -> None:
    path = benchmark_video.make_clip(tmp_path / "clip.mp4", source, seconds=3, fps=10, gop=5)
    info = probe(path)
    assert (info.num_frames, info.width, info.height) == (30, 96, 64)
    assert info.fps == pytest.approx(10) and info.keyframes.tolist() == list(range(0, 30, 5))
    assert benchmark_video.make_clip(path, source, seconds=99, fps=10, gop=5) == path  # reused, not rewritten
    assert probe(path).num_frames == 30


def test_the_benchmark_prints_a_row_per_reader_and_frame_count(source: Path, tmp_path: Path, capsys) -> None:
    argv = ["--clip", str(tmp_path / "clip.mp4"), "--source", str(source), "--seconds", "2", "--gop", "5",
            "--frames", "2", "4", "--repeats", "1", "--loader-frames", "4", "--loader-samples", "2",
            "--sam-size", "32"]
    rows = benchmark_video.main(argv)
    readers = [f"utils.video {b}" for b in available_backends()]
    readers += [f"qwen-vl-utils {r}" for r in benchmark_video.usable_qwen_readers(list(benchmark_video.QWEN_READERS))]
    assert [(r["reader"], r["frames"]) for r in rows] == [(name, n) for n in (2, 4) for name in readers]
    assert all(r["ms"] > 0 and r["fps"] == pytest.approx(r["frames"] * 1000 / r["ms"]) for r in rows)
    assert all(r["decoded"] >= r["frames"] for r in rows if r["reader"] == "utils.video pyav")
    printed = capsys.readouterr().out
    assert "| reader | frames | ms / sample | frames/s |" in printed and printed.count("\n| ") == 1 + len(rows)
    assert "loader: 2 workers, 4 frames/sample" in printed and "samples/s" in printed
    if any(name.startswith("qwen") for name in readers):
        assert "speed-up at 4 frames" in printed
