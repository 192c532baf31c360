"""A SyncSectorState plugin without Flush that takes decoded states (``state``/``states``)."""

SEEN = {}  # instance name -> {str(sector_id): SectorState}


def on_any(syncer, state):
    rows = SEEN.setdefault(syncer.name, {})
    old = rows.get(str(state.id))
    if old is None or old.version < state.version:
        rows[str(state.id)] = state


def on_init(syncer, states):
    for state in states:
        on_any(syncer, state)
