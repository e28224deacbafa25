"""Errors by fault, as in h11: the peer broke the protocol, or we misused the API."""


class ProtocolError(Exception):
    """Base class; the connection that raised it stays failed."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that breaks the RTMP protocol or one of our named limits."""


class LocalProtocolError(ProtocolError):
    """Our own code asked the connection for something its state does not allow."""
