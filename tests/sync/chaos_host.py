"""A host process for the chaos test: ``chaos_host.py CONFIG SECTORS PER_WRITER``.

Creates SECTORS sectors if the KV has none, then 8 writer threads each report PER_WRITER changes
in all on their own sectors (round robin), counting what earlier runs already wrote (from the
KV), printing ``<sector number> <version>`` of each change once its call returned (durable).
Then waits until every syncer delivered the log, prints ``idle`` and exits 0. Killed at any
point, the next run goes on where the KV says this one was.
"""

from __future__ import annotations

import sys
import threading

from sectorhooks.config import load_config
from sectorhooks.runtime import Runtime
from sectorhooks_spec import AllocatedSector, LatestState, SectorID

WRITERS = 8


def main(config_path: str, sectors: int, per_writer: int) -> int:
    config = load_config(config_path)
    with Runtime.open(config, start_sync=True, filestores=False) as rt:
        versions = {s.id.number: s.version for s in rt.state.list()}
        if not versions:
            rt.state.init_sectors([AllocatedSector(SectorID(1000, n), 8) for n in range(sectors)])
            versions = dict.fromkeys(range(sectors), 1)
        out = threading.Lock()

        def writer(k: int) -> None:
            mine = list(range(k, sectors, WRITERS))
            done = sum(versions[n] - 1 for n in mine)
            while done < per_writer:
                n = mine[done % len(mine)]
                s = rt.state.update(SectorID(1000, n), latest_state=LatestState(f"R{done}", worker=f"w{k}"))
                with out:
                    sys.stdout.write(f"{n} {s.version}\n")
                    sys.stdout.flush()
                done += 1

        threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        idle = rt.sync.wait_idle(600)
        print("idle" if idle else "not idle", flush=True)
        return 0 if idle else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
