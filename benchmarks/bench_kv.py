"""KV benchmarks: each KVStore backend against its raw client doing the same work, in the same run.

Rows (ops/s, best of several rounds, ours and baseline interleaved):

* ``put xN in one update``: one transaction of N puts vs the raw client's batch in one
  transaction (sqlite3 / psycopg / pymysql ``executemany``, a redis-py ``MULTI`` pipeline of SETs,
  a dict). Goal: sqlkv-sqlite >= 0.5x raw sqlite3 executemany.
* ``put xN, one txn each``, ``get xN``: plain operations vs single raw statements / commands.
* ``scan N keys``: an ordered prefix scan vs one raw ordered range query.
* ``update (read-modify-write) xN``: one small transaction each vs the raw client's own
  transaction (``BEGIN IMMEDIATE`` / ``SERIALIZABLE`` / ``FOR UPDATE`` / ``WATCH``/``MULTI``).
* group ``kv-redis-scan-choice``: rediskv's ordered scan (sorted-set index) vs the alternative,
  ``SCAN MATCH`` + sort + ``MGET``, on the same data: the measurement behind the choice.

Servers come from ``tests/servers.py`` (fresh database / key prefix, dropped afterwards); a
backend whose server is not reachable is skipped with a note. Run: ``python benchmarks/bench_kv.py
[--quick]``; ``benchmarks/run.py`` imports :func:`run`.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import functools
import gc
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "kv")]

import kvplugins  # noqa: E402

import servers  # noqa: E402

Row = Dict[str, Any]
Items = List[Tuple[bytes, bytes]]
VALUE = b"v" * 100


def _items(n: int, tag: str) -> Items:
    return [(b"%s%08d" % (tag.encode(), i), VALUE) for i in range(n)]


# --- raw clients, doing what each backend does ------------------------------------------


class RawDict:
    """memdb's baseline: a dict plus a sorted key list, no lock, no checks."""

    name = "dict + bisect"

    def __init__(self) -> None:
        self.d: Dict[bytes, bytes] = {}
        self.keys: List[bytes] = []
        self.lock = threading.Lock()

    def batch_put(self, items: Items) -> None:
        for k, v in items:
            if k not in self.d:
                bisect.insort(self.keys, k)
            self.d[k] = v

    def put(self, k: bytes, v: bytes) -> None:
        self.batch_put([(k, v)])

    def get(self, k: bytes) -> bytes:
        return self.d[k]

    def scan(self, prefix: bytes, end: bytes) -> Items:
        i, j = bisect.bisect_left(self.keys, prefix), bisect.bisect_left(self.keys, end)
        return [(k, self.d[k]) for k in self.keys[i:j]]

    def rmw(self, k: bytes) -> None:
        with self.lock:
            self.d[k] = b"%d" % (int(self.d.get(k, b"0")) + 1)

    def close(self) -> None:
        pass


class RawSQLite:
    """sqlite3 on its own file, same pragmas as sqlkv (WAL, synchronous=NORMAL)."""

    name = "sqlite3"

    def __init__(self, path: str):
        self.c = sqlite3.connect(path, isolation_level=None)
        self.c.execute("PRAGMA journal_mode=WAL")
        self.c.execute("PRAGMA synchronous=NORMAL")
        self.c.execute("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")

    def batch_put(self, items: Items) -> None:
        self.c.execute("BEGIN IMMEDIATE")
        self.c.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", items)
        self.c.execute("COMMIT")

    def put(self, k: bytes, v: bytes) -> None:
        self.c.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, v))

    def get(self, k: bytes) -> bytes:
        return self.c.execute("SELECT value FROM kv WHERE key = ?", (k,)).fetchone()[0]

    def scan(self, prefix: bytes, end: bytes) -> Items:
        return self.c.execute(
            "SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key", (prefix, end)
        ).fetchall()

    def rmw(self, k: bytes) -> None:
        self.c.execute("BEGIN IMMEDIATE")
        row = self.c.execute("SELECT value FROM kv WHERE key = ?", (k,)).fetchone()
        self.c.execute(
            "INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, b"%d" % (int(row[0] if row else 0) + 1))
        )
        self.c.execute("COMMIT")

    def close(self) -> None:
        self.c.close()


