"""Tables are created on first use and only ever grow: missing columns are added, nothing dropped."""

from __future__ import annotations

import importlib
import json
import re

import attrs
import sqlalchemy as sa

from sectorhooks.host import PluginHost
from sectorhooks_spec import SectorState, dumps, to_jsonable
from sqlsync.sqlsynckit import Feeder, evolve, expected, query, state

OLD_SECTORS = """CREATE TABLE {p}sectors (
    miner BIGINT NOT NULL, number BIGINT NOT NULL, workspace VARCHAR(16), state_name VARCHAR(255),
    version BIGINT NOT NULL, updated_at DOUBLE PRECISION, state_json TEXT NOT NULL,
    ops_note VARCHAR(64), PRIMARY KEY (miner, number))"""


def _columns(url: str, table: str) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [c["name"] for c in sa.inspect(conn).get_columns(table)]
    finally:
        engine.dispose()


def _plugin_module(host: PluginHost, name: str):
    assert host.records["sqlsync"].bound is not None  # loaded: its package exists
    return importlib.import_module(f"sectorhooks_plugins.sqlsync.{name}")


def test_an_older_sectors_table_gains_the_missing_columns_and_keeps_its_rows(host: PluginHost, backend_url):
    old = state(1, 1)
    query(backend_url, OLD_SECTORS.format(p=""))
    query(
        backend_url,
        "INSERT INTO sectors (miner, number, workspace, state_name, version, updated_at, state_json,"
        " ops_note) VALUES (1000, 1, 'online', 'PC1Done', 1, 0, :js, 'kept by ops')",
        {"js": dumps(old)},
    )
    f = Feeder(host, backend_url)
    newer = state(2, 1, abort_reason="why")
    f.write(newer)
    cols = _columns(backend_url, "sectors")
    for col in ("abort_reason", "sector_type", "finalized", "comm_r", "unsealing"):
        assert col in cols
    assert "ops_note" in cols  # a column sqlsync does not map is left alone
    assert f.rows() == expected([old, newer])
    got = f.columns()
    assert got[str(newer.id)]["abort_reason"] == "why"
    assert got[str(old.id)]["ops_note"] == "kept by ops" and got[str(old.id)]["abort_reason"] is None
    f.write(evolve(old, abort_reason="later"))  # the old row is upserted like any other
    got = f.columns()[str(old.id)]
    assert (got["version"], got["abort_reason"], got["ops_note"]) == (2, "later", "kept by ops")


def test_a_field_added_to_sector_state_becomes_a_new_column(host: PluginHost, backend_url: str):
    rows = _plugin_module(host, "rows")
    schema_mod = _plugin_module(host, "sqlsync")

    @attrs.frozen
    class GrownState(SectorState):
        pledge: int = 0
        region: str = ""

    grown = rows.scalar_fields(GrownState)
    assert [n for n, _ in grown[-2:]] == ["pledge", "region"]
    assert [n for n, _ in grown[:-2]] == [n for n, _ in rows.scalar_fields()]

    f = Feeder(host, backend_url)
    f.write(state(1, 1))  # today's tables
    engine = sa.create_engine(backend_url)
    try:
        schema = schema_mod.Schema("", scalars=grown)
        with engine.begin() as conn:
            done = schema.ensure(conn, events=True)
        assert done == ["added column sectors.pledge", "added column sectors.region"]
        with engine.begin() as conn:
            assert schema.ensure(conn, events=True) == []  # idempotent
        doc = dict(to_jsonable(state(1, 2)), pledge=42, region="eu")
        text = json.dumps(doc, separators=(",", ":"))
        with engine.begin() as conn:
            conn.exec_driver_sql(schema.upsert_sql(conn.dialect), [schema.row(1000, 1, "online", text)])
    finally:
        engine.dispose()
    got = f.columns()["s-t01000-1"]
    assert (got["version"], got["pledge"], got["region"], got["state_json"]) == (2, 42, "eu", text)


def test_missing_events_table_is_created_when_events_are_switched_on(host: PluginHost, tmp_path):
    url = f"sqlite:///{tmp_path / 'later.sqlite'}"
    Feeder(host, url, events=False).write(state(1, 1))
    assert "sector_events" not in sa.inspect(sa.create_engine(url)).get_table_names()
    f = Feeder(host, url, events=True)
    f.write(state(1, 2))
    assert sorted(f.events()) == [("s-t01000-1", 2)]


def test_upsert_sql_guards_the_version_on_every_dialect(host: PluginHost):
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    schema = _plugin_module(host, "sqlsync").Schema("p_")
    lite = schema.upsert_sql(sqlite.dialect())
    assert 'ON CONFLICT (miner, "number") DO UPDATE SET' in lite or "ON CONFLICT (miner, number)" in lite
    assert lite.endswith("WHERE p_sectors.version < excluded.version")
    pg = schema.upsert_sql(postgresql.psycopg.dialect())
    assert "%s" in pg and pg.endswith("WHERE p_sectors.version < excluded.version")
    my = schema.upsert_sql(mysql.pymysql.dialect())
    sets = re.findall(r"(\w+) = (\w+)\(", my.split("ON DUPLICATE KEY UPDATE ", 1)[1])
    assert sets[-1] == ("version", "GREATEST")  # last: MySQL assigns left to right
    assert len(sets) == len(schema.sector_columns) - 2 and {fn for _, fn in sets[:-1]} == {"IF"}
    assert my.count("IF(VALUES(version) > version, ") == len(sets) - 1
    assert "IGNORE" not in schema.events_sql(mysql.pymysql.dialect())
