"""TensorBoard for the run on screen: `llmtui tensorboard RUN` on a free loopback port, one at a time, stopped
with the wizard (its output in `<run>/tensorboard.log`)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


class TensorBoardServer:
    def __init__(self) -> None:
        self.root: Path | None = None
        self.process: subprocess.Popen | None = None
        self.address = ""

    def serve(self, run_root: Path, logs_dir: Path, cwd: Path) -> str:
        """The address serving `run_root`'s logs (started unless it already is)."""
        if self.process is not None and self.root == run_root and self.process.poll() is None:
            return self.address
        self.stop()
        with socket.socket() as probe:  # a free port on this machine
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with open(run_root / "tensorboard.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llmtui", "tensorboard", str(run_root.resolve()), "--port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
            )
        self.root, self.address = run_root, f"http://127.0.0.1:{port}/"
        return self.address

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process, self.root, self.address = None, None, ""
