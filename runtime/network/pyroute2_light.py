"""pyroute2's netlink message classes without the cost of its package `__init__`.

`import pyroute2.netlink.rtnl.ifinfmsg` first runs `pyroute2/__init__.py`, which imports
IPRoute, NDB, IPDB, nftables and more: about 70 ms that `shoal run` would pay on every
bridged container start, for classes it never uses. `install()` registers the package
without running its `__init__`; the first access to a package-level name (`pyroute2.IPRoute`)
runs it then, so any other user of pyroute2 in the process sees the package as usual.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any


def install() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None:
        return  # not installed: the normal import will say so
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def load_on_first_use(name: str) -> Any:
        try:  # `from pyroute2 import config`: a submodule, no need for the package's init
            return importlib.import_module(f"pyroute2.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pyroute2.{name}":
                raise
        del package.__dict__["__getattr__"]  # a package-level name: run the real __init__
        loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = load_on_first_use  # type: ignore[method-assign]
    sys.modules["pyroute2"] = package
