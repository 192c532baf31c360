"""A syncer that raises, hangs or dies on chosen changes, and records what it delivered.

Meta (per instance): ``out`` a file that each ``Flush`` appends its changes to, one JSON line
``[sector, version]`` each (written and fsynced before Flush returns, so what the host counts as
delivered is on disk); ``raise``, ``hang``, ``exit`` lists of ``[sector number, version]``: the
hook raises ValueError, sleeps forever, or calls ``os._exit(3)`` on that change. ``flush_exit``:
a list of ``[sector number, version]`` whose presence in a flushed batch makes Flush die.
``pid_file``: the worker writes its pid there at every hook call.
"""

import json
import os
import threading

PENDING = {}


def _match(meta, key, number, version):
    return [number, version] in meta.get(key, [])


def _one(syncer, number, version):
    meta = syncer.meta
    if meta.get("pid_file"):
        with open(meta["pid_file"], "w") as f:
            f.write(str(os.getpid()))
    if _match(meta, "exit", number, version):
        os._exit(3)
    if _match(meta, "hang", number, version):
        threading.Event().wait()
    if _match(meta, "raise", number, version):
        raise ValueError(f"chaos: refusing sector {number} version {version}")
    PENDING.setdefault(syncer.name, []).append([number, version])


def on_change(syncer, state):
    _one(syncer, state.id.number, state.version)


def on_init(syncer, states):
    for state in states:
        _one(syncer, state.id.number, state.version)


def flush(syncer):
    batch = PENDING.pop(syncer.name, [])
    if any(item in syncer.meta.get("flush_exit", []) for item in batch):
        os._exit(4)
    if not batch:
        return
    with open(syncer.meta["out"], "a", encoding="utf-8") as f:
        for item in batch:
            f.write(json.dumps(item) + "\n")
        f.flush()
        os.fsync(f.fileno())
