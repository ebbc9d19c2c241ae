"""`finfaas secrets create`: every secret stack.yml names, fresh, in a folder, and the commands that
load them into a cluster (faas-cli on OpenFaaS, kubectl on Knative). Existing files are kept, so the
command is safe to run again; the folder is owner-only and never committed."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from finfaas_dev import stackfile

OPENFAAS_NAMESPACE_DEFAULT = "openfaas-fn"
TARGETS = ("openfaas", "knative")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, required=True, help="folder to write the secrets into")
    parser.add_argument("--target", choices=TARGETS, required=True)
    parser.add_argument("--namespace", help="the functions' namespace (openfaas-fn; Knative: required)")
    parser.add_argument("--stack", type=Path, default=Path("stack.yml"))


def secret_names(stack: stackfile.Stack) -> list[str]:
    """Every secret any function of the stack mounts."""
    return sorted({name for fn in stack.functions.values() for name in fn.secrets})


def load_commands(names: list[str], folder: Path, target: str, namespace: str) -> list[str]:
    """One command per secret; each Secret holds one key named as the secret, as functions read it."""
    commands = []
    for name in names:
        path = shlex.quote(str(folder / name))
        if target == "openfaas":
            commands.append(f"faas-cli secret create {name} --from-file {path} --namespace {namespace}")
        else:
            commands.append(f"kubectl create secret generic {name} -n {namespace} --from-file={name}={path}")
    return commands


def run(args: argparse.Namespace) -> int:
    from finfaas_dev.up import ensure_local_secrets

    stack = stackfile.load_stack(args.stack)
    namespace = args.namespace or (OPENFAAS_NAMESPACE_DEFAULT if args.target == "openfaas" else None)
    if namespace is None:
        print("finfaas secrets create: --namespace is required for knative (the overlay's)", file=sys.stderr)
        return 2
    args.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ensure_local_secrets(args.dir, out=lambda line: print(line, file=sys.stderr))
    names = secret_names(stack)
    missing = [name for name in names if not (args.dir / name).is_file()]
    if missing:
        print(f"finfaas secrets create: no generator for {', '.join(missing)}", file=sys.stderr)
        return 1
    print("\n".join(load_commands(names, args.dir, args.target, namespace)))
    return 0
