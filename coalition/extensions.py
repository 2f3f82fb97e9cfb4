"""Packages higher in the layer stack (partners, settlement) extend lower ones by module name,
so that ``coalition`` and ``partners`` never import upward."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType


def installed(module_names: tuple[str, ...]) -> Iterator[ModuleType]:
    """The modules that exist, in order; a module that is absent is skipped, a module that
    fails to import for any other reason raises."""
    for name in module_names:
        try:
            yield importlib.import_module(name)
        except ModuleNotFoundError as missing:
            if missing.name != name:
                raise
