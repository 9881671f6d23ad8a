"""Where nixpkgs' driver keeps its QMP client: ``test_driver.machine.qmp.QMPAPIError`` and the
client class are importable from here too (the client itself lives in ``test_driver.protocol.qmp``)."""

from ..errors import QMPAPIError, QMPError
from ..protocol.qmp import QMPClient

QMPSession = QMPClient
"""Upstream's name of the client class (``machine.qmp_client``)."""

__all__ = ["QMPAPIError", "QMPClient", "QMPError", "QMPSession"]
