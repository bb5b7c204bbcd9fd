"""The client protocol machinery shared by server sessions and the client library.

Pure and synchronous: :mod:`.framing` turns bytes into messages,
:mod:`.flow` keeps the ``wseq``/``ack`` stream windows. No sockets here.
"""

from .flow import RecvWindow, SendWindow
from .framing import MessageReader, ProtocolError

__all__ = ["MessageReader", "ProtocolError", "RecvWindow", "SendWindow"]