class RawPG:
    """psycopg 3, autocommit, explicit transactions as sqlkv runs them."""

    name = "psycopg"

    def __init__(self, dbname: str):
        import psycopg

        self.c = psycopg.connect(servers.pg_admin_dsn(dbname), autocommit=True)
        self.c.execute("CREATE TABLE raw_kv (key BYTEA PRIMARY KEY, value BYTEA NOT NULL)")
        self.up = "INSERT INTO raw_kv VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"

    def batch_put(self, items: Items) -> None:
        with self.c.transaction(), self.c.cursor() as cur:
            cur.executemany(self.up, items)

    def put(self, k: bytes, v: bytes) -> None:
        self.c.execute(self.up, (k, v))

    def get(self, k: bytes) -> bytes:
        return self.c.execute("SELECT value FROM raw_kv WHERE key = %s", (k,)).fetchone()[0]

    def scan(self, prefix: bytes, end: bytes) -> Items:
        q = "SELECT key, value FROM raw_kv WHERE key >= %s AND key < %s ORDER BY key"
        return self.c.execute(q, (prefix, end)).fetchall()

    def rmw(self, k: bytes) -> None:
        self.c.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        row = self.c.execute("SELECT value FROM raw_kv WHERE key = %s", (k,)).fetchone()
        self.c.execute(self.up, (k, b"%d" % (int(row[0] if row else 0) + 1)))
        self.c.execute("COMMIT")

    def close(self) -> None:
        self.c.close()


class RawMy:
    """pymysql, autocommit, explicit transactions as sqlkv runs them."""

    name = "pymysql"

    def __init__(self, dbname: str):
        import pymysql

        self.c = pymysql.connect(
            host=servers.MY_HOST, port=servers.MY_PORT, user=servers.MY_USER, database=dbname, autocommit=True
        )
        self.cur = self.c.cursor()
        self.cur.execute("CREATE TABLE raw_kv (`key` VARBINARY(2048) PRIMARY KEY, value LONGBLOB NOT NULL)")
        self.up = "INSERT INTO raw_kv VALUES (%s, %s) ON DUPLICATE KEY UPDATE value = VALUES(value)"

    def batch_put(self, items: Items) -> None:
        self.cur.execute("START TRANSACTION")
        self.cur.executemany(self.up, items)
        self.cur.execute("COMMIT")

    def put(self, k: bytes, v: bytes) -> None:
        self.cur.execute(self.up, (k, v))

    def get(self, k: bytes) -> bytes:
        self.cur.execute("SELECT value FROM raw_kv WHERE `key` = %s", (k,))
        return self.cur.fetchone()[0]

    def scan(self, prefix: bytes, end: bytes) -> Items:
        self.cur.execute(
            "SELECT `key`, value FROM raw_kv WHERE `key` >= %s AND `key` < %s ORDER BY `key`", (prefix, end)
        )
        return list(self.cur.fetchall())

    def rmw(self, k: bytes) -> None:
        self.cur.execute("START TRANSACTION")
        self.cur.execute("SELECT value FROM raw_kv WHERE `key` = %s FOR UPDATE", (k,))
        row = self.cur.fetchone()
        self.cur.execute(self.up, (k, b"%d" % (int(row[0] if row else 0) + 1)))
        self.cur.execute("COMMIT")

    def close(self) -> None:
        self.c.close()


class RawRedis:
    """redis-py: pipelines of plain SETs (no ordered index), WATCH/MULTI for read-modify-write."""

    name = "redis-py pipeline"

    def __init__(self, url: str, prefix: str):
        import redis

        self.r = redis.Redis.from_url(url)
        self.p = prefix.encode()

    def batch_put(self, items: Items) -> None:
        pipe = self.r.pipeline(transaction=True)
        for k, v in items:
            pipe.set(self.p + k, v)
        pipe.execute()

    def put(self, k: bytes, v: bytes) -> None:
        self.r.set(self.p + k, v)

    def get(self, k: bytes) -> bytes:
        return self.r.get(self.p + k)

    def scan(self, prefix: bytes, end: bytes) -> Items:
        raise NotImplementedError  # measured against rediskv's index in scan_rows below

    def rmw(self, k: bytes) -> None:
        import redis

        key = self.p + k
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    value = int(pipe.get(key) or b"0")
                    pipe.multi()
                    pipe.set(key, b"%d" % (value + 1))
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def close(self) -> None:
        self.r.close()


# --- measuring ---------------------------------------------------------------------------


def rate(n: int, fn: Callable[[], Any]) -> float:
    gc.collect()  # neither side pays for the other's garbage
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def duel(rounds: int, n: int, ours: Callable[[int], Any], raw: Callable[[int], Any]) -> Tuple[float, float]:
    """Best ops/s of each over ``rounds`` interleaved rounds; each callable gets the round number."""
    best_ours = best_raw = 0.0
    for r in range(rounds):
        best_raw = max(best_raw, rate(n, functools.partial(raw, r)))
        best_ours = max(best_ours, rate(n, functools.partial(ours, r)))
    return best_ours, best_raw


