"""Sector state: :class:`SectorStateManager`, the only writer, and where states live in the KV."""

from .manager import SectorStateManager
from .txn import COLLECTIONS

__all__ = ["COLLECTIONS", "SectorStateManager"]
