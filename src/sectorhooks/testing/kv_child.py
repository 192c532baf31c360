"""The second process of the KV suite's multi-process contract (``test_two_processes_share_the_store``).

Run as ``python -m sectorhooks.testing.kv_child SPEC`` by the suite, never by hand: ``SPEC`` is a
JSON object (``path``, ``meta``, ``data_dir``, ``collection``, ``increments``, ``marker``). The
child loads the plugin directory through the host's loader (:func:`.target.started_host`, as the
suite does), opens the store with the same Meta, and talks to the test over its stdin/stdout:

1. writes ``child/hello``, reports what it reads of the parent's ``parent/hello`` (``ready``),
   then waits for ``go`` (the barrier: both start incrementing at once);
2. runs ``increments`` read-modify-write updates of the counter ``n`` through
   :func:`sectorhooks.kv.retry_update`, each also writing ``child/NNN``, and reports ``done``;
3. waits for ``check`` (the parent has finished its own increments) and reports what a fresh
   read sees: the counter and the number of ``parent/`` and ``child/`` keys (``saw``).

Each report is one stdout line: ``marker`` then a JSON object; other output is ignored. Any
error goes to stderr with a non-zero exit status, which the test shows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from sectorhooks_spec.kinds import Kind

from ..kv import RetryPolicy, retry_update
from .target import PluginUnderTest, open_kv, started_host

#: Retries of one increment: two processes race for one key for a few seconds at most.
POLICY = RetryPolicy(attempts=500, max_seconds=30.0, max_delay=0.05)


def _say(marker: str, step: str, **data: Any) -> None:
    sys.stdout.write(f"{marker} {json.dumps({'step': step, **data})}\n")
    sys.stdout.flush()


def _wait_for(word: str) -> None:
    line = sys.stdin.readline()
    if line.strip() != word:
        raise SystemExit(f"kv_child: expected {word!r} from the test on stdin, got {line!r}")


def _hex(value: Optional[bytes]) -> Optional[str]:
    return None if value is None else value.hex()


def increment(who: bytes, i: int) -> Any:
    """The update both processes race with: ``n += 1`` and ``<who>/<i> = the new n``."""

    def fn(t: Any) -> None:
        n = int(t.get(b"n")) + 1
        t.put(b"n", b"%d" % n)
        t.put(who + b"/%03d" % i, b"%d" % n)

    return fn


def run(store: Any, spec: Dict[str, Any]) -> None:
    marker, coll = spec["marker"], store.open_collection(spec["collection"])
    coll.put(b"child/hello", b"1")
    _say(marker, "ready", parent_hello=_hex(coll.peek(b"parent/hello")))
    _wait_for("go")
    for i in range(spec["increments"]):
        retry_update(coll, increment(b"child", i), POLICY)
    _say(marker, "done")
    _wait_for("check")
    keys: List[bytes] = [k for k, _ in coll.scan()]
    _say(
        marker,
        "saw",
        n=_hex(coll.peek(b"n")),
        parent_keys=sum(1 for k in keys if k.startswith(b"parent/")),
        child_keys=sum(1 for k in keys if k.startswith(b"child/")),
    )


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m sectorhooks.testing.kv_child SPEC_JSON (run by the KV suite)")
    spec = json.loads(args[0])
    target = PluginUnderTest(Path(spec["path"]), spec["meta"])
    with started_host(target, Path(spec["data_dir"]), Kind.KV_STORE) as host:
        store = open_kv(host, target)
        try:
            run(store, spec)
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
