"""Sector models plugins receive, after damocles-manager's ``core.SectorState``.

All are frozen attrs classes with slots. Change a state with :func:`attrs.evolve`; encode with
``sectorhooks_spec.codec`` (``dumps`` / ``loads``), which round-trips every model losslessly.
"""

from __future__ import annotations

import enum
from typing import Optional, Tuple

import attrs


def _non_negative(instance: object, attribute: attrs.Attribute, value: int) -> None:  # type: ignore[type-arg]
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


class Workspace(str, enum.Enum):
    """Where a sector's state lives: online while sealing, offline once finalized."""

    ONLINE = "online"
    OFFLINE = "offline"


@attrs.frozen(order=True)
class SectorID:
    """A sector: the miner actor ID and the sector number, e.g. ``s-t01000-42``."""

    miner: int = attrs.field(validator=_non_negative)
    number: int = attrs.field(validator=_non_negative)

    def __str__(self) -> str:
        return f"s-t0{self.miner}-{self.number}"

    @property
    def key(self) -> str:
        """The canonical string key (sortable per miner): ``<miner>/<number>`` zero-padded."""
        return f"{self.miner:020d}/{self.number:020d}"


@attrs.frozen
class Ticket:
    """Sealing randomness drawn at pre-commit time."""

    ticket: str  # hex
    epoch: int


@attrs.frozen
class Seed:
    """Interactive randomness drawn after pre-commit lands."""

    seed: str  # hex
    epoch: int


@attrs.frozen
class Piece:
    """A piece (deal or filler) packed into the sector."""

    cid: str
    size: int
    offset: int = 0
    payload_size: int = 0
    deal_id: Optional[int] = None


@attrs.frozen
class PreCommitInfo:
    """Result of PC2: the replica commitment CommR and the data commitment CommD."""

    comm_r: str
    comm_d: str


@attrs.frozen
class ProofInfo:
    """The porep proof (hex)."""

    proof: str


@attrs.frozen
class MessageInfo:
    """Chain messages sent for this sector."""

    pre_commit_cid: Optional[str] = None
    commit_cid: Optional[str] = None
    need_send: bool = False


@attrs.frozen
class TerminateInfo:
    """Termination message and when it landed."""

    terminate_cid: Optional[str] = None
    terminated_at: Optional[int] = None
    added_height: Optional[int] = None


@attrs.frozen
class LatestState:
    """The last state report from a worker: the state the sector moved to, and why."""

    state: str
    prev_state: str = ""
    event: str = ""
    worker: str = ""
    failure: Optional[str] = None


@attrs.frozen
class UpgradedInfo:
    """Snap-deal upgrade result."""

    unsealed_cid: str
    sealed_cid: str
    proof: str = ""


@attrs.frozen
class SectorState:
    """Everything known about one sector. ``version`` grows by one on every change."""

    id: SectorID
    sector_type: int = 0
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
    abort_reason: str = ""
    upgraded: bool = False
    upgraded_info: Optional[UpgradedInfo] = None
    upgrade_message_id: Optional[str] = None
    upgrade_landed_epoch: Optional[int] = None
    imported: bool = False
    need_rebuild: bool = False
    unsealing: bool = False
    # ours
    version: int = attrs.field(default=0, validator=_non_negative)
    updated_at: float = 0.0  # unix seconds

    @property
    def state_name(self) -> str:
        """Name of the latest reported state, or ``""`` before any report."""
        return self.latest_state.state if self.latest_state is not None else ""


@attrs.frozen
class AllocatedSector:
    """A freshly allocated sector number, as ``OnInit`` receives them."""

    id: SectorID
    proof_type: int


#: Field names of :class:`SectorState` that ``SectorStateManager.update`` may change.
UPDATABLE_FIELDS = frozenset(
    f.name for f in attrs.fields(SectorState) if f.name not in ("id", "version", "updated_at")
)
