"""`relaunch doctor` keeps the seeds' timeout rule for GCE: the VM's GPU wait must end,
and say why, before the agent's startup window does."""

from __future__ import annotations

from relaunch.doctor import check_timing
from relaunch.spec.loader import parse_job

GCE = (
    "name: t\ncommand: [x]\nbackend: gce\nimage: x\n"
    "resources: {machine_type: n1-standard-4, accelerator_type: NVIDIA_TESLA_T4,"
    " accelerator_count: 1}\n"
)


def findings(extra: str) -> dict[str, str]:
    return {f.what: f.level for f in check_timing(parse_job(GCE + extra, "job.yaml"))}


def test_a_gpu_timeout_past_the_startup_window_fails() -> None:
    found = findings("startup_timeout: 20m\ngce: {gpu_timeout: 20m}\n")
    assert any("ends before gce.gpu_timeout 1200s" in w and v == "fail" for w, v in found.items())


def test_a_startup_window_covering_the_gpu_wait_is_ok() -> None:
    found = findings("startup_timeout: 30m\ngce: {gpu_timeout: 20m}\n")
    assert not any("gpu_timeout" in w for w in found), found
    assert not any("gpu_timeout" in w for w in findings(""))  # the defaults agree
    assert any("gpu_timeout" in w for w in findings("startup_timeout: 5m\n"))  # 300 s each
