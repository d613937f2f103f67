"""Modules imported by a library at its import but only used by parts of it we never call.

Great Expectations imports every expectation it ships when it is imported, and one of them
(`expect_column_kl_divergence_to_be_less_than`, with two distribution tests among its metrics)
imports SciPy's statistics and Altair at the top of its module, to use them only inside its
methods. Importing those two costs ~0.9 CPU-seconds of GX's ~2.2 in every ingest process; our
suites (`gx_validation.build_suite`) only test columns for NULL and count rows.

`defer(name)` puts a stand-in for the module in `sys.modules`: importing it gives the stand-in,
and the first attribute read from it imports the real module and carries on with it. Nothing
changes for code that does use the module; it only pays the import when it first does.
(`importlib.util.LazyLoader` cannot serve here: on Python 3.11 the import system reads a
module's `__spec__` whenever it is imported again, and that read loads a lazy module.)
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

_lock = threading.Lock()


class _Deferred(types.ModuleType):
    """Stands in for a module not imported yet; any attribute it lacks imports the module."""

    def __getattr__(self, attr: str):
        real = _load(self)
        return getattr(real, attr)


def _load(stand_in: _Deferred) -> types.ModuleType:
    name = stand_in.__name__
    with _lock:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        real = importlib.import_module(name)
    # who kept a reference to the stand-in reads the module's own names from now on
    stand_in.__dict__.update(real.__dict__)
    return real


def defer(*names: str) -> None:
    """Defer the import of each module named that is installed and not imported yet."""
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        stand_in = _Deferred(name)
        stand_in.__spec__ = spec
        stand_in.__file__ = spec.origin
        sys.modules[name] = stand_in
