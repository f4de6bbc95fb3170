"""Extract the EPIC-KITCHENS and Ego4D frames HOI-QA's JSON files name, where :mod:`utils.data.hoi_qa` reads them.

    python scripts/extract_hoi_frames.py --root data/hoi_qa --epic data/EPIC-KITCHENS --ego4d data/ego4d/v2/clips
    python scripts/extract_hoi_frames.py --root data/hoi_qa --epic data/EPIC-KITCHENS --epic-from tar
    python scripts/extract_hoi_frames.py --root data/hoi_qa --check-overlap

Every HOI-QA file present in ``--root`` is read (:data:`~utils.data.hoi_qa.PARTS`); each entry's frame
(:func:`~utils.data.hoi_qa.image_relpath`, e.g. ``P01_01/frame_0000002150.jpg``) is written to
``<out>/EPIC_Kitchens/frames/<rel>`` or ``<out>/Ego4D/v2/frames/<rel>`` (``--out`` defaults to ``--root``),
the layout the reference's README asks for. Frame numbers are the digits the file stem ends in.

* EPIC-KITCHENS (``--epic``, the download layout ``<P##>/videos/<video_id>.MP4`` and
  ``<P##>/rgb_frames/<video_id>.tar``; a flat ``<video_id>.MP4`` is found too): EPIC numbers frames from 1
  (``frame_0000000001.jpg`` is the first), so frame ``n`` is decoded frame ``n - 1`` of the video
  (``--epic-from video``, full size) or the tar's member ``frame_<n:010d>.jpg`` copied byte for byte
  (``--epic-from tar``, EPIC's 456x256 frames, same aspect ratio).
* Ego4D (``--ego4d``, a folder of ``<clip_uid>.mp4``): frame ``n`` is decoded frame ``n`` of the clip
  (Ego4D's clip frame numbers count from 0).

Videos are decoded with :mod:`utils.video` (only the wanted frames, :data:`CHUNK` at a time), frames written
as JPEG (quality 95) to a temporary name and renamed, so a rerun skips every frame already written and
redoes interrupted ones. A missing video, one that does not decode and frames past its end (or not in its tar) are
counted, named in the report (``<out>/extract_hoi_frames.json``) and the others go on; the exit status is 1 when any.

``--check-overlap`` prints how many frames the train files share with the test files and lists them
(:func:`~utils.data.hoi_qa.overlapping_images`; a training mix skips or refuses them with the loader's
``test_overlap`` option).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.data.hoi_qa import (  # noqa: E402
    FRAME_FOLDERS,
    PARTS,
    frame_number,
    image_relpath,
    overlapping_images,
    read_part,
)
from utils.video.backends import decode_frames  # noqa: E402
from utils.video.errors import VideoError  # noqa: E402
from utils.video.sources import probe  # noqa: E402

CHUNK = 32
"""Frames decoded at once (a 1920x1080 frame is 6 MB)."""

EPIC_FIRST_FRAME = 1
"""EPIC-KITCHENS' number of a video's first frame (Ego4D's is 0)."""

FIRST_FRAME = {"epic": EPIC_FIRST_FRAME, "ego4d": 0}
JPEG_QUALITY = 95


def wanted_frames(root: Path) -> tuple[dict[tuple[str, str], dict[int, str]], list[str]]:
    """``({(source, video): {frame number: relative path}}, files read)`` of every HOI-QA file in ``root``.

    Raises ``FileNotFoundError`` if none is there and ``ValueError`` for a frame whose name has no number.
    """
    wanted: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
    read = []
    for part, spec in PARTS.items():
        if not (root / spec.file).is_file():
            continue
        read.append(spec.file)
        for entry_id, entry in read_part(root, part):
            relpath = image_relpath(entry, f"{spec.file} entry {entry_id!r}")
            number = frame_number(relpath)
            if number is None:
                raise ValueError(f"{spec.file} entry {entry_id!r}: frame {relpath!r} has no frame number")
            wanted[(spec.source, str(PurePosixPath(relpath).parent))][number] = relpath
    if not read:
        raise FileNotFoundError(f"no HOI-QA file in {root} (expected some of {[p.file for p in PARTS.values()]})")
    return dict(wanted), read


def find_epic(epic: Path, video: str, suffixes: Sequence[str], folder: str) -> Path | None:
    """``<epic>/<P##>/<folder>/<video><suffix>`` or ``<epic>/<video><suffix>``, the first that exists."""
    participant = video.split("_")[0]
    for base in (epic / participant / folder, epic):
        for suffix in suffixes:
            if (base / f"{video}{suffix}").is_file():
                return base / f"{video}{suffix}"
    return None


def write_jpeg_atomic(path: Path, image: Image.Image | None = None, data: bytes | None = None) -> None:
    """Write ``image`` (as JPEG) or raw JPEG ``data`` to ``path`` through a temporary name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    if image is not None:
        image.save(partial, format="JPEG", quality=JPEG_QUALITY)
    else:
        partial.write_bytes(data)
    os.replace(partial, path)


class Report:
    """What happened to every video: frames written and skipped, and each missing or bad video by name."""

    def __init__(self):
        self.written = self.skipped = 0
        self.missing_videos: list[str] = []
        self.bad_videos: dict[str, str] = {}
        self.bad_frames: dict[str, list[int]] = defaultdict(list)
        self.not_asked: dict[str, int] = defaultdict(int)

    def as_dict(self) -> dict:
        return {
            "frames_written": self.written,
            "frames_already_there": self.skipped,
            "missing_videos": sorted(self.missing_videos),
            "bad_videos": dict(sorted(self.bad_videos.items())),
            "frames_not_found": {video: sorted(frames) for video, frames in sorted(self.bad_frames.items())},
            "videos_of_sources_not_given": dict(self.not_asked),
        }

    @property
    def failed(self) -> bool:
        return bool(self.missing_videos or self.bad_videos or self.bad_frames)


def extract_from_video(path: Path, frames: dict[int, Path], first: int, name: str, report: Report) -> None:
    """Decode ``frames`` (frame number -> output file) of the video ``path``, numbered from ``first``."""
    info = probe(path)
    inside = {number: out for number, out in frames.items() if 0 <= number - first < info.num_frames}
    if len(inside) < len(frames):
        report.bad_frames[name] = sorted(set(frames) - set(inside))
    numbers = sorted(inside)
    for start in range(0, len(numbers), CHUNK):
        chunk = numbers[start : start + CHUNK]
        decoded = decode_frames(info, [number - first for number in chunk])
        for number, array in zip(chunk, decoded.frames):
            write_jpeg_atomic(inside[number], image=Image.fromarray(array))
            report.written += 1


def extract_from_tar(path: Path, frames: dict[int, Path], name: str, report: Report) -> None:
    """Copy ``frames`` (frame number -> output file) out of an EPIC ``rgb_frames`` tar."""
    with tarfile.open(path) as archive:
        members = {PurePosixPath(member.name).name: member for member in archive.getmembers() if member.isfile()}
        for number, out in sorted(frames.items()):
            member = members.get(f"frame_{number:010d}.jpg")
            if member is None:
                report.bad_frames[name].append(number)
                continue
            write_jpeg_atomic(out, data=archive.extractfile(member).read())
            report.written += 1


def extract(args: argparse.Namespace) -> Report:
    """Write every wanted frame that is not there yet; see the module docstring."""
    wanted, files = wanted_frames(args.root)
    print(f"read {', '.join(files)}: {sum(map(len, wanted.values()))} frames of {len(wanted)} videos")
    out = args.out or args.root
    report = Report()
    sources = {"epic": args.epic, "ego4d": args.ego4d}
    progress = tqdm(sorted(wanted.items()), desc="videos", unit="video", dynamic_ncols=True)
    for (source, video), numbers in progress:
        if sources[source] is None:
            report.not_asked[source] += 1
            continue
        targets = {number: out / FRAME_FOLDERS[source] / relpath for number, relpath in numbers.items()}
        todo = {number: path for number, path in targets.items() if not (path.is_file() and path.stat().st_size)}
        report.skipped += len(targets) - len(todo)
        name = f"{source}:{video}"
        if not todo:
            continue
        use_tar = source == "epic" and args.epic_from == "tar"
        if source == "epic":
            path = find_epic(
                args.epic, video, (".tar",) if use_tar else (".MP4", ".mp4"), "rgb_frames" if use_tar else "videos"
            )
        else:
            path = args.ego4d / f"{video}.mp4"
            path = path if path.is_file() else None
        if path is None:
            report.missing_videos.append(name)
            continue
        try:
            if use_tar:
                extract_from_tar(path, todo, name, report)
            else:
                extract_from_video(path, todo, FIRST_FRAME[source], name, report)
        except (VideoError, tarfile.TarError, OSError) as error:
            report.bad_videos[name] = str(error)
        progress.set_postfix(written=report.written, missing=len(report.missing_videos), bad=len(report.bad_videos))
    out.mkdir(parents=True, exist_ok=True)
    (out / "extract_hoi_frames.json").write_text(json.dumps(report.as_dict(), indent=1))
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="the folder with HOI-QA's JSON files")
    parser.add_argument("--out", type=Path, help="where the frame folders go (default: --root)")
    parser.add_argument("--epic", type=Path, help="EPIC-KITCHENS download root (<P##>/videos, <P##>/rgb_frames)")
    parser.add_argument("--epic-from", choices=("video", "tar"), default="video", help="decode videos or copy tars")
    parser.add_argument("--ego4d", type=Path, help="folder of Ego4D <clip_uid>.mp4 clips")
    parser.add_argument("--check-overlap", action="store_true", help="list the train frames the test files use")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check_overlap:
        shared = overlapping_images(args.root)
        print(f"{len(shared)} frames are in both a train and a test file:")
        print("\n".join(shared))
        return 0
    if args.epic is None and args.ego4d is None:
        raise SystemExit("give --epic and/or --ego4d (or --check-overlap)")
    report = extract(args)
    summary = report.as_dict()
    print(
        f"{summary['frames_written']} frames written, {summary['frames_already_there']} already there; "
        f"{len(summary['missing_videos'])} videos missing, {len(summary['bad_videos'])} bad, "
        f"{sum(map(len, summary['frames_not_found'].values()))} frames not found"
    )
    for label, names in (("missing", summary["missing_videos"]), ("bad", list(summary["bad_videos"].items()))):
        for name in names:
            print(f"  {label}: {name}")
    for video, frames in summary["frames_not_found"].items():
        print(f"  not in {video} (past its end or not in its tar): frames {frames}")
    for source, count in summary["videos_of_sources_not_given"].items():
        print(f"  {count} {source} videos not extracted: no --{source} given")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
