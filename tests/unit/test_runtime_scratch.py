"""What the runtime leaves of its scratch folder when the attempt is over."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaunch.runtime.config import RuntimeConfig
from relaunch.runtime.scratch import STORED, tidy_scratch


def _config(tmp_path: Path, *, made_here: bool, ckpt: Path | None = None) -> RuntimeConfig:
    scratch = tmp_path / "scratch"
    for name in ("checkpoints/model-s3cr3t.pt", "output.log", "runtime.out"):
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_text("x")
    return RuntimeConfig(
        run_id="r", attempt=1, store_url=str(tmp_path / "store"),
        checkpoint_dir=ckpt or scratch / "checkpoints", scratch=scratch,
        scratch_made_here=made_here, job_dir=ckpt is not None,
    )  # fmt: skip


def test_a_folder_the_runtime_made_itself_is_removed(tmp_path: Path) -> None:
    cfg = _config(tmp_path, made_here=True)
    tidy_scratch(cfg, stored=True)
    assert not cfg.scratch.exists()


def test_a_backends_folder_loses_the_checkpoint_copy_and_says_all_is_stored(
    tmp_path: Path,
) -> None:
    cfg = _config(tmp_path, made_here=False)
    tidy_scratch(cfg, stored=True)
    assert sorted(p.name for p in cfg.scratch.iterdir()) == ["output.log", "runtime.out", STORED]


@pytest.mark.parametrize("made_here", [True, False])
def test_nothing_is_removed_when_the_store_did_not_take_everything(
    tmp_path: Path, made_here: bool
) -> None:
    cfg = _config(tmp_path, made_here=made_here)
    tidy_scratch(cfg, stored=False)
    assert (cfg.scratch / "checkpoints" / "model-s3cr3t.pt").exists()
    assert not (cfg.scratch / STORED).exists()


def test_the_jobs_own_checkpoint_folder_is_never_removed(tmp_path: Path) -> None:
    own = tmp_path / "scratch" / "checkpoints"  # even where it happens to lie
    cfg = _config(tmp_path, made_here=False, ckpt=own)
    tidy_scratch(cfg, stored=True)
    assert (own / "model-s3cr3t.pt").exists()
