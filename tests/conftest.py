"""Shared fixtures: tiny UniGR parts in their official on-disk formats and a tiny synthetic MeViS set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from model.builder import build_unigr, save_tiny_backbone, save_tiny_sam2
from utils.synthetic.moving_shapes import generate_mevis
from utils.synthetic.rooms import RoomConfig
from utils.synthetic.scene3d_formats import generate_scene_benchmarks
from utils.training.config import load_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything must build with no network

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def tiny_cfg() -> dict:
    """The tiny model section of the quick-start config, as plain data, with SAM2 memory propagation (the
    model's default, which the quick start switches off for its all-frames-seen videos)."""
    cfg = load_config(QUICKSTART, ["parts_dir=unused", "model.seg.propagation=memory"])
    return OmegaConf.to_container(cfg.model, resolve=True)


@pytest.fixture(scope="session")
def tiny_parts(tmp_path_factory: pytest.TempPathFactory, tiny_cfg: dict) -> dict[str, Path]:
    """A stock-layout tiny Qwen2.5-VL folder and an official-layout tiny SAM2 checkpoint."""
    root = tmp_path_factory.mktemp("parts")
    return {
        "backbone": save_tiny_backbone(tiny_cfg, root / "qwen2_5_vl_tiny"),
        "sam2": save_tiny_sam2(tiny_cfg, root / "sam2.1_hiera_tiny.pt"),
    }


@pytest.fixture(scope="session")
def tiny_model(tiny_parts: dict[str, Path], tiny_cfg: dict):
    """``(model, processor)``: tiny UniGR built from the parts, in eval mode."""
    model, processor = build_unigr(tiny_parts["backbone"], tiny_cfg["seg"], tiny_parts["sam2"])
    return model.eval(), processor


@pytest.fixture(scope="session")
def mevis_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic MeViS-format ``train`` (4 videos) and ``valid_u`` (2 videos), 64 px, 6 frames."""
    root = tmp_path_factory.mktemp("synthetic_mevis")
    generate_mevis(root, 4, 2, seed=0, height=64, width=64, num_frames=6)
    return root


@pytest.fixture(scope="session")
def small_rooms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic rooms (48 x 64 px, 4 frames, seed 0) with every 3D benchmark, split ``train``, official layout."""
    root = tmp_path_factory.mktemp("small_rooms")
    generate_scene_benchmarks(root, "train", 2, seed=0, config=RoomConfig(height=48, width=64, num_frames=4))
    return root
