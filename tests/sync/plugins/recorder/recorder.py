"""A real SyncSectorState plugin for the sync tests, with failures switched on by the test.

Per syncer instance (``syncer.name``): hooks buffer ``(sector, version, state_json, kind)``;
``Flush`` applies the buffer to ``ROWS`` with a version guard (like a SQL sink) and appends to
``DELIVERED``. Switches, keyed by instance name: ``POISON`` (sectors whose events raise in the
hook), ``DOWN`` (Flush raises ConnectionError), ``REJECT`` ((sector, version) pairs Flush
rejects), ``SLOW`` (seconds each hook sleeps). ``read_rows(url)`` returns ``ROWS[url]``, and
``read_back`` (the ReadBack extension point) pages through it, so an instance whose meta ``url`` is
its name can be verified. ``FLUSHES`` holds when each ``Flush`` was called (``time.monotonic()``).
"""

import threading
import time

from sectorhooks_spec import Rejected, RejectedChanges

LOCK = threading.Lock()
ROWS = {}  # name -> {sector: (version, state_json, workspace)}
DELIVERED = {}  # name -> [(kind, sector, version)] in flush order
PENDING = {}  # name -> [(kind, sector, version, state_json, workspace)]
CALLS = {}  # name -> {hook: count}
ARGS = {}  # name -> {hook: sorted arg names seen}
POISON = {}  # name -> set of sector strings
DOWN = {}  # name -> bool
REJECT = {}  # name -> set of (sector, version)
SLOW = {}  # name -> seconds
FLUSHES = {}  # name -> [time.monotonic() of each Flush call]


def reset():
    for table in (ROWS, DELIVERED, PENDING, CALLS, ARGS, POISON, DOWN, REJECT, SLOW, FLUSHES):
        table.clear()


def _hook(syncer, hook, items):
    name = syncer.name
    with LOCK:
        CALLS.setdefault(name, {}).setdefault(hook, 0)
        CALLS[name][hook] += 1
    if SLOW.get(name):
        time.sleep(SLOW[name])
    for item in items:
        if item[1] in POISON.get(name, ()):
            raise RuntimeError(f"poisoned sector {item[1]}")
    with LOCK:
        PENDING.setdefault(name, []).extend(items)


def _version(state_json):
    # The version without decoding the whole state: proves state_json is enough for a sink.
    import json

    return json.loads(state_json)["version"]


def on_import(syncer, workspace, override, state_json):
    v = _version(state_json)
    sector = _sector_of(state_json)
    _hook(syncer, "import", [("import", sector, v, state_json, workspace.value)])


def on_init(syncer, sectors, workspace, states_json):
    items = [("init", str(a.id), _version(sj), sj, workspace.value) for a, sj in zip(sectors, states_json)]
    _hook(syncer, "init", items)


def on_update(syncer, sector_id, workspace, fields, state_json):
    _hook(syncer, "update", [("update", str(sector_id), _version(state_json), state_json, workspace.value)])


def on_finalize(syncer, sector_id, state):
    # Asks for the decoded state on purpose: the host must build it for this hook.
    from sectorhooks_spec import dumps

    _hook(syncer, "finalize", [("finalize", str(sector_id), state.version, dumps(state), "offline")])


def on_restore(syncer, sector_id, state_json):
    _hook(syncer, "restore", [("restore", str(sector_id), _version(state_json), state_json, "online")])


def flush(syncer):
    name = syncer.name
    with LOCK:
        FLUSHES.setdefault(name, []).append(time.monotonic())
    if DOWN.get(name):
        raise ConnectionError(f"sink {name} is down")
    with LOCK:
        items = PENDING.pop(name, [])
        rows = ROWS.setdefault(name, {})
        rejected = []
        for kind, sector, version, state_json, ws in items:
            if (sector, version) in REJECT.get(name, ()):
                rejected.append(Rejected(sector, version, "CHECK constraint failed"))
                continue
            DELIVERED.setdefault(name, []).append((kind, sector, version))
            old = rows.get(sector)
            if old is None or old[0] < version:
                rows[sector] = (version, state_json, ws)
    if rejected:
        raise RejectedChanges(rejected)


def read_rows(url, table_prefix=""):
    with LOCK:
        return {sector: (v, sj) for sector, (v, sj, _) in ROWS.get(url, {}).items()}


def read_back(syncer, after, limit):
    """ReadBack: a page of ``ROWS[meta url]`` in sector order, strictly after ``after``."""
    from sectorhooks_spec import SectorID, SyncedRow

    def sid(sector):
        miner, number = sector[len("s-t0") :].split("-")
        return SectorID(int(miner), int(number))

    rows = sorted((sid(sector), v, sj) for sector, (v, sj) in read_rows(syncer.meta.get("url")).items())
    return [SyncedRow(*row) for row in rows if after is None or row[0] > after][:limit]


def _sector_of(state_json):
    import json

    from sectorhooks_spec import SectorID

    sid = json.loads(state_json)["id"]
    return str(SectorID(sid["miner"], sid["number"]))
