"""The benchmark's interleaving: every server's repetitions share the same
rounds, the order rotates, each server is time-boxed on its own, and a wrong
answer drops only that server. Plain step functions stand in for the HTTP
requests (the harness's own logic; ``test_bench_smoke`` runs it against the
real servers)."""

from __future__ import annotations

import time

from bench.workloads import Budget, CheckFailed, Step, interleaved


def test_rounds_rotate_and_every_server_gets_every_repetition() -> None:
    calls: list[tuple[str, int]] = []

    def step(name: str) -> Step:
        def run(i: int) -> float:
            calls.append((name, i))
            return float(i)
        return run

    outcomes = interleaved("op", {n: step(n) for n in "abc"}, Budget(reps=4, seconds=60), warm_up=True)
    assert calls[:3] == [("a", -1), ("b", -1), ("c", -1)]  # the untimed warm-up, once each
    rounds = [calls[3 + 3 * r: 6 + 3 * r] for r in range(4)]
    assert [[n for n, _ in r] for r in rounds] == [list("abc"), list("bca"), list("cab"), list("abc")]
    assert all({i for _, i in r} == {k} for k, r in enumerate(rounds))
    for name in "abc":
        assert outcomes[name].status == "ok"
        assert outcomes[name].samples_ms == [0.0, 1.0, 2.0, 3.0]  # warm-up not sampled
        assert "interleaved with 2 peer(s)" in outcomes[name].detail


def test_a_slow_server_is_time_boxed_alone() -> None:
    def slow(_i: int) -> float:
        time.sleep(0.03)
        return 30.0

    def fast(_i: int) -> float:
        return 1.0

    outcomes = interleaved("op", {"slow": slow, "fast": fast},
                           Budget(reps=10, seconds=0.05, min_reps=3), warm_up=False)
    # The slow one spent past its 0.05 s once its 3 repetitions were done; the fast one went on.
    assert len(outcomes["slow"].samples_ms) == 3
    assert outcomes["slow"].detail.startswith("time-boxed: 3 of 10")
    assert len(outcomes["fast"].samples_ms) == 10
    assert outcomes["fast"].status == "ok" and "time-boxed" not in outcomes["fast"].detail


def test_a_wrong_answer_fails_that_server_only() -> None:
    def wrong(i: int) -> float:
        if i == 1:
            raise CheckFailed("week query: 3 events, expected 4")
        return 2.0

    def right(_i: int) -> float:
        return 1.0

    outcomes = interleaved("op", {"wrong": wrong, "right": right}, Budget(reps=5, seconds=60), warm_up=False)
    assert outcomes["wrong"].failed
    assert "expected 4" in outcomes["wrong"].detail
    assert outcomes["wrong"].samples_ms == [2.0]
    assert outcomes["right"].samples_ms == [1.0] * 5 and not outcomes["right"].failed


def test_settle_waits_for_the_server_that_answered_last() -> None:
    events: list[str] = []

    def step(name: str) -> Step:
        def run(_i: int) -> float:
            events.append(f"step {name}")
            return 1.0
        return run

    interleaved("op", {n: step(n) for n in "ab"}, Budget(reps=2, seconds=60), warm_up=False,
                settle=lambda name: events.append(f"settle {name}"))
    assert events == ["step a", "settle a", "step b", "settle b", "step b", "settle b", "step a"]
