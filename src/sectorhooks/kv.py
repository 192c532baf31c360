"""Host-side KV helpers: bounded, jittered retries of optimistic transactions, and ``[Common.DB]``.

``update`` is optimistic: a backend that loses a race raises ``TransactionConflict`` and writes
nothing. :func:`retry_update` runs the whole function again after a "full jitter" backoff
(a random delay in ``[0, min(max_delay, base_delay * 2**n))``), bounded both by a number of
attempts and by total time, then raises :class:`~sectorhooks.errors.KVRetryExhausted` naming
the collection, the attempts and the elapsed time. tenacity runs the retries (the first call
runs without it: the usual, conflict-free, call costs no retry machinery). Only conflicts are retried: a
``StoreUnavailable`` (server gone) or an exception of ``fn`` goes straight to the caller, and
so does ``CommitOutcomeUnknown`` (the commit may have applied: re-running could apply it twice).

**Paged scans.** ``scan(prefix, after=, limit=)`` is the SPI's page of a collection. A plugin
written to the older ``scan(prefix)`` still works: :func:`open_kvstore` finds out (``inspect.
signature`` of its collection's and its transaction's ``scan``), logs once that the plugin's
scans are not paged, and wraps the store (:func:`paged_store`) so every ``scan`` it hands out
takes ``after``/``limit``, served by filtering a full ``scan(prefix)``. :func:`scan_page` does
the same for one call on any object with a ``scan``; host code that may get a store not opened
here (tests, tools) calls it.

:func:`open_kvstore` opens the store config names (``[Common.DB] Driver = "plugin"``,
``[Common.DB.Plugin] PluginName``, ``Meta``) through the host, or, with no ``[Common.DB]``, the
bundled ``sqlkv`` on a SQLite file in the data directory, and wraps it in a
:class:`RetryingKVStore` whose ``update``/``view`` retry.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import random
import re
import threading
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Generator,
    Iterator,
    List,
    Mapping,
    NoReturn,
    Optional,
    Set,
    TypeVar,
    Union,
)

import attrs
import tenacity

from sectorhooks_spec.backend import check_key, check_limit
from sectorhooks_spec.errors import TransactionConflict
from sectorhooks_spec.kinds import Kind
from sectorhooks_spec.kvstore import Collection, GuardedPut, Item, KVIterator, KVStore, StoreTxn, Txn

from .errors import ConfigError, KVRetryExhausted, PluginCallError

if TYPE_CHECKING:
    from pathlib import Path

    from .config import HostConfig
    from .host import PluginHost

T = TypeVar("T")
log = logging.getLogger(__name__)

#: The KVStore plugin and file used when the config has no ``[Common.DB]``.
DEFAULT_PLUGIN = "sqlkv"
DEFAULT_FILE = "kv.sqlite3"
_STORE_METHODS = ("open_collection", "view", "update", "close")


@attrs.frozen
class RetryPolicy:
    """How often and how long to retry a conflicting transaction."""

    attempts: int = 30
    max_seconds: float = 10.0
    base_delay: float = 0.002
    max_delay: float = 0.25

    def __attrs_post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if self.max_seconds <= 0 or self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError(f"RetryPolicy needs max_seconds > 0 and 0 <= base_delay <= max_delay: {self}")

    def backoff(self, failures: int, rng: Optional[random.Random] = None) -> float:
        """Full-jitter delay after the ``failures``-th conflict (1-based)."""
        cap = min(self.max_delay, self.base_delay * (2 ** min(failures - 1, 62)))
        return (rng or random).uniform(0.0, cap)


DEFAULT_POLICY = RetryPolicy()

OnConflict = Callable[[int, TransactionConflict], None]


def _describe(target: Any) -> str:
    name = getattr(target, "name", None)
    return f"collection {name!r}" if isinstance(name, str) else f"store {target!r}"


class _Budget:
    """tenacity's callbacks for one retried call: the policy's attempts and time, on the caller's
    ``clock`` (tests pass a fake one), full-jitter waits, and :class:`KVRetryExhausted` at the end."""

    def __init__(
        self,
        what: str,
        policy: RetryPolicy,
        clock: Callable[[], float],
        rng: Optional[random.Random],
        on_conflict: Optional[OnConflict],
        start: float,
    ):
        self.what, self.policy, self.clock, self.rng, self.on_conflict = what, policy, clock, rng, on_conflict
        self.start = start

    def after(self, state: tenacity.RetryCallState) -> None:
        if self.on_conflict is not None:
            self.on_conflict(state.attempt_number, _conflict(state))

    def wait(self, state: tenacity.RetryCallState) -> float:
        return self.policy.backoff(state.attempt_number, self.rng)

    def stop(self, state: tenacity.RetryCallState) -> bool:
        """Out of attempts, or the next wait would end past ``max_seconds``."""
        if state.attempt_number >= self.policy.attempts:
            return True
        return self.clock() - self.start + state.upcoming_sleep > self.policy.max_seconds

    def give_up(self, state: tenacity.RetryCallState) -> NoReturn:
        exc = _conflict(state)
        raise KVRetryExhausted(self.what, state.attempt_number, self.clock() - self.start, exc) from exc


def _conflict(state: tenacity.RetryCallState) -> TransactionConflict:
    exc = state.outcome.exception() if state.outcome is not None else None
    assert isinstance(exc, TransactionConflict)  # only conflicts are retried
    return exc


def _retry(
    run: Callable[[], T],
    what: str,
    policy: RetryPolicy,
    sleep: Callable[[float], Any],
    clock: Callable[[], float],
    rng: Optional[random.Random],
    on_conflict: Optional[OnConflict],
) -> T:
    start = clock()
    try:
        return run()  # the usual call: no conflict, no retry machinery (tenacity costs ~10 us a call)
    except TransactionConflict as exc:
        first: List[TransactionConflict] = [exc]
    budget = _Budget(what, policy, clock, rng, on_conflict, start)

    def attempt() -> T:
        if first:  # tenacity's attempt 1 is the call above: hand it its conflict, do not run again
            raise first.pop()
        return run()

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransactionConflict),
        after=budget.after,
        wait=budget.wait,
        stop=budget.stop,
        retry_error_callback=budget.give_up,
        sleep=sleep,
    )
    return retrying(attempt)


def retry_update(
    target: Union[Collection, KVStore],
    fn: Callable[[Any], T],
    policy: RetryPolicy = DEFAULT_POLICY,
    *,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Optional[random.Random] = None,
    on_conflict: Optional[OnConflict] = None,
    what: Optional[str] = None,
) -> T:
    """``target.update(fn)``, run again on ``TransactionConflict`` within ``policy``.

    ``fn`` may run several times: keep side effects out of it (or make them idempotent). ``what``
    names the target in :class:`KVRetryExhausted` (default: its collection or store).
    """
    what = what or _describe(target)
    return _retry(lambda: target.update(fn), what, policy, sleep, clock, rng, on_conflict)


def retry_view(
    target: Union[Collection, KVStore],
    fn: Callable[[Any], T],
    policy: RetryPolicy = DEFAULT_POLICY,
    *,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Optional[random.Random] = None,
    on_conflict: Optional[OnConflict] = None,
    what: Optional[str] = None,
) -> T:
    """``target.view(fn)`` with the same retries (a backend without snapshots may conflict)."""
    what = what or _describe(target)
    return _retry(lambda: target.view(fn), what, policy, sleep, clock, rng, on_conflict)


# --- paged scans --------------------------------------------------------------------------

#: Collection :func:`paged_store` opens to look at a store's ``scan`` signatures (nothing is written).
PROBE_COLLECTION = "sectorhooks.probe"
_PAGED_KEYWORDS = ("after", "limit")
#: Plugins whose unpaged scans were already logged (once per process; a test may discard one).
WARNED_NOT_PAGED: Set[str] = set()


def scan_is_paged(scan: Callable[..., Any]) -> bool:
    """True when a ``scan`` callable takes the ``after`` and ``limit`` keywords (or ``**kwargs``)."""
    try:
        params = inspect.signature(scan).parameters
    except (TypeError, ValueError):  # no signature to read: assume the older one
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return all(name in params and params[name].kind in keyword for name in _PAGED_KEYWORDS)


def _is_paged(target: Any) -> bool:
    """Whether ``target.scan`` takes ``after``/``limit``: read from its signature at each page
    (a few microseconds against a page's KV read; no cache to keep right)."""
    return scan_is_paged(target.scan)


def scan_page(
    target: Any, prefix: bytes = b"", *, after: Optional[bytes] = None, limit: Optional[int] = None
) -> KVIterator:
    """``target.scan(prefix, after=after, limit=limit)``; when ``target``'s ``scan`` predates the
    keywords, the same items from a full ``scan(prefix)``: keys up to ``after`` skipped, closed
    after ``limit`` items."""
    if after is None and limit is None:
        return target.scan(prefix)  # type: ignore[no-any-return]
    if _is_paged(target):
        return target.scan(prefix, after=after, limit=limit)  # type: ignore[no-any-return]
    return _filtered(target.scan(prefix), None if after is None else check_key(after), check_limit(limit))


def _filtered(items: KVIterator, after: Optional[bytes], limit: Optional[int]) -> Generator[Item, None, None]:
    with contextlib.closing(items):
        if limit == 0:
            return
        for key, value in items:
            if after is not None and key <= after:
                continue
            yield key, value
            if limit is not None:
                limit -= 1
                if limit == 0:
                    return


class PagedScans:
    """A KVStore plugin's store, collection or transaction whose ``scan`` predates ``after`` and
    ``limit``: ``scan`` pages through :func:`scan_page`; what ``open_collection``,
    ``collection``, ``view`` and ``update`` hand out is wrapped the same way; everything else is
    the plugin's own (``put_many_if`` included)."""

    def __init__(self, inner: Any):
        self.inner = inner

    def __repr__(self) -> str:
        return f"<paged by filtering {self.inner!r}>"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def scan(
        self, prefix: bytes = b"", *, after: Optional[bytes] = None, limit: Optional[int] = None
    ) -> KVIterator:
        return scan_page(self.inner, prefix, after=after, limit=limit)

    def get(self, key: bytes) -> bytes:
        return self.inner.get(key)  # type: ignore[no-any-return]

    def peek(self, key: bytes) -> Optional[bytes]:
        return self.inner.peek(key)  # type: ignore[no-any-return]

    def put(self, key: bytes, value: bytes) -> None:
        self.inner.put(key, value)

    def delete(self, key: bytes) -> None:
        self.inner.delete(key)

    def collection(self, name: str) -> PagedScans:
        return PagedScans(self.inner.collection(name))

    def open_collection(self, name: str) -> PagedScans:
        return PagedScans(self.inner.open_collection(name))

    def view(self, fn: Callable[[Any], T]) -> T:
        return self.inner.view(lambda t: fn(PagedScans(t)))  # type: ignore[no-any-return]

    def update(self, fn: Callable[[Any], T]) -> T:
        return self.inner.update(lambda t: fn(PagedScans(t)))  # type: ignore[no-any-return]

    def close(self) -> None:
        self.inner.close()


def paged_store(store: KVStore, plugin: str = "") -> KVStore:
    """``store`` itself when its collections' and transactions' ``scan`` take ``after``/``limit``;
    else ``store`` wrapped in :class:`PagedScans`, with a warning logged once per plugin."""
    if isinstance(store, PagedScans):
        return store
    native = _is_paged(store.open_collection(PROBE_COLLECTION)) and store.view(
        lambda t: _is_paged(t.collection(PROBE_COLLECTION))
    )
    if native:
        return store
    who = plugin or type(store).__name__
    if who not in WARNED_NOT_PAGED:
        WARNED_NOT_PAGED.add(who)
        log.warning(
            "KVStore plugin %r: scan(prefix) takes no after/limit keywords, so its scans are not "
            "paged: the host pages them by filtering a full scan (every page reads from the "
            "prefix's first key); give scan the keywords after= and limit= "
            "(sectorhooks_spec.kvstore.Txn.scan)",
            who,
        )
    return PagedScans(store)


class _Counter:
    """Thread-safe count of conflicts seen by a :class:`RetryingKVStore`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def __call__(self, attempt: int, exc: TransactionConflict) -> None:
        with self._lock:
            self.value += 1


class RetryingCollection:
    """A collection whose ``update``/``view`` retry conflicts; the rest is passed through."""

    def __init__(self, inner: Collection, policy: RetryPolicy, counter: Optional[_Counter] = None):
        self.inner, self.policy = inner, policy
        self.name = inner.name
        self._counter = counter or _Counter()

    def __repr__(self) -> str:
        return f"<retrying {self.inner!r}>"

    def get(self, key: bytes) -> bytes:
        return self.inner.get(key)

    def peek(self, key: bytes) -> Optional[bytes]:
        return self.inner.peek(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.inner.put(key, value)

    def delete(self, key: bytes) -> None:
        self.inner.delete(key)

    def scan(
        self, prefix: bytes = b"", *, after: Optional[bytes] = None, limit: Optional[int] = None
    ) -> KVIterator:
        return scan_page(self.inner, prefix, after=after, limit=limit)

    def view(self, fn: Callable[[Txn], T]) -> T:
        return retry_view(self.inner, fn, self.policy, on_conflict=self._counter)

    def update(self, fn: Callable[[Txn], T]) -> T:
        return retry_update(self.inner, fn, self.policy, on_conflict=self._counter)


class RetryingKVStore:
    """A KVStore whose ``update``/``view`` (and its collections') retry conflicts.

    ``conflicts`` counts the conflicts retried or given up on since the store was opened.
    """

    def __init__(self, inner: KVStore, policy: RetryPolicy = DEFAULT_POLICY, plugin: str = ""):
        self.inner, self.policy, self.plugin = inner, policy, plugin
        self._counter = _Counter()

    def __repr__(self) -> str:
        return f"<retrying {self.inner!r}>"

    @property
    def conflicts(self) -> int:
        return self._counter.value

    def open_collection(self, name: str) -> RetryingCollection:
        return RetryingCollection(self.inner.open_collection(name), self.policy, self._counter)

    def view(self, fn: Callable[[StoreTxn], T]) -> T:
        return retry_view(self.inner, fn, self.policy, on_conflict=self._counter)

    def update(self, fn: Callable[[StoreTxn], T]) -> T:
        return retry_update(self.inner, fn, self.policy, on_conflict=self._counter)

    def close(self) -> None:
        self.inner.close()


def guarded_put(store: KVStore) -> Optional[GuardedPut]:
    """The store's own ``put_many_if`` (the ``GuardedPut`` capability), through the retrying
    wrapper, or ``None``: a caller that gets ``TransactionConflict`` from it falls back to an
    ``update``, which retries."""
    inner = store.inner if isinstance(store, RetryingKVStore) else store
    return inner if isinstance(inner, GuardedPut) else None


#: Database driver modules SQLAlchemy URLs name, and the extra of ``sectorhooks`` that installs each.
DRIVER_EXTRAS = {"psycopg": "postgres", "psycopg2": "postgres", "pymysql": "mysql", "MySQLdb": "mysql"}


def missing_driver_message(exc: ModuleNotFoundError) -> str:
    """``No module named 'psycopg'`` with the command that installs it, when it is a known driver."""
    text = str(exc)
    extra = DRIVER_EXTRAS.get((exc.name or "").split(".")[0])
    if extra is None or "pip install" in text:
        return text
    return f"{text} (the database driver is not installed: pip install 'sectorhooks[{extra}]')"


def default_meta(data_dir: Path) -> Mapping[str, Any]:
    """Meta of the default store: sqlkv on ``<data_dir>/kv.sqlite3``."""
    from pathlib import Path

    path = Path(data_dir).expanduser().resolve() / DEFAULT_FILE
    return {"url": f"sqlite:///{path}"}


def open_kvstore(
    host: PluginHost, config: HostConfig, policy: RetryPolicy = DEFAULT_POLICY
) -> RetryingKVStore:
    """Open the KV store ``config`` names, through its plugin; see the module doc.

    Raises ``UnknownPluginError`` (listing the loaded KVStore plugins) for an unknown
    ``PluginName``, ``PluginCallError`` when the constructor fails (bad meta names the key) or
    returns something that is not a KVStore, ``StoreUnavailable`` when the server is down.
    """
    db = config.db
    if db is None:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        name, meta = DEFAULT_PLUGIN, default_meta(config.data_dir)
        where = f"{config.path}: no [Common.DB], so the default {DEFAULT_PLUGIN} on {meta['url']}"
    else:
        if db.driver != "plugin":
            raise ConfigError(
                config.path, "Common.DB.Driver", f"unsupported driver {db.driver!r}", 'use "plugin"'
            )
        name, meta = db.plugin_name, dict(db.meta)
        where = f"{config.path}: [Common.DB.Plugin] PluginName = {name!r}"
    try:
        store = host.call_driver(Kind.KV_STORE, name, "kvstore_constructor", where=where, meta=meta)
    except PluginCallError as exc:
        if isinstance(exc.exc, ModuleNotFoundError) and db is not None:
            # a database driver that is not installed: say which URL needs it and how to get it
            url = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", str(meta.get("url", "")))  # no password
            message = f"{url}: {missing_driver_message(exc.exc)}"
            raise ConfigError(config.path, "Common.DB.Plugin.Meta.url", message) from exc
        raise
    missing = [m for m in _STORE_METHODS if not callable(getattr(store, m, None))]
    if missing:
        raise PluginCallError(
            name,
            "kvstore_constructor",
            TypeError(
                f"Constructor returned {type(store).__name__}, not a KVStore (no {', '.join(missing)})"
            ),
        )
    return RetryingKVStore(paged_store(store, name), policy, plugin=name)


@contextlib.contextmanager
def kv_only(config: HostConfig) -> Iterator[KVStore]:
    """Just the host's KV store (KVStore plugins loaded and started, nothing else), closed on exit:
    for commands that read or write the KV without running a host (``token``, ``demo``'s checks)."""
    from .host import PluginHost

    with PluginHost(config).load() as host:
        host.start(kinds=[Kind.KV_STORE])
        kv = open_kvstore(host, config)
        try:
            yield kv
        finally:
            kv.close()
