"""The deployment table's goal lines, from rows with and without the interleaved timings."""

from benchmarks.deployment import GOAL, GOAL_ROUNDS, INTERLEAVED, PATCHCORE_1, _goal, goal_rows


def _row(model: str, precision: str, ms: float, **extra: object) -> dict:
    return {"model": model, "precision": precision, "ms_batch2": ms, "image_auroc": 83.0, **extra}


def test_goal_compares_each_bank_with_patchcore_and_counts_interleaved_rounds() -> None:
    ours, theirs = [20.0] * GOAL_ROUNDS, [25.0] * GOAL_ROUNDS
    ours[0] = 30.0  # one round lost
    rows = [
        _row(PATCHCORE_1, "OpenVINO FP32", 28.6),
        _row("Ldknn approximate (10% bank)", "OpenVINO FP32", 100.0),
        _row(GOAL[0], "OpenVINO FP32", 27.0),
        _row(GOAL[1], "OpenVINO FP32", 29.0),
        _row(GOAL[0], INTERLEAVED, 20.0, rounds_ms=ours),
        _row(GOAL[1], INTERLEAVED, 26.0, rounds_ms=[26.0] * GOAL_ROUNDS),
        _row(PATCHCORE_1, INTERLEAVED, 25.0, rounds_ms=theirs),
    ]
    text = _goal(rows)
    assert "- 10% bank: 100.0 ms against 28.6 ms, **not met**" in text
    assert "- 1% bank: 27.0 ms against 28.6 ms, met" in text
    assert f"- {GOAL[0]}: 20.0 ms against 25.0 ms, met" in text
    assert f"as fast or faster in {GOAL_ROUNDS - 1} of {GOAL_ROUNDS} rounds" in text
    assert f"- {GOAL[1]}: 26.0 ms against 25.0 ms, **not met**" in text
    assert f"as fast or faster in 0 of {GOAL_ROUNDS} rounds" in text


def test_goal_is_empty_without_patchcore_and_rounds_need_every_export(tmp_path) -> None:
    assert _goal([_row(GOAL[0], "OpenVINO FP32", 27.0)]) == ""
    (tmp_path / "0.xml").write_text("")
    assert goal_rows(tmp_path) == []
