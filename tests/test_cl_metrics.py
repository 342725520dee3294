"""CL metrics pinned against matrices computed by hand (docs/metrics.md, 1-based in comments)."""

from __future__ import annotations

import json

import pytest

from retain.evaluation.cl_metrics import (
    METRIC_DEFINITIONS,
    AccuracyMatrix,
    GeneralScores,
    compute_cl_metrics,
)


def value(metrics: dict, key: str):
    return metrics[key]["value"]


def three_task_matrix(directions=(True, True, True), rows=None) -> AccuracyMatrix:
    matrix = AccuracyMatrix(["A", "B", "C"], list(directions))
    rows = rows or [
        [10.0, 20.0, 30.0],  # row 0: before training (b)
        [80.0, 25.0, 35.0],  # after A
        [85.0, 92.0, 40.0],  # after B (A improves: a[2][1] = 85 > a[1][1] = 80)
        [60.0, 80.0, 94.0],  # after C (final row)
    ]
    matrix.add_initial_row(rows[0])
    for i, row in enumerate(rows[1:]):
        matrix.add_training_row(i, row)
    return matrix


def test_every_metric_on_a_hand_computed_matrix():
    m = compute_cl_metrics(
        three_task_matrix(),
        single_task_scores=[90.0, 90.0, 90.0],
        general=GeneralScores(
            ["wiki_ppl", "mmlu"], [False, True],
            rows=[[20.0, 40.0], [21.0, 41.0], [23.0, 42.0], [25.0, 43.0]],
        ),
    )
    # AP = (60 + 80 + 94) / 3 = 234 / 3 = 78
    assert value(m, "ap") == pytest.approx(78.0)
    # AP_t: t=1: 80; t=2: (85 + 92) / 2 = 88.5; t=3: 78
    assert m["ap_t"] == pytest.approx([80.0, 88.5, 78.0])
    # BWT (GEM) = ((60 - 80) + (80 - 92)) / (3 - 1) = (-20 - 12) / 2 = -16
    assert value(m, "bwt") == pytest.approx(-16.0)
    # BWT (TRACE) = ((60 - 80) + (80 - 92) + (94 - 94)) / 3 = -32 / 3
    assert value(m, "bwt_trace") == pytest.approx(-32.0 / 3)
    # Forgetting: A: max(80, 85) - 60 = 25; B: max(92) - 80 = 12 -> (25 + 12) / 2 = 18.5
    assert value(m, "forgetting") == pytest.approx(18.5)
    # FWT (GEM): B: a[1][2] - b[2] = 25 - 20 = 5; C: a[2][3] - b[3] = 40 - 30 = 10 -> 15 / 2 = 7.5
    assert value(m, "fwt") == pytest.approx(7.5)
    # FWT vs single-task: (80 - 90) + (92 - 90) + (94 - 90) = -10 + 2 + 4 = -4 -> -4 / 3
    assert value(m, "fwt_single_task") == pytest.approx(-4.0 / 3)
    # General: wiki_ppl (lower better): -(25 - 20) = -5; mmlu: 43 - 40 = 3 -> (-5 + 3) / 2 = -1
    assert value(m, "general_delta") == pytest.approx(-1.0)


def test_every_metric_names_its_definition_and_is_json_friendly():
    m = compute_cl_metrics(three_task_matrix())
    for key in METRIC_DEFINITIONS:
        assert set(m[key]) == {"value", "definition"}
        assert m[key]["definition"]
    assert "TRACE" in m["bwt_trace"]["definition"]
    assert "GEM" in m["bwt"]["definition"]
    json.dumps(m)  # no NaN/objects


def test_missing_optional_inputs_are_none_not_zero():
    m = compute_cl_metrics(three_task_matrix())
    assert value(m, "fwt_single_task") is None
    assert value(m, "general_delta") is None


def test_lower_is_better_columns_flip_signs_and_use_min():
    # A and B are perplexities (lower is better), C is accuracy.
    matrix = three_task_matrix(
        directions=(False, False, True),
        rows=[
            [50.0, 60.0, 30.0],  # before training
            [12.0, 55.0, 35.0],  # after A
            [10.0, 14.0, 40.0],  # after B
            [18.0, 20.0, 94.0],  # after C
        ],
    )
    m = compute_cl_metrics(matrix, single_task_scores=[11.0, 15.0, 90.0])
    # AP is the plain mean of the final row: (18 + 20 + 94) / 3 = 44
    assert value(m, "ap") == pytest.approx(44.0)
    # AP_t: 12; (10 + 14) / 2 = 12; 44
    assert m["ap_t"] == pytest.approx([12.0, 12.0, 44.0])
    # BWT: A: -(18 - 12) = -6; B: -(20 - 14) = -6 -> -12 / 2 = -6 (negative = forgetting)
    assert value(m, "bwt") == pytest.approx(-6.0)
    # BWT (TRACE) = -12 / 3 = -4
    assert value(m, "bwt_trace") == pytest.approx(-4.0)
    # Forgetting with min: A: 18 - min(12, 10) = 8; B: 20 - min(14) = 6 -> 14 / 2 = 7
    # (with max it would be A: 18 - 12 = 6 -> 6)
    assert value(m, "forgetting") == pytest.approx(7.0)
    # FWT: B: -(a[1][2] - b[2]) = -(55 - 60) = 5; C: a[2][3] - b[3] = 40 - 30 = 10 -> 15 / 2 = 7.5
    # (without the sign flip B would give -5 -> 2.5)
    assert value(m, "fwt") == pytest.approx(7.5)
    # FWT vs single-task: A: -(12 - 11) = -1; B: -(14 - 15) = 1; C: 94 - 90 = 4 -> 4 / 3
    assert value(m, "fwt_single_task") == pytest.approx(4.0 / 3)


