"""NHS England's mesh-sandbox started for tests: `uvicorn mesh_sandbox.api:app` from this
interpreter over plain http with a file store, checking every NHSMESH HMAC header
(AUTH_MODE=full). Shared by the MESH integration tests and the mesh endpoint kind's e2e test;
if the sandbox cannot start the caller fails with its log, never skips.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

SHARED_KEY = "TestKey"  # the sandbox Dockerfile's key, and the one mesh-client's own tests use
PASSWORD = "password"  # every mailbox preloaded from mesh_sandbox/store/data/mailboxes.jsonl
HUB_MAILBOX = "X26ABC1"
TRUST_MAILBOX = "X26ABC2"
WORKFLOW = "TEST_WORKFLOW"  # registered in the sandbox for X26ABC1 → X26ABC2
START_TIMEOUT = 30.0
INSTALL = "pip install mesh-sandbox==1.0.137"


@dataclass
class Sandbox:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sandbox(workdir: Path) -> Sandbox:
    """Start mesh-sandbox with a file store under `workdir` and wait for /health; fail loudly."""
    if importlib.util.find_spec("mesh_sandbox") is None:
        pytest.fail(f"mesh-sandbox is not installed in {sys.executable}; {INSTALL}")
    store = workdir / "mailboxes"
    store.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = workdir / "sandbox.log"
    env = {
        "PATH": "/usr/bin:/bin",
        "STORE_MODE": "file",
        "MAILBOXES_DATA_DIR": str(store),
        "AUTH_MODE": "full",  # anything but none/canned: the HMAC is checked with SHARED_KEY
        "SHARED_KEY": SHARED_KEY,
        "PYTHONWARNINGS": "ignore",  # FastAPI deprecation noise would bury a real start-up error
    }
    command = [sys.executable, "-m", "uvicorn", "mesh_sandbox.api:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    sandbox = Sandbox(url=f"http://127.0.0.1:{port}", process=process, log=log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"mesh-sandbox exited with {process.returncode} on start "
                f"({' '.join(command)}):\n{sandbox.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{sandbox.url}/health", timeout=1) as answer:
                if answer.status == 200:
                    return sandbox
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    sandbox.stop()
    pytest.fail(
        f"mesh-sandbox gave no /health on {sandbox.url} within {START_TIMEOUT:g}s "
        f"({' '.join(command)}):\n{sandbox.log_tail()}"
    )
