# -*- test-case-name: tests.smtp.test_server,tests.pop3.test_server -*-
"""
What every protocol factory of mailhub does with its sessions: count them
per client address (refusing a peer over its limit), and close them all
when the server stops.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory


def peerHost(address: Any) -> str:
    """
    The client's IP address as text; an IPv4 client on an IPv6 socket
    (C{::ffff:192.0.2.1}) is given as IPv4, so that network lists match.
    """
    host = getattr(address, "host", "")
    if host.startswith("::ffff:"):
        try:
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
        except ValueError:
            mapped = None
        if mapped is not None:
            return str(mapped)
    return host


def inNetworks(host: str, networks: tuple[Any, ...]) -> bool:
    """
    Whether the address C{host} is in one of C{networks}.
    """
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


class Refuse(Protocol):
    """
    Says one line and hangs up: the answer to a peer over its connection
    limit.
    """

    def __init__(self, line: bytes) -> None:
        self.line = line

    def connectionMade(self) -> None:
        self.transport.write(self.line)
        self.transport.loseConnection()


class SessionFactory(ServerFactory):
    """
    A factory whose sessions (with a C{peer} attribute, a C{shutDown()}
    method and a transport) are counted per peer.

    Subclasses call L{initSessions} and use L{overLimit} in
    C{buildProtocol}; sessions call L{connected} and L{disconnected}.

    @ivar clock: the reactor's clock (for the shutdown grace period).
    @ivar perPeer: open sessions per client address.
    @ivar sessions: the open sessions.
    """

    clock: IReactorTime
    _drained: Deferred[None] | None = None

    def initSessions(self) -> None:
        self.perPeer: dict[str, int] = {}
        self.sessions: set[Any] = set()

    def overLimit(self, host: str, limit: int, exempt: tuple[Any, ...]) -> bool:
        """
        Whether a new connection from C{host} would be over C{limit}
        (networks in C{exempt} have none).
        """
        return self.perPeer.get(host, 0) >= limit and not inNetworks(host, exempt)

    def connected(self, session: Any) -> None:
        self.perPeer[session.peer] = self.perPeer.get(session.peer, 0) + 1
        self.sessions.add(session)

    def disconnected(self, session: Any) -> None:
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        left = self.perPeer.get(session.peer, 1) - 1
        if left:
            self.perPeer[session.peer] = left
        else:
            self.perPeer.pop(session.peer, None)
        if not self.sessions and self._drained is not None:
            drained, self._drained = self._drained, None
            drained.callback(None)

    def shutDown(self, grace: float = 10.0) -> Deferred[None]:
        """
        Close every session (each says goodbye in its protocol's words; one
        with a reply under way finishes it first).

        @param grace: seconds to wait before the connections left are
            aborted.
        @return: fires when every session is gone.
        """
        done: Deferred[None] = Deferred()
        if not self.sessions:
            done.callback(None)
            return done
        self._drained = done
        for session in list(self.sessions):
            session.shutDown()

        def abort() -> None:
            for session in list(self.sessions):
                session.transport.abortConnection()

        timer = self.clock.callLater(grace, abort)
        done.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return done


def setNoDelay(transport: object) -> None:
    """
    Set C{TCP_NODELAY} on a connection where the transport can.  Without
    it, a small write that follows a larger one the peer has not yet
    acknowledged (a POP3 or IMAP tagged reply after a message, the SMTP
    client's final dot after the data) waits for the peer's delayed ACK:
    40 ms on Linux (Nagle's algorithm).
    """
    noDelay = getattr(transport, "setTcpNoDelay", None)
    if noDelay is not None:
        try:
            noDelay(True)
        except OSError:
            pass
