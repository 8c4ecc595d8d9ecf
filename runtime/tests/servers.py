"""Real Redis, memcached and Prometheus servers on free loopback ports, started and stopped by the tests.

The binaries come from Debian's packages (scripts/setup.sh installs them); a missing one fails the test with the
command that installs it, instead of skipping what the suite claims to check.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 20.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def binary(name: str, package: str) -> str:
    """Return the path of ``name``; raise with the install command when it is missing."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if found is None:
        raise RuntimeError(f"{name} is not installed: run scripts/setup.sh (apt-get install {package})")
    return found


class LocalServer:
    """One server process on a fixed loopback port: start, kill (SIGKILL) and start again on the same port."""

    def __init__(self, argv_for_port: Sequence[str], port: int, log: Path) -> None:
        self.argv = list(argv_for_port)
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalServer:
        """Start the server and wait until it listens."""
        handle = self.log.open("ab")
        self.process = subprocess.Popen(self.argv, stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        wait_for_port(self.port, process=self.process)
        return self

    def kill(self) -> None:
        """Kill the server at once (no shutdown: what a crash looks like to its clients)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """Stop the server politely (SIGTERM), killing it after 10 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


def redis_server(workdir: Path) -> LocalServer:
    """A Redis server with no persistence, on a free port, in ``workdir``."""
    port = free_port()
    argv = [
        binary("redis-server", "redis-server"),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]
    return LocalServer(argv, port, workdir / f"redis-{port}.log")


def memcached_server(workdir: Path) -> LocalServer:
    """A memcached server (64 MB) on a free port."""
    port = free_port()
    argv = [binary("memcached", "memcached"), "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64"]
    if os.geteuid() == 0:  # memcached refuses to run as root unless told which user to be
        argv += ["-u", "root"]
    return LocalServer(argv, port, workdir / f"memcached-{port}.log")


class ServerProcess:
    """`edgeopt-runtime serve BUNDLE` in a process of its own, on a free port; its output goes to a log file."""

    def __init__(self, bundle: Path, *extra: str, env: dict[str, str] | None = None, log: Path | None = None) -> None:
        import tempfile

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A file, not a pipe: a pipe nobody reads fills up with access-log lines and blocks the server.
        self.log = log or Path(tempfile.mkstemp(prefix="edgeopt-serve-", suffix=".log")[1])
        argv = [sys.executable, "-m", "edgeopt_runtime.cli", "serve", str(bundle), "--port", str(self.port), *extra]
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                argv, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        wait_for_port(self.port, timeout_s=60, process=self.process)

    def output(self) -> str:
        """Wait for the process to end and return what it printed."""
        self.process.wait(timeout=30)
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """SIGTERM, and wait for the graceful exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
