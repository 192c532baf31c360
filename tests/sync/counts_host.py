"""A host process for the counts SIGKILL test: ``counts_host.py CONFIG SEED``.

Four writer threads make random changes (init, updates moving state names, finalize, restore,
import) on 40 sectors, forever, printing ``ok`` once each change's call returned (durable),
until the process is killed.
"""

from __future__ import annotations

import random
import sys
import threading

from sectorhooks.config import load_config
from sectorhooks.errors import SectorhooksError
from sectorhooks.runtime import Runtime
from sectorhooks_spec import AllocatedSector, LatestState, SectorID, SectorState

NAMES = ("PC1", "PC2", "C2", "Proving")


def change(rt: Runtime, rng: random.Random) -> None:
    sid = SectorID(1000 + rng.randrange(2), rng.randrange(20))
    kind = rng.choice(["init", "update", "update", "update", "finalize", "restore", "import"])
    if kind == "init":
        rt.state.init_sectors([AllocatedSector(sid, 8)])
    elif kind == "update":
        rt.state.update(sid, latest_state=LatestState(rng.choice(NAMES)))
    elif kind == "finalize":
        rt.state.finalize(sid)
    elif kind == "restore":
        rt.state.restore(sid)
    else:
        state = SectorState(sid, 8, latest_state=LatestState(rng.choice(NAMES)), finalized=rng.random() < 0.5)
        rt.state.import_sector(state, override=True)


def main(config_path: str, seed: int) -> int:
    with Runtime.open(load_config(config_path), start_sync=False, filestores=False, registry=False) as rt:
        out = threading.Lock()

        def writer(k: int) -> None:
            rng = random.Random(seed * 10 + k)
            while True:
                try:
                    change(rt, rng)
                except SectorhooksError:  # refused: missing, exists, wrong workspace
                    continue
                with out:
                    sys.stdout.write("ok\n")
                    sys.stdout.flush()

        threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
