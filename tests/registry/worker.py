"""A replica process for the multi-process registry tests (each opens the real KV from a config);
started by ``regkit.start_worker`` as ``python -m registry.worker MODE ARGS``.

worker.py scrape CONFIG LOG TTL INTERVAL    register this host's plugins, scrape until SIGTERM
worker.py tenants CONFIG OUT INDEX OPS SEED GO   enable/disable own tenants once GO exists
worker.py register-hang CONFIG MARKER       register 'ghost', hang after the first put
"""

from __future__ import annotations

import json
import logging
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

from registry.faults import PausingStore
from registry.regkit import opened
from sectorhooks.registry import Identity, Registry, RegistryService


def scrape(config: str, log_file: str, ttl: str, interval: str) -> None:
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(created).6f %(process)d %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with opened(Path(config)) as (host, kv):
        service = RegistryService(host, kv, ttl=float(ttl), interval=float(interval)).start()
        logging.getLogger("worker").info("worker ready")
        stop.wait(120)  # bounded: the test kills or stops us well before
        service.stop()
    logging.getLogger("worker").info("worker stopped")


def tenants(config: str, out: str, index: str, ops: str, seed: str, go: str) -> None:
    rng = random.Random(int(seed))
    mine = [f"p{index}-t{j}" for j in range(3)]
    accepted: List[Dict[str, Any]] = []
    with opened(Path(config), start_all=False) as (_, kv):
        reg = Registry(kv)
        Path(out + ".ready").touch()
        deadline = time.monotonic() + 60
        while not Path(go).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.time()
        for k in range(int(ops)):
            tid = rng.choice(mine)
            if rng.random() < 0.65:
                op = {
                    "op": "enable",
                    "tenant": tid,
                    "name": f"{tid}-n{k}",
                    "expire": rng.choice([0, 4_000_000_000 + k]),
                }
                reg.enable_tenant("greet", tid, op["name"], op["expire"], extra={"k": k})
            else:
                op = {"op": "disable", "tenant": tid}
                reg.disable_tenant("greet", tid)
            accepted.append(op)
        ended = time.time()
    Path(out).write_text(json.dumps({"start": started, "end": ended, "ops": accepted}))


def register_hang(config: str, marker: str) -> None:
    with opened(Path(config), start_all=False) as (_, kv):
        reg = Registry(PausingStore(kv, after_puts=1, marker=Path(marker)))
        reg.register(Identity("ghost", "ghost", "RegisterJsonRpc", "9.9.9"), {"Ghost": "ghost/Ghost"})


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"scrape": scrape, "tenants": tenants, "register-hang": register_hang}[mode](*args)
