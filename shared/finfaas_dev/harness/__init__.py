"""Runs one function folder the way the OpenFaaS python3-http image does, as a local process.

`python -m finfaas_dev.harness --function-dir functions/auth --port 5000` serves the handler
through the template's index.py under waitress. The local gateway starts it with an inherited
listening socket (--listen-fd) and a readiness pipe (--ready-fd) so there is no port race and
no polling: the gateway knows the address before the process exists, and is told when the
handler has been imported.
"""

from finfaas_dev.harness.launch import (
    FUNCTION_PACKAGE,
    READY_MESSAGE,
    harness_command,
    install_function_package,
)

__all__ = ["FUNCTION_PACKAGE", "READY_MESSAGE", "harness_command", "install_function_package"]
