"""Plugin registry (seed 002): records, routes, tenants, the scrape lease and the route gate.

Records live in the configured KVStore's ``public`` (routes, the scrape lease: what the gateway
reads) and ``private`` (plugin records, the id index) collections; see :mod:`.records` for the
exact shapes. Writes are optimistic KV transactions, retried on conflict.
"""

from ..errors import LeaseLost, NotRegisteredError
from .gate import ROUTE_REFUSED, RouteGate, tenant_of
from .lease import Lease, lease_factory
from .records import PRIVATE, PUBLIC, Identity, PluginEntry, Route, Status, Tenant, plugin_id
from .scrape import RegistryService, Scraper, addons_of, identity_of, open_registry, register_host
from .store import Registration, Registry

__all__ = [
    "PRIVATE",
    "PUBLIC",
    "ROUTE_REFUSED",
    "Identity",
    "Lease",
    "LeaseLost",
    "NotRegisteredError",
    "PluginEntry",
    "Registration",
    "Registry",
    "RegistryService",
    "Route",
    "RouteGate",
    "Scraper",
    "Status",
    "Tenant",
    "addons_of",
    "identity_of",
    "lease_factory",
    "open_registry",
    "plugin_id",
    "register_host",
    "tenant_of",
]
