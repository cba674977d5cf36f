"""`diffsde dashboard` started for real on a free port of 127.0.0.1, as the tests that need the
server (the bind-address test, the browser tests) start it."""

import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.request

from diffsde._jobs import CLI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DashboardServer:
    """The real command (the CLI starting Streamlit) in a process group of its own, so `stop`
    ends both; its output goes to ``log``. ``env`` entries are added to the environment."""

    def __init__(self, runs_dir: pathlib.Path, log: pathlib.Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        environment = dict(os.environ, STREAMLIT_SERVER_HEADLESS="true", **env)
        environment.pop("STREAMLIT_SERVER_ADDRESS", None)
        command = [*CLI, "dashboard", "--runs-dir", str(runs_dir)]
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)],
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_healthy(self, timeout: float = 60) -> None:
        """Return once the server answers its health check; AssertionError (with the log) if
        it exits or does not answer within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            assert code is None, f"dashboard exited with {code}:\n{self.log.read_text()}"
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, (
                f"dashboard did not answer within {timeout} s:\n{self.log.read_text()}"
            )
            time.sleep(0.2)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