def row(name: str, ours: float, base: float, base_name: str, goal: str = "", group: str = "kv") -> Row:
    return {
        "group": group,
        "name": name,
        "unit": "keys/s" if " scan " in name else "ops/s",
        "ours": round(ours, 1),
        "baseline": round(base, 1),
        "baseline_name": base_name,
        "ratio": round(ours / base, 3) if base else 0.0,
        "goal": goal,
    }


def bench_backend(label: str, store: Any, raw: Any, quick: bool) -> List[Row]:
    """The standard rows for one backend."""
    n_batch = 10000
    n = 1000 if quick else 5000
    rounds = 3 if quick else 5
    coll = store.open_collection("bench")
    rows = []

    def ours_batch(r: int) -> None:
        items = _items(n_batch, f"b{r}-")
        coll.update(lambda t: [t.put(k, v) for k, v in items])

    def raw_batch(r: int) -> None:
        raw.batch_put(_items(n_batch, f"b{r}-"))

    goal = ">= 0.5" if label == "sqlkv-sqlite" else ""
    # Cheap rounds (~0.1 s) whose time swings 2-3x with WAL checkpoints: take the best of many.
    o, b = duel(7 if quick else 11, n_batch, ours_batch, raw_batch)
    rows.append(
        row(f"{label} put x{n_batch} in one update", o, b, f"{raw.name} batch in one transaction", goal)
    )

    def ours_puts(r: int) -> None:
        for k, v in _items(n, f"p{r}-"):
            coll.put(k, v)

    def raw_puts(r: int) -> None:
        for k, v in _items(n, f"p{r}-"):
            raw.put(k, v)

    o, b = duel(rounds, n, ours_puts, raw_puts)
    rows.append(row(f"{label} put x{n}, one txn each", o, b, f"{raw.name} single writes"))

    keys = [k for k, _ in _items(n, "b0-")]
    o, b = duel(rounds, n, lambda r: [coll.get(k) for k in keys], lambda r: [raw.get(k) for k in keys])
    rows.append(row(f"{label} get x{n}", o, b, f"{raw.name} single reads"))

    if not isinstance(raw, RawRedis):
        expect = sorted(_items(n_batch, "b1-"))

        def ours_scan(r: int) -> None:
            assert list(coll.scan(b"b1-")) == expect

        def raw_scan(r: int) -> None:
            assert [tuple(x) for x in raw.scan(b"b1-", b"b1.")] == expect

        o, b = duel(rounds, n_batch, ours_scan, raw_scan)
        rows.append(row(f"{label} scan {n_batch} keys", o, b, f"{raw.name} one ordered range query"))

    m = n // 5

    def incr(t: Any) -> None:
        t.put(b"ctr", b"%d" % (int(t.peek(b"ctr") or b"0") + 1))

    def ours_rmw(r: int) -> None:
        for _ in range(m):
            coll.update(incr)

    def raw_rmw(r: int) -> None:
        for _ in range(m):
            raw.rmw(b"ctr")

    o, b = duel(rounds, m, ours_rmw, raw_rmw)
    rows.append(row(f"{label} update (read-modify-write) x{m}", o, b, f"{raw.name} own transaction"))
    return rows


def redis_rows(store: Any, url: str, prefix: str, quick: bool) -> List[Row]:
    """rediskv's ordered scan vs the raw alternatives on the same data (the design measurement)."""
    import redis

    r = redis.Redis.from_url(url)
    total, want = (20000, 1000) if quick else (100000, 1000)
    rounds = 3 if quick else 5
    coll = store.open_collection("scanchoice")
    for i in range(0, total, 5000):
        chunk = [(b"k%07d" % j, VALUE) for j in range(i, min(total, i + 5000))]
        coll.update(lambda t, c=chunk: [t.put(k, v) for k, v in c])
    scan_prefix = b"k0001"  # 1000 keys: k0001000 .. k0001999
    expect = [(b"k%07d" % j, VALUE) for j in range(total) if (b"k%07d" % j).startswith(scan_prefix)]
    assert len(expect) == want
    dk = prefix.encode() + b"d:scanchoice:"
    index = prefix.encode() + b"i:scanchoice"

    def ours(_: int) -> None:
        assert list(coll.scan(scan_prefix)) == expect

    def raw_index(_: int) -> None:
        keys = r.zrangebylex(index, b"[" + scan_prefix, b"(k0002")
        assert list(zip(keys, r.mget([dk + k for k in keys]))) == expect

    def raw_scan_sort(_: int) -> None:
        found = sorted(k[len(dk) :] for k in r.scan_iter(match=dk + scan_prefix + b"*", count=1000))
        assert list(zip(found, r.mget([dk + k for k in found]))) == expect

    rows = []
    o, b = duel(rounds, want, ours, raw_index)
    rows.append(row(f"rediskv scan {want} of {total} keys", o, b, "redis-py ZRANGEBYLEX + MGET"))
    o, b = duel(rounds, want, ours, raw_scan_sort)
    db_keys = r.dbsize()
    rows.append(
        row(
            f"rediskv scan {want} of {total} keys (db holds {db_keys})",
            o,
            b,
            "SCAN MATCH + sort + MGET",
            group="kv-redis-scan-choice",
        )
    )

    # The index's cost on writes: rediskv's plain put (SET + ZADD + INCR in MULTI) vs a bare SET.
    n = 1000 if quick else 5000

    def ours_put(rn: int) -> None:
        for k, v in _items(n, f"w{rn}-"):
            coll.put(k, v)

    def raw_set(rn: int) -> None:
        for k, v in _items(n, f"w{rn}-"):
            r.set(dk + b"raw" + k, v)

    o, b = duel(rounds, n, ours_put, raw_set)
    rows.append(
        row(f"rediskv put x{n} keeping the index", o, b, "redis-py bare SET", group="kv-redis-scan-choice")
    )
    r.close()
    return rows


