"""The execution page's graph: a layered layout from StartAt, coloured by what the history says."""

from __future__ import annotations

from finfaas.services.console import graph

DEFINITION = {
    "StartAt": "Check",
    "States": {
        "Check": {"Type": "Choice", "Default": "Pay",
                  "Choices": [{"Variable": "$.big", "BooleanEquals": True, "Next": "Review"}]},
        "Review": {"Type": "Task", "Next": "Pay", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Fail"}]},
        "Pay": {"Type": "Task", "End": True},
        "Fail": {"Type": "Fail"},
        "Orphan": {"Type": "Pass", "End": True},
    },
}


def test_states_are_layered_by_their_distance_from_the_start():
    at = {box.name: box for box in graph.layout(DEFINITION)}

    assert at["Check"].y < at["Review"].y == at["Pay"].y < at["Fail"].y < at["Orphan"].y
    assert at["Review"].x != at["Pay"].x  # side by side, not on top of each other


def test_choice_branches_default_and_catch_are_all_edges():
    kinds = {(e.source, e.target, e.kind) for e in graph.edges_of(DEFINITION["States"])}

    assert kinds == {("Check", "Review", "choice"), ("Check", "Pay", "default"), ("Review", "Pay", "next"),
                     ("Review", "Fail", "catch")}


def test_the_path_taken_is_bold_and_states_are_coloured_by_outcome():
    events = [
        {"type": "StateEntered", "state": "Check"}, {"type": "StateExited", "state": "Check"},
        {"type": "StateEntered", "state": "Review"}, {"type": "TaskFailed", "state": "Review"},
        {"type": "StateExited", "state": "Review", "detail": {"caught": "States.TaskFailed"}},
        {"type": "StateEntered", "state": "Fail"}, {"type": "ExecutionFailed", "state": "Fail"},
    ]

    drawn = graph.svg(DEFINITION, events)

    assert 'data-state="Check" data-outcome="succeeded"' in drawn
    assert 'data-state="Review" data-outcome="caught"' in drawn
    assert 'data-state="Fail" data-outcome="failed"' in drawn
    assert 'data-state="Pay" data-outcome="unvisited"' in drawn
    assert drawn.count("taken") == 2  # Check -> Review, Review -> Fail


def test_a_state_name_cannot_inject_markup():
    name = "<script>x</script>"
    hostile = {"StartAt": name, "States": {name: {"Type": "Pass", "End": True}}}

    assert "<script>" not in graph.svg(hostile)


def test_the_state_an_execution_succeeded_in_is_succeeded_not_current():
    events = [{"type": "StateEntered", "state": "Pay"}, {"type": "ExecutionSucceeded", "state": "Pay"}]

    assert graph.outcomes(events)[0] == {"Pay": graph.SUCCEEDED}
