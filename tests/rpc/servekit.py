"""Run ``sectorhooks serve`` and other CLI commands as real subprocesses for end-to-end tests."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import httpx

CLI = "import sys; from sectorhooks.cli import main; sys.exit(main())"
READY = "serving JSON-RPC on "
PATH = "/rpc/v0"


def write_config(root: Path, body: str = "") -> Path:
    """A config under ``root`` with its own data dir; ``body`` is appended (TOML)."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / "config.toml"
    cfg.write_text(f'[Common]\nDataDir = "{root / "data"}"\n{body}', encoding="utf-8")
    return cfg


def cli(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``sectorhooks <args> --config config``; returns the finished process (text output)."""
    cmd = [sys.executable, "-c", CLI, *args, "--config", str(config)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())


def create_token(config: Path, perm: str, name: str = "", tenant: str = "") -> dict:
    """``sectorhooks token create --json``: ``{"id", "name", "perm", "tenant", "token", ...}``."""
    done = cli(config, "token", "create", "--perm", perm, "--name", name, "--tenant", tenant, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def make_token(config: Path, perm: str, name: str = "") -> str:
    """A token created in this process through the same KV the server uses (faster than the CLI)."""
    from sectorhooks.config import load_config
    from sectorhooks.rpc import TokenStore
    from sectorhooks.rpc.server import open_store

    with open_store(load_config(config)) as kv:
        return TokenStore(kv).create(perm, name)[0]


def _env() -> dict:
    env = dict(os.environ)
    env.pop("SECTORHOOKS_CONFIG", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Served:
    """A running ``sectorhooks serve``: its URL, its output lines, and how to stop it."""

    def __init__(
        self, config: Path, listen: str = "127.0.0.1:0", startup_timeout: float = 60, args: Sequence[str] = ()
    ):
        self.config = config
        self.log_path = config.parent / f"serve-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w", encoding="utf-8")
        cmd = [sys.executable, "-c", CLI, "serve", "--config", str(config), "--listen", listen, *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, env=_env())
        self.lines: List[str] = []
        self._q: queue.Queue[Optional[str]] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        line = self.wait_line(lambda s: READY in s, startup_timeout)
        if line is None:
            self.kill()
            raise AssertionError(f"serve did not start: rc={self.proc.returncode} output={self.output()}")
        self.url = line.split(READY, 1)[1].split()[0]  # http://127.0.0.1:PORT/rpc/v0
        self.origin, _, path = self.url.partition("/rpc/")
        self.path = "/rpc/" + path

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_line(self, pred: Callable[[str], bool], timeout: float) -> Optional[str]:
        """The first new output line matching ``pred`` within ``timeout`` (None at EOF or deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                self.proc.wait(timeout=30)
                return None
            self.lines.append(line)
            if pred(line):
                return line

    def output(self) -> str:
        """Everything printed so far, stdout then the stderr log."""
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.log_path.read_text(encoding="utf-8")

    def client(self, token: Optional[str] = None) -> httpx.Client:
        """A keep-alive HTTP client for the gateway, with the token as bearer."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.origin, headers=headers, timeout=30)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send ``sig`` and wait for the exit code; reads the remaining output."""
        if self.alive():
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        """Wait for the exit code of a server already told to stop (no second signal: one that
        lands after serve restored the default handlers would kill it); reads the remaining output."""
        rc = self.proc.wait(timeout=timeout)
        self.wait_line(lambda s: False, 5)  # drain stdout to EOF
        self._log.close()
        return rc

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()


def rpc(client: httpx.Client, method: str, params: Any = None, id: Any = 1) -> Any:
    """POST one request; returns the decoded response object."""
    body: dict = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        body["params"] = params
    return client.post(PATH, json=body).json()
