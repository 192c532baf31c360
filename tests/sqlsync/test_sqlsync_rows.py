"""Column values come from the state's JSON alone: both decoders agree with the state itself."""

from __future__ import annotations

import importlib
import importlib.util
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sectorhooks.host import PluginHost
from sectorhooks_spec import (
    LatestState,
    MessageInfo,
    PreCommitInfo,
    SectorID,
    SectorState,
    dumps,
    to_jsonable,
)

#: The stdlib decoder always; msgspec's when it is installed (it is optional).
DECODERS = ["json"] + (["msgspec"] if importlib.util.find_spec("msgspec") else [])
texts = st.text(max_size=12)
maybe_text = st.none() | texts
states = st.builds(
    SectorState,
    id=st.builds(SectorID, st.integers(0, 2**40), st.integers(0, 2**40)),
    sector_type=st.integers(0, 20),
    pre=st.none() | st.builds(PreCommitInfo, texts, texts),
    message_info=st.builds(MessageInfo, maybe_text, maybe_text, st.booleans()),
    latest_state=st.none() | st.builds(LatestState, texts),
    finalized=st.booleans(),
    abort_reason=texts,
    upgrade_message_id=maybe_text,
    upgrade_landed_epoch=st.none() | st.integers(0, 2**40),
    need_rebuild=st.booleans(),
    version=st.integers(0, 2**53),
    updated_at=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
)


@pytest.fixture(scope="module")
def rows_module():
    from sectorhooks.config import HostConfig, PluginsConfig

    with PluginHost(HostConfig(plugins=PluginsConfig(entry_points=False))).load() as h:
        assert h.records["sqlsync"].bound is not None
        yield importlib.import_module("sectorhooks_plugins.sqlsync.rows")


def _expected_row(rows, s: SectorState, text: str) -> tuple:
    data = to_jsonable(s)
    mains = (
        s.state_name,
        s.pre.comm_r if s.pre else None,
        s.pre.comm_d if s.pre else None,
        s.message_info.pre_commit_cid,
        s.message_info.commit_cid,
    )
    return (s.id.miner, s.id.number, "online", *mains, *(data[n] for n, _ in rows.scalar_fields()), text)


@settings(max_examples=150, deadline=None)
@given(s=states, compact=st.booleans())
def test_both_decoders_build_the_row_the_state_describes(rows_module, s: SectorState, compact: bool):
    text = dumps(s) if compact else json.dumps(to_jsonable(s), indent=1)
    scalars = rows_module.scalar_fields()
    want = _expected_row(rows_module, s, text)
    for decoder in DECODERS:
        assert rows_module.row_builder(scalars, decoder)(s.id.miner, s.id.number, "online", text) == want
    assert rows_module.version_and_time(text) == (s.version, s.updated_at)


@settings(max_examples=40, deadline=None)
@given(batch=st.lists(states, min_size=1, max_size=8), repeat=st.integers(1, 3))
def test_versions_and_times_of_a_batch_match_each_text_read_alone(rows_module, batch, repeat):
    """The memo shared by the instances gives exactly what reading each text gives, repeats too."""
    texts = [dumps(s) for s in batch] * repeat
    want = [rows_module.version_and_time(t) for t in texts]
    for _ in range(2):  # the second pass is served from the memo
        versions, times = rows_module.versions_and_times(texts)
        assert list(zip(versions, times)) == want == [(s.version, s.updated_at) for s in batch] * repeat


def test_a_state_from_before_a_field_existed_gets_null_for_it(rows_module):
    doc = to_jsonable(SectorState(SectorID(1, 2), version=3))
    del doc["unsealing"], doc["latest_state"]
    text = json.dumps(doc)
    scalars = rows_module.scalar_fields()
    at = 8 + [n for n, _ in scalars].index("unsealing")
    for decoder in DECODERS:
        row = rows_module.row_builder(scalars, decoder)(1, 2, "offline", text)
        assert row[at] is None and row[3] == "" and row[-1] == text


def test_scalar_columns_are_the_top_level_scalar_fields(rows_module):
    names = [n for n, _ in rows_module.scalar_fields()]
    assert names[0] == "sector_type" and names[-2:] == ["version", "updated_at"]
    assert {"abort_reason", "finalized", "upgrade_landed_epoch"} <= set(names)
    assert not {"id", "ticket", "pieces", "latest_state", "message_info"} & set(names)
