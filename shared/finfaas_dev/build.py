"""Deployment artefacts derived from stack.yml: Knative Services and faas-cli build contexts.

stack.yml is the single source of truth for the function list, so the Knative manifests in
infra/knative/ are generated from it (`finfaas build --knative`) and a test keeps them in sync.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from finfaas_dev.image_requirements import check_stack

KNATIVE_DIR = Path("infra/knative")
KNATIVE_NAMESPACE = "finfaas"
CONTAINER_PORT = 8080  # of-watchdog listens here inside the python3-http image
SECRETS_MOUNT = "/var/openfaas/secrets"  # same path as OpenFaaS, so config.read_secret works unchanged
MAX_SCALE_DEFAULT = "20"
TARGET_CONCURRENCY_DEFAULT = "50"
SCALE_DOWN_DELAY_DEFAULT = "0s"
# What differs on Knative from stack.yml's OpenFaaS values. The caller's address: Kourier (with
# config-kourier `use-remote-address: "true"`) and Istio's ingress gateway are Envoy at the edge,
# which sets X-Envoy-External-Address to the peer it saw; X-Forwarded-For would not do, as waitress
# drops it inside the python3-http image.
KNATIVE_ENVIRONMENT = {"FINFAAS_CLIENT_IP_HEADER": "X-Envoy-External-Address"}


def load_stack(path: Path = Path("stack.yml")) -> dict:
    with path.open() as f:
        return yaml.safe_load(f)


def knative_service(name: str, fn: dict) -> dict:
    """A Knative Service that scales to zero, with the function's env and OpenFaaS-style secrets."""
    environment = {**(fn.get("environment") or {}), **KNATIVE_ENVIRONMENT}
    env = [{"name": k, "value": str(v)} for k, v in sorted(environment.items())]
    secrets = fn.get("secrets") or []
    container: dict = {
        "name": "function",
        "image": fn["image"],
        "ports": [{"containerPort": CONTAINER_PORT}],
        "env": env,
        "readinessProbe": {"httpGet": {"path": "/_/ready", "port": CONTAINER_PORT}},
        "livenessProbe": {"httpGet": {"path": "/_/health", "port": CONTAINER_PORT}},
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
    }
    spec: dict = {"containers": [container]}
    if secrets:
        container["volumeMounts"] = [{"name": "secrets", "mountPath": SECRETS_MOUNT, "readOnly": True}]
        spec["volumes"] = [
            {"name": "secrets", "projected": {"sources": [{"secret": {"name": s}} for s in secrets]}}
        ]
    labels = fn.get("labels") or {}
    annotations = {
        "autoscaling.knative.dev/min-scale": "0",
        "autoscaling.knative.dev/max-scale": MAX_SCALE_DEFAULT,
        "autoscaling.knative.dev/target": TARGET_CONCURRENCY_DEFAULT,
        "autoscaling.knative.dev/scale-down-delay": SCALE_DOWN_DELAY_DEFAULT,
    }
    if "com.openfaas.scale.zero-duration" in labels:
        annotations["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] = labels[
            "com.openfaas.scale.zero-duration"
        ]
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": KNATIVE_NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "finfaas"},
        },
        "spec": {"template": {"metadata": {"annotations": annotations}, "spec": spec}},
    }


def knative_manifests(stack: dict) -> dict[str, str]:
    """File name -> YAML text for every function in the stack, and each scheduled one's CronJob."""
    header = "# Generated from stack.yml by `finfaas build --knative`; edit stack.yml instead.\n"
    manifests = {
        f"{name}.yaml": header + yaml.safe_dump(knative_service(name, fn), sort_keys=False)
        for name, fn in sorted(stack["functions"].items())
    }
    return {**manifests, **schedule_manifests(stack, KNATIVE, header)}


def write_knative(stack: dict, folder: Path = KNATIVE_DIR) -> list[Path]:
    return _write(folder, knative_manifests(stack))


