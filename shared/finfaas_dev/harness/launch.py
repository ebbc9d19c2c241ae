"""Prepares a function process (package `function`, listener, parent watch) and serves index.app."""

from __future__ import annotations

import argparse
import ctypes
import importlib
import importlib.machinery
import importlib.util
import logging
import os
import signal
import socket
import sys
import types
from pathlib import Path

FUNCTION_PACKAGE = "function"  # `from function import handler`, as in the python3-http image
READY_MESSAGE = b"ready\n"
LOOPBACK_HOST = "127.0.0.1"
LISTEN_BACKLOG_CONNECTIONS = 1024
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def harness_command(
    function_dir: Path,
    *,
    port: int | None = None,
    listen_fd: int | None = None,
    ready_fd: int | None = None,
    parent_pid: int | None = None,
) -> list[str]:
    """The argv that starts a function process with this interpreter."""
    command = [sys.executable, "-m", "finfaas_dev.harness", "--function-dir", str(function_dir)]
    if port is not None:
        command += ["--port", str(port)]
    if listen_fd is not None:
        command += ["--listen-fd", str(listen_fd)]
    if ready_fd is not None:
        command += ["--ready-fd", str(ready_fd)]
    if parent_pid is not None:
        command += ["--parent-pid", str(parent_pid)]
    return command


def install_function_package(function_dir: Path) -> types.ModuleType:
    """Make `function` the given folder, so `from function import handler` and relative imports work."""
    function_dir = Path(function_dir).resolve()
    if not (function_dir / "handler.py").is_file():
        raise FileNotFoundError(f"{function_dir}/handler.py not found")
    init_file = function_dir / "__init__.py"
    if init_file.is_file():
        spec = importlib.util.spec_from_file_location(
            FUNCTION_PACKAGE, init_file, submodule_search_locations=[str(function_dir)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[FUNCTION_PACKAGE] = module
        spec.loader.exec_module(module)
        return module
    # The image build touches an empty __init__.py; an empty package module is the same thing.
    spec = importlib.machinery.ModuleSpec(FUNCTION_PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [str(function_dir)]
    module = importlib.util.module_from_spec(spec)
    sys.modules[FUNCTION_PACKAGE] = module
    return module


def exit_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGTERM us when the gateway dies, so a killed gateway leaves no orphans."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(0)


def listening_socket(port: int | None, listen_fd: int | None) -> socket.socket:
    if listen_fd is not None:
        return socket.socket(fileno=listen_fd)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK_HOST, port or 0))
    sock.listen(LISTEN_BACKLOG_CONNECTIONS)
    return sock


def _signal_ready(ready_fd: int | None) -> None:
    if ready_fd is None:
        return
    with os.fdopen(ready_fd, "wb", buffering=0) as pipe:
        pipe.write(READY_MESSAGE)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m finfaas_dev.harness", description=__doc__)
    parser.add_argument("--function-dir", type=Path, required=True, help="folder holding handler.py")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="listen on 127.0.0.1:PORT (0: any free port)")
    where.add_argument("--listen-fd", type=int, help="serve an inherited listening socket")
    parser.add_argument("--ready-fd", type=int, help="write a line here once the handler is imported")
    parser.add_argument("--parent-pid", type=int, help="exit when this parent process dies")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.parent_pid is not None:
        exit_with_parent(args.parent_pid)
    install_function_package(args.function_dir)
    sock = listening_socket(args.port, args.listen_fd)
    from waitress import create_server  # imported with the app, as the template does

    index = importlib.import_module("finfaas_dev.harness.index")
    logging.basicConfig()  # what waitress.serve() does before serving
    server = create_server(index.app, sockets=[sock], **index.server_options())
    server.print_listen("Serving on http://{}:{}")
    _signal_ready(args.ready_fd)
    server.run()
    return 0
