"""Where older releases kept the classes their model files name: so that those files still load.

A pickle names each class by module and name. Versions written by rareflow 0.1 name
``tasks.models.<Class>``; versions written by 0.2-0.4 name the flat modules of that layout
(``tasks.lean``, ``tasks.served``, ``tasks.estimators``, ``tasks.candidates``, ...). Since
tasks/ moved into stage packages, those modules no longer exist: :func:`old_class_paths` lends
their names to the unpickler (while a model file is read, and only then) from the modules that
hold the classes now. ``tests/unit/test_compat.py`` and ``test_compat_0_4.py`` load such
versions.

A class that moves again gets its old module here; a pickle never needs a module to exist at
its old path.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import types

#: Each old module path, and the modules (today's) whose names it lends.
OLD_MODULES: dict[str, tuple[str, ...]] = {
    "tasks.models": ("tasks.search.candidates", "tasks.search.estimators",
                     "tasks.search._fast_hgb", "tasks.decision.served_classifier"),
    "tasks.lean": ("tasks.search._fast_hgb",),
    "tasks.served": ("tasks.decision.served_classifier",),
    "tasks.estimators": ("tasks.search.estimators",),
    "tasks.candidates": ("tasks.search.candidates",),
    "tasks.pipeline": ("tasks.search.pipeline",),
    "tasks.resample": ("tasks.search.samplers",),
    "tasks.calibration": ("tasks.decision.calibration",),
    "tasks.fit": ("tasks.search.final_fit",),
}

_LENDING = threading.Lock()


class _OldModule(types.ModuleType):
    """An old module path whose names are looked up in today's modules."""

    def __init__(self, name: str, targets: tuple[str, ...]):
        super().__init__(name, f"rareflow's old class path {name} (see {__name__})")
        self.targets = targets

    def __getattr__(self, attr: str):
        for target in self.targets:
            module = importlib.import_module(target)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"{self.__name__}.{attr} is not among the classes rareflow keeps "
                             f"for old model files ({', '.join(self.targets)})")


@contextlib.contextmanager
def old_class_paths():
    """While inside, the old module paths of :data:`OLD_MODULES` resolve for the unpickler."""
    with _LENDING:
        lent = [name for name in OLD_MODULES if name not in sys.modules]
        for name in lent:
            sys.modules[name] = _OldModule(name, OLD_MODULES[name])
        try:
            yield
        finally:
            for name in lent:
                sys.modules.pop(name, None)