def _write(folder: Path, manifests: dict[str, str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, text in manifests.items():
        path = folder / file_name
        path.write_text(text)
        written.append(path)
    return written


# Scheduled entry points take only a signed tick (finfaas.platform.schedule), which neither OpenFaaS's
# cron-connector nor Knative's PingSource can make: a CronJob runs the function's own image to send it.
SCHEDULE_ANNOTATION = "com.finfaas.schedule"  # a cron expression; not the cron-connector's `schedule`
OPENFAAS, KNATIVE = "openfaas", "knative"
OPENFAAS_DIR = Path("infra/openfaas")
OPENFAAS_FUNCTION_NAMESPACE = "openfaas-fn"
SCHEDULE_KEY_SECRET = "schedule-hmac-key"  # noqa: S105 - the secret's name (platform.schedule's)
SCHEDULED_URLS = {
    OPENFAAS: "http://gateway.openfaas:8080/function/{name}",
    KNATIVE: "http://{name}." + KNATIVE_NAMESPACE + ".svc.cluster.local",  # the Service's cluster address
}
SCHEDULE_NAMESPACES = {OPENFAAS: OPENFAAS_FUNCTION_NAMESPACE, KNATIVE: KNATIVE_NAMESPACE}
SHARED_IN_IMAGE = "/home/app/function/shared"  # configuration.copy puts ./shared/finfaas in it
tick_deadline_seconds = 120  # a tick waits for the run it starts (the relay's 50 s); then the Job gives up


def schedule_cronjob(name: str, fn: dict, target: str) -> dict | None:
    """The CronJob that ticks a scheduled function on this target, or None if it has no schedule."""
    schedule = (fn.get("annotations") or {}).get(SCHEDULE_ANNOTATION)
    if not schedule:
        return None
    url = SCHEDULED_URLS[target].format(name=name)
    container = {
        "name": "tick",
        "image": fn["image"],
        "command": ["python", "-m", "finfaas.platform.schedule", name, url],
        "env": [{"name": "PYTHONPATH", "value": SHARED_IN_IMAGE}],
        "volumeMounts": [{"name": "secrets", "mountPath": SECRETS_MOUNT, "readOnly": True}],
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
    }
    pod = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "secrets", "secret": {"secretName": SCHEDULE_KEY_SECRET}}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": f"{name}-schedule",
            "namespace": SCHEDULE_NAMESPACES[target],
            "labels": {"app.kubernetes.io/part-of": "finfaas"},
        },
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",  # one run at a time is what the function wants anyway
            "startingDeadlineSeconds": 30,  # a missed minute is skipped, not made up in a burst
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {
                "backoffLimit": 0,  # the next minute's tick is the retry
                "activeDeadlineSeconds": tick_deadline_seconds,
                "template": {"spec": pod},
            }},
        },
    }


def schedule_manifests(stack: dict, target: str, header: str) -> dict[str, str]:
    """File name -> YAML text of each scheduled function's CronJob on this target."""
    manifests = {}
    for name, fn in sorted(stack["functions"].items()):
        cronjob = schedule_cronjob(name, fn, target)
        if cronjob is not None:
            manifests[f"{name}-schedule.yaml"] = header + yaml.safe_dump(cronjob, sort_keys=False)
    return manifests


def openfaas_schedule_manifests(stack: dict) -> dict[str, str]:
    header = "# Generated from stack.yml by `finfaas build --schedules`; edit stack.yml instead.\n"
    return schedule_manifests(stack, OPENFAAS, header)


BUILD_DIR = Path("build")
HANDLER_OVERLAY = "function"  # where faas-cli puts the handler inside the template's context
SKIPPED_HANDLER_ENTRIES = frozenset({"build", "template", "__pycache__"})
# The project's index.py (harness/index.py) replaces the template's: upstream, Flask answers OPTIONS,
# TRACE and paths its converter rejects with text/html before the handler runs.
TEMPLATE_INDEX = Path(__file__).resolve().parent / "harness" / "index.py"
TEMPLATE_DIR = Path("template/python3-http")  # where `faas-cli template store pull python3-http` puts it


def overlay_template_index(folder: Path) -> Path:
    """Write the project's index.py into a template folder or a build context (next to Dockerfile)."""
    target = Path(folder) / "index.py"
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder} does not exist: pull the python3-http template first")
    shutil.copy2(TEMPLATE_INDEX, target)
    return target


