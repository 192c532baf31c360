"""Sector models plugins receive, after damocles-manager's ``core.SectorState``.

All are frozen attrs classes with slots. Change a state with :func:`attrs.evolve`; encode with
``sectorhooks_spec.codec`` (``dumps`` / ``loads``), which round-trips every model losslessly.

The models declare what every sink can store, and refuse anything else when built (attrs
validators, so the codec, the state manager and the JSON-RPC gateway all enforce the same
bounds): integers are signed 64-bit (``INT64_MIN`` .. ``INT64_MAX``) and non-negative where the
domain says so (miner ids, sector numbers, proof types, epochs, sizes, versions), strings are
valid UTF-8 (no lone surrogates), floats are finite. A value out of bounds raises
:class:`ValueOutOfBounds` (a ``ValueError``) naming the field; the codec turns it into a
``DecodeError`` naming the field's path. Types are the codec's business (and the state
manager's): a validator only bounds values of its field's type.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Optional, Tuple

import attrs

#: The range of a signed 64-bit integer: what every sink's integer columns (BIGINT) can hold.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class ValueOutOfBounds(ValueError):
    """A model field was given a value no sink can store; ``field`` names it, ``reason`` says why."""

    def __init__(self, field: str, reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"{field} {reason}")


def int_problem(value: int, minimum: int = INT64_MIN) -> Optional[str]:
    """Why ``value`` is not a storable integer of at least ``minimum``, or ``None``."""
    if minimum <= value <= INT64_MAX:
        return None
    if value < minimum:
        bound = "must be >= 0" if minimum == 0 else "is below the signed 64-bit range"
    else:
        bound = f"is above the signed 64-bit range (at most {INT64_MAX})"
    return f"{bound}, got {_short(value)}"


def text_problem(value: str) -> Optional[str]:
    """Why ``value`` is not storable text (a lone surrogate: not valid UTF-8), or ``None``."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid UTF-8: lone surrogate {value[exc.start]!r} at index {exc.start}"
    return None


def float_problem(value: float) -> Optional[str]:
    """Why ``value`` is not a storable number (inf, NaN: not on every sink), or ``None``."""
    return None if math.isfinite(value) else f"must be a finite number, got {value!r}"


def _short(value: int) -> str:
    if value.bit_length() > 256:  # do not echo a huge number (str() of it is slow, or refused)
        return f"{'a negative' if value < 0 else 'an'} integer of {value.bit_length()} bits"
    return str(value)


# Validators: each bounds a value of its field's type; ``None`` and other types pass (types are
# the codec's business). They raise ValueOutOfBounds, which the codec turns into a DecodeError
# naming the field's path.


def int64(instance: object, attribute: Any, value: Any) -> None:
    """A signed 64-bit integer."""
    if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
        raise ValueOutOfBounds(attribute.name, int_problem(value) or "")


def non_negative(instance: object, attribute: Any, value: Any) -> None:
    """An integer from 0 to ``INT64_MAX``: ids, numbers, epochs, sizes, versions, proof types."""
    if type(value) is int and not 0 <= value <= INT64_MAX:
        raise ValueOutOfBounds(attribute.name, int_problem(value, 0) or "")


def valid_text(instance: object, attribute: Any, value: Any) -> None:
    """Valid UTF-8 (no lone surrogate)."""
    if type(value) is str and not value.isascii():
        problem = text_problem(value)
        if problem is not None:
            raise ValueOutOfBounds(attribute.name, problem)


def finite(instance: object, attribute: Any, value: Any) -> None:
    """A finite number (no sink stores inf/NaN everywhere)."""
    if type(value) is float and not math.isfinite(value):
        raise ValueOutOfBounds(attribute.name, float_problem(value) or "")


def check_storable(value: Any, where: str = "value") -> None:
    """Raise :class:`ValueOutOfBounds` (its ``field`` the path below ``where``) unless ``value``
    and everything in it can be stored by every sink: walks lists, tuples, dict keys and values,
    and attrs models field by field, with each field's own bounds (non-negative ids, epochs...:
    they hold even for an instance built with validators off). Values of other types are left
    to the type checks of the codec and the state manager."""
    if not _fits(value):  # on every change's path: the paths are only spelled out for an error
        _explain(value, where)
        raise ValueOutOfBounds(where, "cannot be stored")  # pragma: no cover - _explain raised


