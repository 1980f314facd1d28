from __future__ import annotations

from relaunch.agent.policy import decide
from relaunch.runs.records import RunRecord
from relaunch.spec.loader import parse_job
from relaunch.states import Action, Reason, RunState


def _run(extra: str = "", **fields: int) -> RunRecord:
    spec = parse_job("name: t\ncommand: [x]\n" + extra, "j")
    return RunRecord(run_id="r", name="t", queue="default", backend="local", spec=spec, **fields)


def test_success_and_stop_are_final() -> None:
    assert decide(_run(), Reason.SUCCEEDED, stop_requested=False).state is RunState.SUCCEEDED
    assert decide(_run(), Reason.PREEMPTED, stop_requested=True).state is RunState.STOPPED
    # The command had exited 0 by itself before the stop came: the work is done.
    assert decide(_run(), Reason.SUCCEEDED, stop_requested=True).state is RunState.SUCCEEDED


def test_preemption_recovers_until_max_recoveries() -> None:
    d = decide(
        _run("retry: {max_recoveries: 2}", recoveries=1), Reason.PREEMPTED, stop_requested=False
    )
    assert d.state is RunState.RECOVERING and d.counts_as_recovery and d.action is Action.RETRY
    d = decide(
        _run("retry: {max_recoveries: 2}", recoveries=2), Reason.PREEMPTED, stop_requested=False
    )
    assert d.state is RunState.FAILED and "max_recoveries" in d.why


def test_permission_and_image_pull_never_retried_blindly() -> None:
    for reason in (Reason.PERMISSION, Reason.IMAGE_PULL, Reason.USER_ERROR):
        assert decide(_run(), reason, stop_requested=False).state is RunState.FAILED


def test_quota_and_stockout_fail_over_to_the_next_offer() -> None:
    for reason in (Reason.QUOTA, Reason.NO_CAPACITY):
        d = decide(_run(), reason, stop_requested=False, offers=3)
        assert d.state is RunState.RECOVERING and d.failover and d.counts_as_recovery


def test_quota_is_never_retried_in_a_place_already_tried() -> None:
    d = decide(_run(), Reason.QUOTA, stop_requested=False, offers=1)
    assert d.state is RunState.FAILED and "quota exceeded in that place" in d.why
    d = decide(_run(offer_index=2), Reason.QUOTA, stop_requested=False, offers=3)
    assert d.state is RunState.FAILED and "every one of the 3 places" in d.why
    # A stockout is temporary: after the last region relaunch goes round again.
    d = decide(_run(offer_index=2), Reason.NO_CAPACITY, stop_requested=False, offers=3)
    assert d.state is RunState.RECOVERING and d.failover


def test_transient_backs_off_exponentially_with_a_cap() -> None:
    extra = "retry: {backoff: 2s, backoff_max: 10s}"
    delays = [
        decide(_run(extra, recoveries=n), Reason.TRANSIENT, stop_requested=False).delay
        for n in range(5)
    ]
    assert delays == [2, 4, 8, 10, 10]


def test_errors_count_against_restarts() -> None:
    extra = "retry: {max_restarts_on_errors: 1, actions: {user-error: retry}}"
    d = decide(_run(extra), Reason.USER_ERROR, stop_requested=False)
    assert d.state is RunState.RECOVERING and not d.counts_as_recovery
    d = decide(_run(extra, restarts=1), Reason.USER_ERROR, stop_requested=False)
    assert d.state is RunState.FAILED
