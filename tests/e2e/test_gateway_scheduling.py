"""The gateway yields the CPU to functions; the functions themselves run under the default policy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from pathlib import Path

import pytest
from finfaas_dev.gateway import yield_cpu_to_functions
from finfaas_dev.process_pool import start_function_process
from finfaas_dev.stackfile import FunctionSpec

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(60),
    pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="Linux scheduling policies"),
]

ECHO_DIR = Path(__file__).parent / "fixtures" / "echo"


def _policies_seen_from_a_batch_thread() -> tuple[int, set[int]]:
    """Start a function from a thread running as the gateway does; the policies of both sides."""
    seen: dict = {}

    async def start_and_look() -> None:
        spec = FunctionSpec(name="echo", lang="python3-http", handler_dir=ECHO_DIR, image="echo")
        process = await start_function_process(spec, dict(os.environ), subprocess.DEVNULL)
        try:
            threads = os.listdir(f"/proc/{process.pid}/task")
            seen["function"] = {os.sched_getscheduler(int(tid)) for tid in threads}
        finally:
            await process.stop()

    def gateway_thread() -> None:
        yield_cpu_to_functions()
        seen["gateway"] = os.sched_getscheduler(0)
        asyncio.run(start_and_look())

    thread = threading.Thread(target=gateway_thread)  # the test runner's own thread keeps its policy
    thread.start()
    thread.join()
    return seen["gateway"], seen["function"]


def test_functions_started_by_the_gateway_run_as_in_their_container():
    gateway_policy, function_policies = _policies_seen_from_a_batch_thread()

    assert gateway_policy == os.SCHED_BATCH
    assert function_policies == {os.SCHED_OTHER}  # every waitress thread too
