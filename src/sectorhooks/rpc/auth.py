"""Bearer tokens with read / write / admin permissions, stored hashed in the host's KV.

A token reads ``sh1.<id>.<secret>``: ``id`` (12 hex digits) names the record in the KV collection
``auth``, ``secret`` (32 random bytes, URL-safe base64) is shown once at creation and only its
SHA-256 is kept. A plain hash is enough here: a slow KDF protects guessable passwords, and these
secrets carry 256 random bits. Permissions nest like damocles-manager's: ``admin`` may do what
``write`` may, which may do what ``read`` may.

Verified tokens (and refused ones) are cached for ``cache_ttl`` seconds: a revocation made by this
process takes effect at once, one made elsewhere (``sectorhooks token revoke`` in another process,
another replica) within ``cache_ttl``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from typing import Any, Dict, List, Optional, Tuple, Union

import attrs

from sectorhooks_spec import KeyNotFound, KVStore

#: Permissions, weakest first; each includes the ones before it.
PERMISSIONS: Tuple[str, ...] = ("read", "write", "admin")
PERM_RANK: Dict[str, int] = {p: i for i, p in enumerate(PERMISSIONS)}
COLLECTION = "auth"
TOKEN_PREFIX = "sh1"
MAX_NAME = 64
_CACHE_MAX = 10_000


class _Miss:
    """Sentinel type: the cache does not know this token."""


MISS = _Miss()


@attrs.frozen
class TokenInfo:
    """What a token may do (never its secret)."""

    id: str
    name: str
    perm: str
    created_at: float
    tenant: str = ""  # for route gating per tenant (registry); "" = no tenant

    def as_dict(self) -> Dict[str, Any]:
        """JSON-friendly form, for ``token list`` and ``Auth.List``."""
        return {
            "id": self.id,
            "name": self.name,
            "perm": self.perm,
            "tenant": self.tenant,
            "created_at": self.created_at,
        }


@attrs.frozen
class CallContext:
    """Who is calling: the permission granted, the token (``None`` in dev mode), the client address."""

    perm: str
    token: Optional[TokenInfo] = None
    client: str = ""

    def allows(self, need: str) -> bool:
        """True if this caller's permission includes ``need``."""
        return PERM_RANK[self.perm] >= PERM_RANK[need]


def check_perm(perm: object, where: str = "permission") -> str:
    """Return ``perm`` if it is one of :data:`PERMISSIONS`, else raise ``ValueError`` listing them."""
    if perm not in PERMISSIONS:
        raise ValueError(f"{where} must be one of {', '.join(PERMISSIONS)}; got {perm!r}")
    return perm


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class TokenStore:
    """Create, list, revoke and verify API tokens kept in ``kv``'s ``auth`` collection."""

    def __init__(self, kv: KVStore, *, cache_ttl: float = 1.0):
        self.kv = kv
        self.cache_ttl = cache_ttl
        self._coll = kv.open_collection(COLLECTION)
        self._cache: Dict[str, Tuple[Optional[TokenInfo], float]] = {}
        self._lock = threading.Lock()

    def create(self, perm: str, name: str = "", tenant: str = "") -> Tuple[str, TokenInfo]:
        """A new token: returns ``(token, info)``; the token text is not stored and cannot be shown again."""
        check_perm(perm, "--perm")
        for what, value in (("name", name), ("tenant", tenant)):
            if len(value) > MAX_NAME or not value.isprintable():
                raise ValueError(
                    f"token {what} must be at most {MAX_NAME} printable characters; got {value!r:.80}"
                )
        tid = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        info = TokenInfo(tid, name, perm, time.time(), tenant)
        record = dict(info.as_dict(), sha256=_digest(secret))
        self._coll.put(tid.encode(), json.dumps(record).encode())
        return f"{TOKEN_PREFIX}.{tid}.{secret}", info

    def list(self) -> List[TokenInfo]:
        """Every live token, oldest first."""
        out = [self._info(json.loads(v)) for _, v in self._coll.scan()]
        return sorted(out, key=lambda i: (i.created_at, i.id))

    def revoke(self, token_id: str) -> TokenInfo:
        """Delete the token ``token_id``; raises ``KeyNotFound`` if there is none."""
        key = token_id.encode()
        info = self._info(json.loads(self._coll.get(key)))
        self._coll.delete(key)
        with self._lock:
            self._cache.clear()
        return info

    def verify(self, token: str) -> Optional[TokenInfo]:
        """The token's info if it is valid and not revoked, else ``None`` (reads the KV; cached)."""
        info = self._lookup(token)
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[token] = (info, time.monotonic() + self.cache_ttl)
        return info

    def cached(self, token: str) -> Union[TokenInfo, _Miss, None]:
        """The cached verdict on ``token`` (no I/O), or :data:`MISS`."""
        hit = self._cache.get(token)
        if hit is None or hit[1] < time.monotonic():
            return MISS
        return hit[0]

    def _lookup(self, token: str) -> Optional[TokenInfo]:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or len(parts[1]) > 64:
            return None
        try:
            raw = self._coll.get(parts[1].encode("utf-8", "replace"))
        except KeyNotFound:
            return None
        record = json.loads(raw)
        if not hmac.compare_digest(record.get("sha256", ""), _digest(parts[2])):
            return None
        return self._info(record)

    @staticmethod
    def _info(record: Dict[str, Any]) -> TokenInfo:
        return TokenInfo(
            record["id"],
            record.get("name", ""),
            record["perm"],
            record.get("created_at", 0.0),
            record.get("tenant", ""),
        )
