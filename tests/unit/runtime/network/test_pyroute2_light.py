"""pyroute2's message classes load without its package init, and the package still works."""

from __future__ import annotations

import subprocess
import sys


def test_message_classes_without_the_package_init_then_the_full_package() -> None:
    probe = (
        "import sys; import runtime.network.bridge; "
        "print('pyroute2.iproute' in sys.modules); "
        "from pyroute2 import IPRoute; from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg; "
        "print(IPRoute.__name__, 'pyroute2.iproute' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "IPRoute", "True"]