def test_single_task_stream_has_no_bwt_forgetting_or_fwt():
    matrix = AccuracyMatrix(["A"], [True])
    matrix.add_initial_row([10.0])
    matrix.add_training_row(0, [80.0])
    m = compute_cl_metrics(matrix, single_task_scores=[75.0])
    assert value(m, "ap") == pytest.approx(80.0)
    for key in ("bwt", "bwt_trace", "forgetting", "fwt"):
        assert value(m, key) is None, key
    assert value(m, "fwt_single_task") == pytest.approx(5.0)  # (80 - 75) / 1
    assert m["ap_t"] == [80.0]


def test_without_row_zero_fwt_is_none_but_the_rest_is_defined():
    matrix = AccuracyMatrix(["A", "B", "C"], [True, True, True])
    matrix.add_training_row(0, [80.0, 25.0, 35.0])
    matrix.add_training_row(1, [85.0, 92.0, 40.0])
    matrix.add_training_row(2, [60.0, 80.0, 94.0])
    m = compute_cl_metrics(matrix)
    assert value(m, "fwt") is None
    assert value(m, "ap") == pytest.approx(78.0)
    assert value(m, "bwt") == pytest.approx(-16.0)
    assert value(m, "forgetting") == pytest.approx(18.5)


def test_multi_task_single_row():
    matrix = AccuracyMatrix(["A", "B", "C"], [True, True, True])
    matrix.add_initial_row([10.0, 20.0, 30.0])
    matrix.add_training_row(2, [70.0, 80.0, 90.0], label="after multi-task training")
    m = compute_cl_metrics(matrix, single_task_scores=[90.0, 90.0, 90.0])
    assert value(m, "ap") == pytest.approx(80.0)  # (70 + 80 + 90) / 3
    assert m["ap_t"] == pytest.approx([80.0])
    for key in ("bwt", "bwt_trace", "forgetting", "fwt", "fwt_single_task"):
        assert value(m, key) is None, key


def test_partial_run_uses_the_tasks_trained_so_far():
    matrix = three_task_matrix()
    matrix.rows.pop()
    matrix.row_labels.pop()
    matrix.phase_task_index.pop()
    m = compute_cl_metrics(matrix)
    # T = 2: AP = (85 + 92) / 2 = 88.5; BWT = 85 - 80 = 5; Forgetting = max(80) - 85 = -5
    assert value(m, "ap") == pytest.approx(88.5)
    assert value(m, "bwt") == pytest.approx(5.0)
    assert value(m, "bwt_trace") == pytest.approx(2.5)
    assert value(m, "forgetting") == pytest.approx(-5.0)
    assert value(m, "fwt") == pytest.approx(5.0)  # 25 - 20


def test_missing_cell_makes_the_metric_none():
    matrix = three_task_matrix()
    matrix.rows[1][0] = None  # a[1][1] not evaluated
    m = compute_cl_metrics(matrix)
    assert value(m, "bwt") is None
    assert value(m, "forgetting") is None
    assert value(m, "ap") == pytest.approx(78.0)


def test_empty_matrix_has_no_metrics():
    matrix = AccuracyMatrix(["A", "B"], [True, True])
    m = compute_cl_metrics(matrix)
    assert all(value(m, key) is None for key in METRIC_DEFINITIONS)
    assert m["ap_t"] == []


def test_general_delta_needs_two_rows():
    general = GeneralScores(["mmlu"], [True], rows=[[40.0]])
    assert value(compute_cl_metrics(three_task_matrix(), general=general), "general_delta") is None


def test_matrix_round_trips_through_dict_and_rejects_inconsistency():
    matrix = three_task_matrix(directions=(True, False, True))
    matrix.rows[2][2] = None
    again = AccuracyMatrix.from_dict(json.loads(json.dumps(matrix.to_dict())))
    assert again == matrix
    with pytest.raises(ValueError):
        matrix.add_training_row(1, [1.0, 2.0, 3.0])  # indices must increase
    assert len(matrix.rows) == 4  # the refused row was not kept
    with pytest.raises(ValueError):
        AccuracyMatrix(["A"], [True], ["x"], [[1.0, 2.0]], False, [0])
    with pytest.raises(ValueError):
        matrix.add_training_row(2, {"Z": 1.0})
    with pytest.raises(ValueError):
        compute_cl_metrics(matrix, single_task_scores=[1.0])


def test_matrix_can_announce_row_zero_before_it_is_scored():
    matrix = AccuracyMatrix(["A", "B"], [True, True], [], [], has_initial_row=True, phase_task_index=[])
    assert matrix.initial_row is None and matrix.training_rows == []
    assert compute_cl_metrics(matrix)["ap_t"] == []


def test_rows_by_task_name():
    matrix = AccuracyMatrix(["A", "B"], [True, True])
    matrix.add_training_row(0, {"A": 70.0})
    assert matrix.rows == [[70.0, None]]
    assert matrix.row_labels == ["after A"]
