"""Training: typed config overrides, the schedule, resumable sampling, and train.py end to end (also under torchrun)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from utils.training.config import load_config
from utils.training.distributed import DistEnv
from utils.training.trainer import ResumableBatchSampler, warmup_cosine

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def test_overrides_keep_their_field_types() -> None:
    cfg = load_config(QUICKSTART, ["train.lr=3e-4", "train.max_steps=7", "model.lora={r: 4}", "device=cpu"])
    assert cfg.train.lr == 3e-4 and cfg.train.max_steps == 7 and cfg.model.lora.r == 4
    with pytest.raises(TypeError, match="expected int"):
        load_config(QUICKSTART, ["train.max_steps=many"])
    with pytest.raises(TypeError, match="expected int"):
        load_config(QUICKSTART, ["train.max_steps=false"])  # a bool is not an int here
    with pytest.raises(KeyError, match="names no field"):
        load_config(QUICKSTART, ["train.learning_rate=1e-4"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(QUICKSTART, ["train.lr"])


def test_quickstart_config_inherits_the_tiny_model() -> None:
    cfg = load_config(QUICKSTART)
    assert cfg.model.seg.sam2_config == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert cfg.model.backbone.text_config.hidden_size == 128


def test_warmup_then_cosine_to_min_ratio() -> None:
    assert warmup_cosine(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100, 0.1) == pytest.approx(0.55)
    assert warmup_cosine(100, 10, 100, 0.1) == pytest.approx(0.1)


def _batches(sampler: ResumableBatchSampler, count: int) -> list[list[int]]:
    stream = iter(sampler)
    return [next(stream) for _ in range(count)]


def test_sampler_resumes_mid_stream_and_splits_ranks() -> None:
    single = DistEnv(0, 1, 0, torch.device("cpu"))
    full = _batches(ResumableBatchSampler(10, 4, single, seed=3), 8)
    assert _batches(ResumableBatchSampler(10, 4, single, seed=3, start_step=5), 3) == full[5:]
    assert sorted(i for batch in full[:5] for i in batch) == sorted(list(range(10)) * 2)  # whole epochs, no repeats
    ranks = [_batches(ResumableBatchSampler(10, 2, DistEnv(r, 2, r, torch.device("cpu")), seed=3), 8) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == full


def _train_command(
    run_dir: Path, data_root: Path, parts: dict, steps: int, launcher: list[str], extra: tuple[str, ...] = ()
) -> list[str]:
    overrides = [
        f"output_dir={run_dir}",
        f"data.datasets.synthetic_mevis.root={data_root}",
        "data.datasets.synthetic_region_qa=null",
        "model.pretrained=null",
        f"model.backbone_path={parts['backbone']}",
        f"model.sam2_checkpoint={parts['sam2']}",
        "data.num_frames=4",
        "data.datasets.synthetic_mevis.options.expressions_per_sample=2",
        "train.batch_size=2",
        f"train.max_steps={steps}",
        "train.save_every=2",
        "train.num_workers=0",
        "train.log_every=1",
        "device=cpu",
        *extra,
    ]
    return [*launcher, str(ROOT / "train.py"), "--config", str(QUICKSTART), *overrides]


def _train(
    tmp_path: Path, data_root: Path, parts: dict, steps: int, launcher: list[str], extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    command = _train_command(tmp_path / "run", data_root, parts, steps, launcher, extra)
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _logged_losses(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "losses.jsonl").read_text().splitlines()]


def test_train_script_checkpoints_logs_and_resumes(tmp_path: Path, mevis_root: Path, tiny_parts) -> None:
    result = _train(tmp_path, mevis_root, tiny_parts, 2, [sys.executable])
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / "checkpoints" / "step_0000002" / "model.safetensors").is_file()
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "config.yaml").is_file() and (run / "final" / "model.safetensors").is_file()
    first = load_file(run / "checkpoints" / "step_0000002" / "model.safetensors")

    result = _train(tmp_path, mevis_root, tiny_parts, 4, [sys.executable])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout and "at step 2" in result.stdout
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000002", "step_0000004"]
    second = load_file(run / "checkpoints" / "step_0000004" / "model.safetensors")
    assert any(not torch.equal(first[k], second[k]) for k in first)


def test_train_script_runs_under_torchrun(tmp_path: Path, mevis_root: Path, tiny_parts) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--master_port=29571"]
    result = _train(tmp_path, mevis_root, tiny_parts, 1, launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "final" / "config.json").is_file()


def test_missing_training_data_fails_before_building_the_model(tmp_path: Path, tiny_parts) -> None:
    result = _train(tmp_path, tmp_path / "nowhere", tiny_parts, 1, [sys.executable])
    assert result.returncode != 0 and "training data missing" in result.stderr
    assert "Loading weights" not in result.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_run_config_is_complete(path: Path) -> None:
    from model.heads.seg_sam2 import SegHeadConfig
    from model.sam2_builder import resolve_sam2_config
    from utils.training.trainer import TrainConfig

    cfg = load_config(path)
    seg = SegHeadConfig.from_dict(dict(cfg.model.seg))
    assert resolve_sam2_config(seg.sam2_config).is_file()
    TrainConfig.from_dict(dict(cfg.train))
    assert "/" not in str(cfg.output_dir)[:1], "output_dir must be relative or from a variable"


class _Numbers(torch.utils.data.Dataset):
    """Item i is the number i, except the listed bad ones, which raise as a missing file would."""

    def __init__(self, size: int, bad: set[int]):
        self.size, self.bad = size, bad

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        if index in self.bad:
            raise FileNotFoundError(f"sample {index}: missing frame /data/{index}.jpg")
        return torch.tensor([float(index)])


def _fit_numbers(tmp_path: Path, bad: set[int], steps: int) -> tuple:
    from utils.training.trainer import TrainConfig, Trainer

    model = torch.nn.Linear(1, 1)
    cfg = TrainConfig(batch_size=4, max_steps=steps, lr=1e-3, num_workers=0, save_every=100)
    trainer = Trainer(
        model,
        lambda m, batch: (m(batch["x"]).pow(2).mean(), {}),
        _Numbers(50, bad),
        lambda items: {"x": torch.stack(items)},
        cfg,
        tmp_path,
        DistEnv(0, 1, 0, torch.device("cpu")),
    )
    return trainer, trainer.fit()


def test_unreadable_samples_are_skipped_counted_and_listed(tmp_path: Path) -> None:
    trainer, losses = _fit_numbers(tmp_path, bad={3, 17}, steps=25)  # two epochs: each bad sample seen twice
    assert len(losses) == 25 and trainer.num_skipped == 4
    lines = (tmp_path / "skipped_samples.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all("missing frame /data/" in line for line in lines)
    state = torch.load(tmp_path / "checkpoints" / "step_0000025" / "trainer_state.pt", weights_only=True)
    assert state["num_skipped"] == 4


def test_training_stops_when_too_many_samples_are_unreadable(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="could not be loaded"):
        _fit_numbers(tmp_path, bad=set(range(0, 50, 2)), steps=25)


def _torchrun(nproc: int, port: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={port}"]


def test_two_gloo_processes_give_the_loss_of_one_with_the_same_global_batch_under_every_engine(
    tmp_path: Path, mevis_root: Path, tiny_parts
) -> None:
    runs = {
        "one": (_torchrun(1, 29581), ("train.batch_size=4",)),
        "two": (_torchrun(2, 29582), ("train.batch_size=2",)),
        "accumulated": (_torchrun(1, 29583), ("train.batch_size=2", "train.grad_accum_steps=2")),
        "fsdp": (_torchrun(2, 29584), ("train.batch_size=2", "train.engine=fsdp")),
        "zero2": (
            _torchrun(2, 29585),
            ("train.batch_size=2", "train.engine=deepspeed", "train.deepspeed_config=configs/deepspeed/zero2.json"),
        ),
    }
    losses = {}
    for name, (launcher, extra) in runs.items():
        command = _train_command(tmp_path / name, mevis_root, tiny_parts, 3, launcher, extra)
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        losses[name] = [row[term] for row in _logged_losses(tmp_path / name) for term in ("loss", "ce", "dice")]
    assert len(losses["one"]) == 3 * 3
    for name in ("two", "accumulated", "fsdp", "zero2"):
        assert losses[name] == pytest.approx(losses["one"], rel=1e-5, abs=1e-6), name


def test_a_run_killed_with_sigkill_resumes_on_the_same_loss_curve(tmp_path: Path, mevis_root: Path, tiny_parts) -> None:
    steps, extra = 10, ("train.save_every=3",)
    reference = subprocess.run(
        _train_command(tmp_path / "reference", mevis_root, tiny_parts, steps, [sys.executable], extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert reference.returncode == 0, reference.stderr[-3000:]

    killed_dir = tmp_path / "killed"
    command = _train_command(killed_dir, mevis_root, tiny_parts, steps, [sys.executable], extra)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed_dir / "checkpoints" / "step_0000003"
    deadline = time.monotonic() + 300
    while not checkpoint.is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed_dir / "final").exists(), "the run finished before it could be killed"

    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    assert _logged_losses(killed_dir) == _logged_losses(tmp_path / "reference")  # bit-exact, every term


def test_a_pretrained_folder_gets_the_replacement_sam2_and_keeps_its_own_weights(tiny_model, tiny_parts, tmp_path):
    from model.sam2_builder import build_sam2, save_sam2_checkpoint
    from train import build_model

    model, processor = tiny_model
    model.save_pretrained(tmp_path / "grounded")
    processor.save_pretrained(tmp_path / "grounded")
    seg = model.seg_config
    torch.manual_seed(1)
    other_sam2 = build_sam2(seg.sam2_config, seg.sam2_overrides)
    save_sam2_checkpoint(other_sam2, tmp_path / "sam2.pt")
    overrides = [
        "parts_dir=unused",
        f"model.pretrained={tmp_path / 'grounded'}",
        f"model.replace_sam2_checkpoint={tmp_path / 'sam2.pt'}",
    ]
    built, _ = build_model(load_config(QUICKSTART, overrides))
    for name, value in other_sam2.state_dict().items():
        torch.testing.assert_close(built.seg_head.sam2.state_dict()[name], value)
    kept = dict(model.named_parameters())
    added = [name for name, _ in built.named_parameters() if name.startswith("input_assembly.encoders.region.")]
    assert added and built.config.encoders == {"region": {}}  # the recipe's model.encoders joins the folder
    for name, value in built.named_parameters():
        if not name.startswith(("seg_head.sam2.", "input_assembly.encoders.region.")):
            torch.testing.assert_close(value, kept[name])
