"""Which tables, queues and key uses a function's code can reach: what its IAM policy must allow.

Read from the source, as image_requirements reads imports: over every runtime module the handler
reaches, a table is named by a module constant `..._LOGICAL_NAME = "<logical>"` or a literal
`resource_name("<logical>")`, a queue by `SqsQueue("<logical>")` or a constant `..._QUEUE`, and a
module holding the orchestrator's SQS tasks sends to the queues its state machines name. A
`KmsDataKeys(...)` call is direct use of the PII key (envelope encryption). Reachability is by
module, so the answer can be wider than what one request runs, never narrower.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

from finfaas_dev.image_requirements import reached_files, runtime_nodes

TABLE_CONSTANT_SUFFIX = "LOGICAL_NAME"
QUEUE_CONSTANT_SUFFIX = "_QUEUE"
QUEUE_CALLS = frozenset({"SqsQueue"})
TABLE_CALLS = frozenset({"resource_name"})
PII_KEY_CALLS = frozenset({"KmsDataKeys"})
SQS_TASKS_MODULE = Path("finfaas") / "workflow" / "tasks.py"
STATE_MACHINES = Path("infra") / "statemachines"


@dataclass(frozen=True)
class ResourceUse:
    """Logical names (finfaas-<stage>-<logical>) of the tables and queues, and direct key use."""

    tables: frozenset[str]
    queues: frozenset[str]
    pii_key: bool


def _callee(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    return node.func.attr if isinstance(node.func, ast.Attribute) else None


def _literal_argument(node: ast.Call) -> str | None:
    if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def _state_machine_queues(root: Path) -> set[str]:
    """Queue names at the end of the QueueUrl of every SQS task in the state machines."""
    found = set()
    for path in sorted((root / STATE_MACHINES).glob("*.asl.json")):
        pending = [json.loads(path.read_text())]
        while pending:
            value = pending.pop()
            if isinstance(value, dict):
                url = value.get("QueueUrl")
                if isinstance(url, str):
                    found.add(url.rstrip("/").rsplit("/", 1)[-1])
                pending.extend(value.values())
            elif isinstance(value, list):
                pending.extend(value)
    return found


def function_resources(handler: Path, root: Path) -> ResourceUse:
    """What the code the handler reaches names; root is the project (shared/, infra/)."""
    shared = root / "shared"
    tables: set[str] = set()
    queues: set[str] = set()
    pii_key = False
    for path in reached_files(handler, shared):
        if path.is_relative_to(shared) and path.relative_to(shared) == SQS_TASKS_MODULE:
            queues |= _state_machine_queues(root)
        for node in runtime_nodes(ast.parse(path.read_text())):
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                name = node.targets[0].id
                if name.endswith(TABLE_CONSTANT_SUFFIX):
                    tables.add(node.value.value)
                elif name.endswith(QUEUE_CONSTANT_SUFFIX):
                    queues.add(node.value.value)
            elif isinstance(node, ast.Call):
                callee, literal = _callee(node), _literal_argument(node)
                if callee in PII_KEY_CALLS:
                    pii_key = True
                elif literal is not None and callee in TABLE_CALLS:
                    tables.add(literal)
                elif literal is not None and callee in QUEUE_CALLS:
                    queues.add(literal)
    return ResourceUse(frozenset(tables), frozenset(queues), pii_key)
