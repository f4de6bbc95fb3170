"""``python app.py``'s options: safe defaults, and a clear message when the model folder is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

import app
from scripts import infer


def test_the_demo_binds_to_this_machine_and_shares_nothing_unless_asked() -> None:
    args = app.parse_args([])
    assert args.host == "127.0.0.1" and args.share is False and args.port == 7860
    assert args.version == infer.DEFAULT_MODEL and args.concurrency == 1


def test_a_missing_model_folder_is_named_and_the_default_one_says_how_to_make_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit, match=f"{tmp_path} is not a UniGR model folder"):
        app.main(["--version", str(tmp_path)])
    monkeypatch.setattr(infer, "DEFAULT_MODEL", tmp_path / "unigr_tiny_quickstart")
    with pytest.raises(SystemExit, match="python scripts/quickstart.py"):
        infer.check_model_folder(tmp_path / "unigr_tiny_quickstart")