Opened = Tuple[str, Any, Any, Optional[Tuple[str, str]]]


def _memdb(stack: contextlib.ExitStack, tmp: Path) -> Opened:
    return "memdb", kvplugins.open_store("memdb", {}), RawDict(), None


def _sqlite(stack: contextlib.ExitStack, tmp: Path) -> Opened:
    ours = kvplugins.open_store("sqlkv", {"url": f"sqlite:///{tmp / 'ours.sqlite3'}"})
    return "sqlkv-sqlite", ours, RawSQLite(str(tmp / "raw.sqlite3")), None


def _pg(stack: contextlib.ExitStack, tmp: Path) -> Opened:
    url, name = stack.enter_context(contextlib.contextmanager(servers.fresh_pg_database)())
    return "sqlkv-postgresql", kvplugins.open_store("sqlkv", {"url": url}), RawPG(name), None


def _mysql(stack: contextlib.ExitStack, tmp: Path) -> Opened:
    url, name = stack.enter_context(contextlib.contextmanager(servers.fresh_mysql_database)())
    return "sqlkv-mariadb", kvplugins.open_store("sqlkv", {"url": url}), RawMy(name), None


def _redis(stack: contextlib.ExitStack, tmp: Path) -> Opened:
    url, prefix = stack.enter_context(contextlib.contextmanager(servers.fresh_redis_prefix)())
    store = kvplugins.open_store("rediskv", {"url": url, "prefix": prefix})
    return "rediskv", store, RawRedis(url, prefix + "raw:"), (url, prefix)


BACKENDS: List[Tuple[Callable[[contextlib.ExitStack, Path], Opened], Optional[Tuple[str, str, int]]]] = [
    (_memdb, None),
    (_sqlite, None),
    (_pg, ("PostgreSQL", servers.PG_HOST, servers.PG_PORT)),
    (_mysql, ("MariaDB", servers.MY_HOST, servers.MY_PORT)),
    (_redis, ("Redis", servers.REDIS_HOST, servers.REDIS_PORT)),
]


def run(quick: bool) -> List[Row]:
    """Every row; one backend at a time (opened, measured, closed, its data dropped).

    A backend whose server is down is left out and named on stderr.
    """
    rows: List[Row] = []
    for opener, server in BACKENDS:
        if server is not None and not servers._reachable(server[1], server[2]):
            print(f"bench_kv: skipped {opener.__name__[1:]}: {server[0]} not reachable", file=sys.stderr)
            continue
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_kv_")))
            label, store, raw, redis_info = opener(stack, tmp)
            stack.callback(store.close)
            stack.callback(raw.close)
            rows += bench_backend(label, store, raw, quick)
            if redis_info is not None:
                rows += redis_rows(store, redis_info[0], redis_info[1], quick)
        gc.collect()
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller sizes")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    rows = run(args.quick)
    table = Table(title="KV stores vs their raw clients (ops/s, best of rounds)")
    for col in ("group", "name", "ours", "baseline", "baseline_name", "ratio", "goal"):
        table.add_column(col, justify="right" if col in ("ours", "baseline", "ratio") else "left")
    failed = False
    for r in rows:
        ok = not r["goal"] or r["ratio"] >= float(r["goal"].split()[-1])
        failed |= not ok
        ratio = f"{r['ratio']:.2f}" + ("" if ok else " (goal missed)")
        table.add_row(
            r["group"],
            r["name"],
            f"{r['ours']:,.0f}",
            f"{r['baseline']:,.0f}",
            r["baseline_name"],
            ratio,
            r["goal"],
        )
    console = Console()
    if console.width < 160:  # piped or narrow: do not wrap the rows
        console = Console(width=160)
    console.print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
