"""A host process for the crash test: ``crash_host.py CONFIG init N`` or ``crash_host.py CONFIG write N``.

``init`` creates N sectors and waits until every sink has them; ``write`` updates them in a loop,
forever, printing ``<sector number> <version>`` of each change once its call returned (so
durable), until it is killed.
"""

from __future__ import annotations

import sys
import threading

from sectorhooks.config import load_config
from sectorhooks.runtime import Runtime
from sectorhooks_spec import AllocatedSector, LatestState, SectorID


def main(config_path: str, mode: str, sectors: int) -> int:
    config = load_config(config_path)
    with Runtime.open(config, start_sync=True, filestores=False) as rt:
        if mode == "init":
            rt.state.init_sectors([AllocatedSector(SectorID(1000, n), 8) for n in range(sectors)])
            return 0 if rt.sync.wait_idle(120) else 1
        out = threading.Lock()

        def writer(k: int) -> None:
            r = 0
            while True:
                r += 1
                for n in range(k, sectors, 4):
                    s = rt.state.update(SectorID(1000, n), latest_state=LatestState(f"R{r}"))
                    with out:
                        sys.stdout.write(f"{n} {s.version}\n")
                        sys.stdout.flush()

        threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