def _copy(source: Path, destination: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def function_build_context(name: str, stack: dict, root: Path, build_dir: Path) -> Path:
    """The `function/` part of a faas-cli build context, laid out as faas-cli's CreateBuildContext does:
    the handler folder's files, then every `configuration.copy` path at the same relative place."""
    context = build_dir / name
    if context.exists():
        shutil.rmtree(context)
    handler_dst = context / HANDLER_OVERLAY
    handler_dst.mkdir(parents=True)
    handler_src = root / stack["functions"][name]["handler"]
    for entry in sorted(handler_src.iterdir()):
        if entry.name not in SKIPPED_HANDLER_ENTRIES:
            _copy(entry, handler_dst / entry.name)
    for extra in (stack.get("configuration") or {}).get("copy") or []:
        source = (root / extra).resolve()
        if not source.is_relative_to(root.resolve()) or source == root.resolve():
            raise ValueError(f"copy path {extra!r} must be a folder inside the project")
        _copy(source, handler_dst / Path(extra))
    overlay_template_index(context)
    return context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--knative", action="store_true", help="write infra/knative/<fn>.yaml")
    parser.add_argument(
        "--schedules", action="store_true",
        help=f"write {OPENFAAS_DIR}/<fn>-schedule.yaml: CronJobs that tick scheduled functions on OpenFaaS",
    )
    parser.add_argument(
        "--shrinkwrap", action="store_true",
        help="lay out build/<fn>/function as `faas-cli build --shrinkwrap` does (handler + runtime package)",
    )
    parser.add_argument(
        "--template", action="store_true",
        help=f"put the project's index.py into {TEMPLATE_DIR} (after faas-cli template store pull)",
    )
    parser.add_argument(
        "--report", action="store_true",
        help="print, per function, the installed size of its requirements and the files shipped from shared/ "
             "(JSON)",
    )
    parser.add_argument("--stack", type=Path, default=Path("stack.yml"))
    parser.add_argument("--build-dir", type=Path, default=BUILD_DIR)


class RequirementsIncomplete(RuntimeError):
    """A function's requirements.txt misses what it imports (or pins less than it installs)."""


def check_requirements(stack: dict, root: Path) -> None:
    """Refuse a stack whose functions' images would lack a module their code imports."""
    problems = [problem for result in check_stack(stack, root) for problem in result.problems]
    if problems:
        raise RequirementsIncomplete("\n".join(problems))


def _distribution_bytes(name: str) -> int:
    files = importlib.metadata.distribution(name).files or []
    return sum(f.size or 0 for f in files)


def image_report(stack: dict, root: Path) -> dict[str, dict]:
    """Per function: what its requirements install (sizes as this virtualenv's RECORD files say, which
    are those of the same pinned wheels) and what the build context ships from shared/."""
    report = {}
    checked = {result.name: result for result in check_stack(stack, root)}
    with tempfile.TemporaryDirectory(prefix="finfaas-report-") as scratch:
        for name in sorted(stack["functions"]):
            result = checked[name]
            own = result.installed - result.template
            context = function_build_context(name, stack, root, Path(scratch))
            shipped = [p for p in (context / HANDLER_OVERLAY / "shared").rglob("*") if p.is_file()]
            report[name] = {
                "distributions": len(own),
                "requirements_bytes": sum(map(_distribution_bytes, own)),
                "template_bytes": sum(map(_distribution_bytes, result.template)),
                "shared_files": len(shipped),
                "shared_bytes": sum(p.stat().st_size for p in shipped),
                "tooling_files": sum(1 for p in shipped if "finfaas_dev" in p.parts),
            }
    return report


def run(args: argparse.Namespace) -> int:
    stack = load_stack(args.stack)
    root = args.stack.resolve().parent
    try:
        check_requirements(stack, root)
    except RequirementsIncomplete as error:
        print(f"finfaas build: refused, an image would miss what its function imports:\n{error}",
              file=sys.stderr)
        return 1
    if args.report:
        print(json.dumps(image_report(stack, root), indent=2, sort_keys=True))
    if args.knative:
        for path in write_knative(stack):
            print(path)
    if args.schedules:
        for path in _write(OPENFAAS_DIR, openfaas_schedule_manifests(stack)):
            print(path)
    if args.template:
        print(overlay_template_index(args.stack.resolve().parent / TEMPLATE_DIR))
    if args.shrinkwrap:
        for name in sorted(stack["functions"]):
            print(function_build_context(name, stack, args.stack.resolve().parent, args.build_dir))
    return 0
