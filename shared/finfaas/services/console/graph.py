"""A state machine drawn as a graph: a layered layout from StartAt, rendered as SVG on the server."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

box_width_px = 180
box_height_px = 36
column_gap_px = 24
layer_gap_px = 56
margin_px = 12
label_chars_max = 24
states_max = 200  # a definition with more is drawn in part; the table below the graph has every event

CAUGHT, SUCCEEDED, FAILED, CURRENT = "caught", "succeeded", "failed", "current"
FAILED_EVENTS = ("TaskFailed", "ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # next, default, choice, catch


@dataclass(frozen=True)
class Box:
    name: str
    kind: str
    x: int
    y: int


def edges_of(states: Mapping[str, Any]) -> list[Edge]:
    """Next, Default, every Choice's Next and every Catch's Next, in the definition's order."""
    edges: list[Edge] = []
    for name, state in states.items():
        if not isinstance(state, Mapping):
            continue
        if isinstance(state.get("Next"), str):
            edges.append(Edge(name, state["Next"], "next"))
        for choice in state.get("Choices") or ():
            if isinstance(choice, Mapping) and isinstance(choice.get("Next"), str):
                edges.append(Edge(name, choice["Next"], "choice"))
        if isinstance(state.get("Default"), str):
            edges.append(Edge(name, state["Default"], "default"))
        for catcher in state.get("Catch") or ():
            if isinstance(catcher, Mapping) and isinstance(catcher.get("Next"), str):
                edges.append(Edge(name, catcher["Next"], "catch"))
    return [edge for edge in edges if edge.target in states]


def layout(definition: Mapping[str, Any]) -> list[Box]:
    """Each state in the layer of its shortest distance from StartAt; unreachable states below them."""
    states = definition.get("States") or {}
    start = definition.get("StartAt")
    names = list(states)[:states_max]
    successors: dict[str, list[str]] = {name: [] for name in names}
    for edge in edges_of(states):
        if edge.source in successors and edge.target in successors:
            successors[edge.source].append(edge.target)
    layer: dict[str, int] = {}
    if start in successors:
        layer[start] = 0
        queue = deque([start])
        while queue:
            name = queue.popleft()
            for target in successors[name]:
                if target not in layer:
                    layer[target] = layer[name] + 1
                    queue.append(target)
    deepest = max(layer.values(), default=-1)
    for name in names:
        layer.setdefault(name, deepest + 1)
    boxes: list[Box] = []
    columns: dict[int, int] = {}
    for name in sorted(names, key=lambda n: (layer[n], names.index(n))):
        column = columns.get(layer[name], 0)
        columns[layer[name]] = column + 1
        x = margin_px + column * (box_width_px + column_gap_px)
        y = margin_px + layer[name] * (box_height_px + layer_gap_px)
        boxes.append(Box(name, str(states[name].get("Type", "")), x, y))
    return boxes


def outcomes(events: Iterable[Mapping[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """Each visited state's outcome from the history, and the states in the order they were entered.

    A state left through a Catch is CAUGHT; one that failed and was not left is FAILED (a retry that
    succeeds leaves it SUCCEEDED)."""
    outcome: dict[str, str] = {}
    path: list[str] = []
    for event in events:
        state, kind = event.get("state"), str(event.get("type", ""))
        if not isinstance(state, str):
            continue
        detail = event.get("detail") or {}
        if kind == "StateEntered":
            path.append(state)
            outcome[state] = CURRENT
        elif kind in FAILED_EVENTS:
            outcome[state] = FAILED
        elif kind == "ExecutionSucceeded":  # a Succeed or End state is never exited
            outcome[state] = SUCCEEDED
        elif kind == "StateExited":
            outcome[state] = CAUGHT if isinstance(detail, Mapping) and "caught" in detail else SUCCEEDED
    return outcome, path


def svg(definition: Mapping[str, Any], events: Iterable[Mapping[str, Any]] = ()) -> str:
    """The graph as an inline SVG: boxes coloured by outcome, edges of the path taken drawn bold."""
    boxes = layout(definition)
    at = {box.name: box for box in boxes}
    outcome, path = outcomes(events)
    taken = set(zip(path, path[1:], strict=False))
    width = max((box.x for box in boxes), default=0) + box_width_px + margin_px
    height = max((box.y for box in boxes), default=0) + box_height_px + margin_px
    parts = [f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="state machine">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
             'markerHeight="6" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>']
    for edge in edges_of(definition.get("States") or {}):
        source, target = at.get(edge.source), at.get(edge.target)
        if source is None or target is None:
            continue
        x1, y1 = source.x + box_width_px // 2, source.y + box_height_px
        x2, y2 = target.x + box_width_px // 2, target.y
        if target.y <= source.y:  # back or sideways: leave from the side
            x1, y1 = source.x + box_width_px, source.y + box_height_px // 2
        css = f"edge {edge.kind}" + (" taken" if (edge.source, edge.target) in taken else "")
        parts.append(f'<line class="{css}" x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" '
                     'marker-end="url(#arrow)"/>')
    for box in boxes:
        state_class = outcome.get(box.name, "unvisited")
        label = box.name if len(box.name) <= label_chars_max else box.name[: label_chars_max - 1] + "…"
        parts.append(
            f'<g class="state {state_class}" data-state="{escape(box.name)}" data-outcome="{state_class}">'
            f"<title>{escape(box.name)} ({escape(box.kind)}): {state_class}</title>"
            f'<rect x="{box.x}" y="{box.y}" width="{box_width_px}" height="{box_height_px}" rx="6"/>'
            f'<text x="{box.x + box_width_px // 2}" y="{box.y + box_height_px // 2 + 5}" '
            f'text-anchor="middle">{escape(label)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def state_inputs_and_outputs(events: Iterable[Mapping[str, Any]],
                             execution_input: Any) -> list[dict[str, Any]]:
    """Each state left, in order, with its input (the execution's input, then the previous state's output)
    and its output, from the outputs the orchestrator keeps in StateExited events (a large one by size)."""
    rows: list[dict[str, Any]] = []
    current: dict[str, Any] = {"input": execution_input}
    for event in events:
        detail = event.get("detail") or {}
        if event.get("type") != "StateExited" or not isinstance(detail, Mapping):
            continue
        row = {"state": event.get("state"), **current}
        if "output" in detail:
            row["output"] = detail["output"]
            current = {"input": detail["output"]}
        else:
            row["output_bytes"] = detail.get("output_bytes")
            current = {"input_bytes": detail.get("output_bytes")}
        rows.append(row)
    return rows
