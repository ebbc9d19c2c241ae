"""moto in server mode as a child process of EmbeddedAWS: `python -m finfaas_dev.moto_runner`.

Same server as `moto_server`, plus two things the launcher needs: it exits when its standard
input closes (the parent died, even by SIGKILL), and it can serialize requests (see SerializedApp).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading

PARENT_GONE_EXIT_CODE = 0


def _exit_when_stdin_closes() -> None:
    def watch() -> None:
        while sys.stdin.buffer.read(1):
            pass
        os._exit(PARENT_GONE_EXIT_CODE)  # no clean-up to run: all state is in memory

    threading.Thread(target=watch, name="parent-watcher", daemon=True).start()


class SerializedApp:
    """WSGI wrapper that runs one request at a time, because moto's backends are not thread-safe.

    Seen here: two concurrent ReceiveMessage calls handed out the same message. An SQS long poll
    gives the lock up while it sleeps (see _release_lock_while_long_polling), so one waiting
    receiver never stalls the rest of the server.
    """

    def __init__(self, app, lock: threading.Lock) -> None:
        self._app = app
        self._lock = lock

    def __call__(self, environ, start_response):
        with self._lock:
            # Build the whole body inside the lock: a lazy iterable would run after release.
            return list(self._app(environ, start_response))


def _release_lock_while_long_polling(lock: threading.Lock) -> None:
    from moto.sqs.models import Queue

    wait_for_messages = Queue.wait_for_messages

    def wait_unlocked(queue, timeout: int) -> None:
        lock.release()
        try:
            wait_for_messages(queue, timeout)
        finally:
            lock.acquire()

    Queue.wait_for_messages = wait_unlocked


# The first CloudFormation request imports every backend CloudFormation knows (about 1.8 s here);
# importing them while DynamoDB Local's JVM boots takes that off the first deploy.
PRELOAD_MODULES = ("moto.cloudformation.parsing", "moto.cloudformation.responses",
                   "moto.sqs.responses", "moto.kms.responses")


def _preload_in_background() -> None:
    def preload() -> None:
        for name in PRELOAD_MODULES:
            importlib.import_module(name)

    threading.Thread(target=preload, name="preload", daemon=True).start()


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="moto_runner")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--serialize", action="store_true", help="handle one request at a time")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.exit_on_stdin_eof:
        _exit_when_stdin_closes()
    # moto reads MOTO_PORT to build the queue URLs it hands out.
    os.environ["MOTO_PORT"] = str(args.port)
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    # A line per request grows the log without bound under load; errors are still logged.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = DomainDispatcherApplication(create_backend_app)
    _preload_in_background()
    if args.serialize:
        lock = threading.Lock()
        _release_lock_while_long_polling(lock)
        app = SerializedApp(app, lock)
    run_simple(
        args.host,
        args.port,
        app,
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
