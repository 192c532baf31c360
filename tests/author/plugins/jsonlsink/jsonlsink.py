"""Append each state to the JSONL file Meta ``url`` names; read back the newest per sector."""

import json

BUFFER = {}


def on_state(syncer, state, state_json):
    BUFFER.setdefault(syncer.name, []).append(
        json.dumps(
            {
                "sector": str(state.id),
                "m": state.id.miner,
                "n": state.id.number,
                "version": state.version,
                "state": state_json,
            }
        )
    )


def on_states(syncer, states, states_json):
    for state, text in zip(states, states_json):
        on_state(syncer, state, text)


def flush(syncer):
    lines = BUFFER.pop(syncer.name, [])
    if lines:
        with open(syncer.meta["url"], "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")


def _newest(path):
    rows = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                if rec["sector"] not in rows or rows[rec["sector"]]["version"] < rec["version"]:
                    rows[rec["sector"]] = rec  # replays are harmless: the newest version wins
    except FileNotFoundError:
        pass
    return rows


def read_back(syncer, after, limit):
    from sectorhooks_spec import SectorID, SyncedRow

    rows = sorted(_newest(syncer.meta["url"]).values(), key=lambda r: (r["m"], r["n"]))
    out = [SyncedRow(SectorID(r["m"], r["n"]), r["version"], r["state"]) for r in rows]
    if after is not None:
        out = [r for r in out if r.sector_id > after]
    return out[:limit]