def _fits(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return value.isascii() or text_problem(value) is None
    if kind is int:
        number: int = value
        return INT64_MIN <= number <= INT64_MAX
    if kind is float:
        return math.isfinite(value)
    if kind is bool or value is None:
        return True
    if kind is list or kind is tuple:
        for item in value:
            if not _fits(item):
                return False
        return True
    if kind is dict:
        for key, item in value.items():
            if not (_fits(key) and _fits(item)):
                return False
        return True
    if attrs.has(kind):
        for field in attrs.fields(kind):
            item = getattr(value, field.name)
            if field.validator is non_negative and type(item) is int and item < 0:
                return False
            if not _fits(item):
                return False
    return True


def _explain(value: Any, where: str) -> None:
    """Raise the :class:`ValueOutOfBounds` of the first value in ``value`` that does not fit."""
    kind = type(value)
    if kind is str:
        problem = text_problem(value)
        if problem is not None:
            raise ValueOutOfBounds(where, problem)
    elif kind is int or kind is float:
        problem = int_problem(value) if kind is int else float_problem(value)
        if problem is not None:
            raise ValueOutOfBounds(where, problem)
    elif kind is list or kind is tuple:
        for i, item in enumerate(value):
            _explain(item, f"{where}[{i}]")
    elif kind is dict:
        for key, item in value.items():
            _explain(key, f"{where} key {str(key)[:40]!r}")
            _explain(item, f"{where}.{key}")
    elif attrs.has(kind):
        for field in attrs.fields(kind):
            item = getattr(value, field.name)
            if field.validator is non_negative and type(item) is int and item < 0:
                raise ValueOutOfBounds(f"{where}.{field.name}", int_problem(item, 0) or "")
            _explain(item, f"{where}.{field.name}")


class Workspace(str, enum.Enum):
    """Where a sector's state lives: online while sealing, offline once finalized."""

    ONLINE = "online"
    OFFLINE = "offline"


@attrs.frozen(order=True)
class SectorID:
    """A sector: the miner actor ID and the sector number, e.g. ``s-t01000-42``."""

    miner: int = attrs.field(validator=non_negative)
    number: int = attrs.field(validator=non_negative)

    def __str__(self) -> str:
        return f"s-t0{self.miner}-{self.number}"

    @property
    def key(self) -> str:
        """The canonical string key (sortable per miner): ``<miner>/<number>`` zero-padded."""
        return f"{self.miner:020d}/{self.number:020d}"


@attrs.frozen
class Ticket:
    """Sealing randomness drawn at pre-commit time."""

    ticket: str = attrs.field(validator=valid_text)  # hex
    epoch: int = attrs.field(validator=non_negative)


@attrs.frozen
class Seed:
    """Interactive randomness drawn after pre-commit lands."""

    seed: str = attrs.field(validator=valid_text)  # hex
    epoch: int = attrs.field(validator=non_negative)


@attrs.frozen
class Piece:
    """A piece (deal or filler) packed into the sector."""

    cid: str = attrs.field(validator=valid_text)
    size: int = attrs.field(validator=non_negative)
    offset: int = attrs.field(default=0, validator=non_negative)
    payload_size: int = attrs.field(default=0, validator=non_negative)
    deal_id: Optional[int] = attrs.field(default=None, validator=non_negative)


@attrs.frozen
class PreCommitInfo:
    """Result of PC2: the replica commitment CommR and the data commitment CommD."""

    comm_r: str = attrs.field(validator=valid_text)
    comm_d: str = attrs.field(validator=valid_text)


@attrs.frozen
class ProofInfo:
    """The porep proof (hex)."""

    proof: str = attrs.field(validator=valid_text)


@attrs.frozen
class MessageInfo:
    """Chain messages sent for this sector."""

    pre_commit_cid: Optional[str] = attrs.field(default=None, validator=valid_text)
    commit_cid: Optional[str] = attrs.field(default=None, validator=valid_text)
    need_send: bool = False


@attrs.frozen
class TerminateInfo:
    """Termination message and when it landed."""

    terminate_cid: Optional[str] = attrs.field(default=None, validator=valid_text)
    terminated_at: Optional[int] = attrs.field(default=None, validator=non_negative)
    added_height: Optional[int] = attrs.field(default=None, validator=non_negative)


@attrs.frozen
class LatestState:
    """The last state report from a worker: the state the sector moved to, and why."""

    state: str = attrs.field(validator=valid_text)
    prev_state: str = attrs.field(default="", validator=valid_text)
    event: str = attrs.field(default="", validator=valid_text)
    worker: str = attrs.field(default="", validator=valid_text)
    failure: Optional[str] = attrs.field(default=None, validator=valid_text)


@attrs.frozen
class UpgradedInfo:
    """Snap-deal upgrade result."""

    unsealed_cid: str = attrs.field(validator=valid_text)
    sealed_cid: str = attrs.field(validator=valid_text)
    proof: str = attrs.field(default="", validator=valid_text)


@attrs.frozen
class SectorState:
    """Everything known about one sector. ``version`` grows by one on every change."""

    id: SectorID
    sector_type: int = attrs.field(default=0, validator=non_negative)  # the registered seal proof
    ticket: Optional[Ticket] = None
    seed: Optional[Seed] = None
    pieces: Tuple[Piece, ...] = attrs.field(default=(), converter=tuple)
    pre: Optional[PreCommitInfo] = None
    proof: Optional[ProofInfo] = None
    message_info: MessageInfo = MessageInfo()
    terminate_info: TerminateInfo = TerminateInfo()
    latest_state: Optional[LatestState] = None
    finalized: bool = False
    removed: bool = False
    abort_reason: str = attrs.field(default="", validator=valid_text)
    upgraded: bool = False
    upgraded_info: Optional[UpgradedInfo] = None
    upgrade_message_id: Optional[str] = attrs.field(default=None, validator=valid_text)
    upgrade_landed_epoch: Optional[int] = attrs.field(default=None, validator=non_negative)
    imported: bool = False
    need_rebuild: bool = False
    unsealing: bool = False
    # ours
    version: int = attrs.field(default=0, validator=non_negative)
    updated_at: float = attrs.field(default=0.0, validator=finite)  # unix seconds

    @property
    def state_name(self) -> str:
        """Name of the latest reported state, or ``""`` before any report."""
        return self.latest_state.state if self.latest_state is not None else ""


@attrs.frozen
class AllocatedSector:
    """A freshly allocated sector number, as ``OnInit`` receives them."""

    id: SectorID
    proof_type: int = attrs.field(validator=non_negative)


#: Field names of :class:`SectorState` that ``SectorStateManager.update`` may change.
UPDATABLE_FIELDS = frozenset(
    f.name for f in attrs.fields(SectorState) if f.name not in ("id", "version", "updated_at")
)
