"""A global batch in which some ranks have ``[SEG]`` samples and others only QA trains under DDP, FSDP and ZeRO-2.

(ZeRO-3 gathers each submodule's parameters per call, so it also needs every rank to call SAM2's modules
equally often; see the README's known limits.)

A test-only QA loader (the synthetic MeViS videos, asked what moves, answered in words) is registered
in each ``train.py`` process by a small launcher script; the mixture draws it beside the segmentation
data, and the seed is one whose first steps give one rank a segmentation sample and the other a QA one.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from utils.data.mevis import MeViSDataset
from utils.data.registry import LOADERS, register_dataset
from utils.training.distributed import DistEnv
from utils.training.trainer import ResumableBatchSampler

ROOT = Path(__file__).resolve().parents[1]
QA_LOADER = "synthetic_qa"

LAUNCHER = f"""
import sys
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
import test_heads_across_ranks
test_heads_across_ranks.register_qa_loader()
import train
train.main(sys.argv[1:])
"""


class WordAnswers(MeViSDataset):
    """The MeViS-format videos, each asked what it shows; the answer is the expression, in words."""

    def __getitem__(self, index: int):
        sample = super().__getitem__(index)
        conversation = [
            {"role": "user", "content": "Name one object in this video."},
            {"role": "assistant", "content": sample.meta["exp"]},
        ]
        return dataclasses.replace(sample, conversation=conversation, masks=None, sample_id=f"qa/{sample.sample_id}")


def register_qa_loader() -> None:
    if QA_LOADER in LOADERS:
        return

    @register_dataset(QA_LOADER, family="qa", required_paths=LOADERS["mevis"].required_paths)
    def build(root: Path, split: str, *, num_frames: int, train: bool, seed: int) -> WordAnswers:
        return WordAnswers(root, split, num_frames, train, seed)


def _overrides(run: Path, mevis_root: Path, parts: dict, engine: tuple[str, ...]) -> list[str]:
    return [
        f"output_dir={run}",
        f"data.datasets.synthetic_mevis.root={mevis_root}",
        "data.datasets.synthetic_region_qa=null",
        "model.pretrained=null",
        f"model.backbone_path={parts['backbone']}",
        f"model.sam2_checkpoint={parts['sam2']}",
        "data.num_frames=4",
        "data.samples_per_epoch=64",
        "train.batch_size=1",
        "train.max_steps=3",
        "train.save_every=3",
        "train.num_workers=0",
        "train.log_every=1",
        "device=cpu",
        "seed=1",
        *engine,
    ]


def _mixture_yaml(tmp_path: Path, mevis_root: Path) -> Path:
    """The quick-start recipe with the QA loader beside the segmentation data, weight 1 each."""
    text = (ROOT / "configs/quickstart.yaml").read_text()
    text = text.replace("defaults:\n  - model/tiny.yaml", f"defaults:\n  - {ROOT / 'configs/model/tiny.yaml'}")
    extra = f"    qa:\n      loader: {QA_LOADER}\n      root: {mevis_root}\n      split: train\n      weight: 1\n"
    text = text.replace(
        "      options: {expressions_per_sample: 1}\n", "      options: {expressions_per_sample: 1}\n" + extra, 1
    )
    path = tmp_path / "mixed.yaml"
    path.write_text(text)
    return path


def test_the_chosen_seed_gives_the_ranks_different_heads(mevis_root: Path, tmp_path: Path) -> None:
    from utils.data.mixture import build_training_mixture
    from utils.training.config import load_config

    register_qa_loader()
    cfg = load_config(
        _mixture_yaml(tmp_path, mevis_root),
        _overrides(tmp_path, mevis_root, {"backbone": "unused", "sam2": "unused"}, ()),
    )
    mixture = build_training_mixture(cfg.data, cfg.seed)
    sampler = [iter(ResumableBatchSampler(len(mixture), 1, DistEnv(r, 2, r, None), seed=0)) for r in (0, 1)]
    kinds = [[mixture.locate(next(s)[0])[0] for s in sampler] for _ in range(3)]
    assert any(sorted(step) == ["qa", "synthetic_mevis"] for step in kinds), kinds


@pytest.mark.parametrize(
    "engine",
    [
        ("train.engine=ddp",),
        ("train.engine=fsdp",),
        ("train.engine=deepspeed", "train.deepspeed_config=configs/deepspeed/zero2.json"),
    ],
    ids=["ddp", "fsdp", "zero2"],
)
def test_ranks_with_and_without_seg_samples_train_together(
    engine, mevis_root: Path, tiny_parts, tmp_path: Path
) -> None:
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29591",
        str(launcher),
        "--config",
        str(_mixture_yaml(tmp_path, mevis_root)),
        *_overrides(run, mevis_root, tiny_parts, engine),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (run / "final" / "model.safetensors").is_file()
