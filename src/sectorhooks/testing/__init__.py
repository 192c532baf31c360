"""``sectorhooks.testing``: the plugin conformance suites, installed as a pytest plugin.

Run them against any plugin directory::

    pytest --sectorhooks-plugin path/to/plugin [--sectorhooks-meta key=value ...]

The plugin's ``kind`` picks the suite (KVStore, FileStore or SyncSectorState) and the report
shows one test per contract. Without ``--sectorhooks-plugin`` the plugin does nothing (it is
loaded into every pytest run once sectorhooks is installed: entry point ``pytest11``), and a
project can run the same suites over its own backends by importing a suite module's tests and
overriding the ``sectorhooks_target`` fixture (see :mod:`sectorhooks.testing.target`).

Modules: :mod:`.plugin` (options, fixtures, report), :mod:`.target` (how a plugin under test is
loaded and opened), :mod:`.kv_contracts`, :mod:`.filestore_contracts`, :mod:`.sync_contracts`,
:mod:`.kv_child` (the second process of the KV suite's multi-process contract).
Nothing is imported here: the pytest entry point must stay cheap.
"""
