from __future__ import annotations

from relaunch.runtime.scan import OutputScanner
from relaunch.states import Reason


def _classify(lines: list[str], code: int = 1, patterns: list[str] | None = None) -> tuple:
    scanner = OutputScanner(patterns or [])
    for line in lines:
        scanner.feed(line + "\n")
    finding = scanner.classify(code)
    return finding.reason, finding.detail


def test_exit_zero_is_success_even_after_a_caught_traceback() -> None:
    assert (
        _classify(["Traceback (most recent call last):", "KeyError: 1"], 0)[0] is Reason.SUCCEEDED
    )


def test_python_exception_names_the_exception() -> None:
    reason, detail = _classify(
        ["Traceback (most recent call last):", '  File "t.py"', "ValueError: bad lr"]
    )
    assert reason is Reason.USER_ERROR and detail.endswith("ValueError: bad lr")


def test_cuda_oom_and_nccl() -> None:
    assert "CUDA out of memory" in _classify(["torch.OutOfMemoryError: CUDA out of memory."])[1]
    assert _classify(["NCCL error in: ProcessGroupNCCL.cpp"])[0] is Reason.TRANSIENT


def test_cloud_errors() -> None:
    assert (
        _classify(["google.api_core.exceptions.Forbidden: 403 PERMISSION_DENIED"])[0]
        is Reason.PERMISSION
    )
    assert _classify(["ERROR: Quota exceeded for quota metric 'GPUs'"])[0] is Reason.QUOTA
    assert _classify(["503 Service Unavailable"])[0] is Reason.TRANSIENT


def test_quota_wins_over_the_traceback_it_caused() -> None:
    reason, _ = _classify(
        [
            "Traceback (most recent call last):",
            "google.api_core.exceptions.ResourceExhausted: 429 Quota exceeded",
        ]
    )
    assert reason is Reason.QUOTA


def test_keeps_the_last_50_lines() -> None:
    scanner = OutputScanner([])
    for i in range(120):
        scanner.feed(f"line {i}\n")
    assert list(scanner.last_lines) == [f"line {i}" for i in range(70, 120)]


def test_user_fatal_pattern_is_immediate() -> None:
    scanner = OutputScanner([r"loss is nan"])
    scanner.feed("step 5 loss is nan\n")
    assert scanner.fatal is not None and scanner.fatal.reason is Reason.USER_ERROR
