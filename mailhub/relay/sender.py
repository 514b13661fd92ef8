# -*- test-case-name: tests.relay.test_sender -*-
"""
Deliver one domain's recipients of a queued message to the remote MX (or a
smarthost) in one SMTP transaction, and say what happened to each recipient.

L{SMTPSender.deliver} is the courier: it finds the hosts (L{MXResolver}, or
a L{Route} from the configuration), connects to each address in turn until
one takes the transaction, and returns an L{Outcome} per recipient.

The client protocol is our own small one on L{LineReceiver}, not Twisted's
C{ESMTPClient}: that one retries inside its factory, reports through
C{sentMail} once for all recipients, has no per-step timeouts, sends no
C{SIZE=} or C{BODY=} and cannot fall back to plain text when TLS fails.
What is Twisted's here is the transport: TCP endpoints on the injected
reactor, C{startTLS} with L{optionsForClientTLS} (C{service_identity})
for the certificate check, L{IHandshakeListener} to know when it is done.

A session goes::

    connect (Timeouts.connect)
    greeting 220 (Timeouts.greeting)        else: next host
    EHLO (HELO if EHLO is refused)
    STARTTLS if offered, then EHLO again    RFC 3207
    AUTH PLAIN, only after TLS              RFC 4954, smarthosts
    SIZE and 8BITMIME checks                RFC 1870, RFC 6152
    MAIL FROM:<s> [SIZE=n] [BODY=8BITMIME]  (Timeouts.mail)
    RCPT TO:<r> for each                    (Timeouts.rcpt)
    DATA (Timeouts.dataInit), the message (Timeouts.dataBlock between
    writes), "." (Timeouts.dataEnd)
    QUIT

A connection failure, a greeting other than 220, a C{421} at any step, a
lost connection or a timeout before the end of the data, or a TLS failure
makes the host fail: the recipients not yet answered go to the next host.
Replies to MAIL, RCPT and DATA are final for this attempt: C{5xx} is
permanent, anything else transient.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import IO, Any, Iterable, Sequence

from attrs import field, frozen
from OpenSSL import SSL
from service_identity import VerificationError
from service_identity.pyopenssl import verify_hostname, verify_ip_address
from twisted.internet.defer import CancelledError, Deferred, DeferredList
# Documented, but exported only from this private module.
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IPullProducer,
    IReactorTCP,
    IReactorTime,
    IResolver,
)
from twisted.internet.protocol import Factory
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    TLSVersion,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from mailhub.errors import DeliveryError
from mailhub.relay.mx import MXHost, MXResolver, normalizeName
from mailhub.relay.values import Outcome
from mailhub.sessions import setNoDelay

__all__ = [
    "TLS_OPPORTUNISTIC",
    "TLS_REQUIRE",
    "TLS_VERIFY",
    "Timeouts",
    "Route",
    "parseRoute",
    "Reply",
    "SMTPSender",
]

#: STARTTLS when offered, any certificate; plain text if TLS fails.
TLS_OPPORTUNISTIC = "opportunistic"
#: STARTTLS must be offered and succeed; any certificate.
TLS_REQUIRE = "require"
#: STARTTLS must succeed with a certificate valid for the host's name.
TLS_VERIFY = "verify"
TLS_POLICIES = frozenset({TLS_OPPORTUNISTIC, TLS_REQUIRE, TLS_VERIFY})

#: The port of MX hosts.
SMTP_PORT = 25

#: The most addresses tried in one delivery (like Postfix's
#: C{smtp_mx_address_limit}), so a domain with many MX hosts that all time
#: out does not hold a delivery for hours.
MAX_ADDRESSES = 10

#: Size of the chunks the message file is read and sent in.
CHUNK_SIZE = 2**16

#: The longest reply line taken, and the most lines of one reply.
MAX_LINE = 4096
MAX_REPLY_LINES = 200

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")


@frozen
class Timeouts:
    """
    How long to wait for each step, in seconds: RFC 5321 §4.5.3.2 values by
    default.

    @ivar connect: the TCP connection (not in the RFC).
    @ivar greeting: the C{220} greeting (§4.5.3.2.1).
    @ivar command: EHLO, STARTTLS with its handshake, AUTH (the RFC names
        none; the server's own timeout, §4.5.3.2.7).
    @ivar mail: the reply to MAIL (§4.5.3.2.2).
    @ivar rcpt: the reply to each RCPT (§4.5.3.2.3).
    @ivar dataInit: the C{354} to DATA (§4.5.3.2.4).
    @ivar dataBlock: between two writes of the message (§4.5.3.2.5).
    @ivar dataEnd: the reply to the final dot (§4.5.3.2.6).
    @ivar quit: the reply to QUIT and the closing of the connection.
    """

    connect: float = 30.0
    greeting: float = 300.0
    command: float = 300.0
    mail: float = 300.0
    rcpt: float = 300.0
    dataInit: float = 120.0
    dataBlock: float = 180.0
    dataEnd: float = 600.0
    quit: float = 30.0


@frozen
class Route:
    """
    Where to send a domain's mail instead of its MX hosts: a transport
    override or the smarthost.

    @ivar host: a host name or an address.
    @ivar port: the TCP port.
    @ivar mxLookup: look up the MX hosts of C{host} (C{False}: connect to
        C{host} itself; C{"[host]"} in a route string).
    @ivar tlsPolicy: the TLS policy for this route, overriding the sender's
        (C{None}: the sender's).  Under C{"verify"} the certificate must be
        valid for the host connected to: C{host} itself when there is no
        MX lookup (a smarthost's own name), else each MX host's name.
    @ivar username: AUTH PLAIN credentials for a smarthost, sent only over
        TLS (giving them makes TLS required), and only once the certificate
        is checked when the policy is C{"verify"}.
    @ivar password: the password for C{username}; never shown.
    """

    host: str
    port: int = SMTP_PORT
    mxLookup: bool = True
    tlsPolicy: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parseRoute(text: str) -> Route:
    """
    Parse a route string the way Postfix writes a next hop.

    C{"example.net"} and C{"example.net:2525"} look up the MX hosts of
    C{example.net}; C{"[smtp.example.net]:587"}, C{"[10.0.0.5]"} and
    C{"[2001:db8::5]:2525"} (or C{"[IPv6:2001:db8::5]"}) connect to that
    host.  The port is 25 unless given.

    @param text: the route.

    @return: the route, without a TLS policy or credentials.

    @raise ValueError: if it is not a route.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty route")
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed:
            raise ValueError(f"missing ']' in route {text!r}")
        if host.lower().startswith("ipv6:"):
            host = host[5:]
        mxLookup = False
        if rest and not rest.startswith(":"):
            raise ValueError(f"junk after ']' in route {text!r}")
        portText = rest[1:] if rest else None
    else:
        host, colon, portText_ = text.rpartition(":")
        if not colon:
            host, portText = text, None
        else:
            portText = portText_
        mxLookup = True
    host = host.strip()
    if not host or any(c.isspace() or c in "[]/@" for c in host):
        raise ValueError(f"bad host in route {text!r}")
    if ":" in host:
        # Only an IPv6 address in brackets may hold colons.
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad host in route {text!r}") from None
        if mxLookup:
            raise ValueError(f"an IPv6 address needs brackets: {text!r}")
    port = SMTP_PORT
    if portText is not None:
        if not portText.isdigit() or not 0 < int(portText) < 65536:
            raise ValueError(f"bad port in route {text!r}")
        port = int(portText)
    if mxLookup:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            # An address has no MX records: "1.2.3.4" means "[1.2.3.4]".
            mxLookup = False
    return Route(host if not mxLookup else normalizeName(host), port, mxLookup)


@frozen
class Reply:
    """
    One SMTP reply.

    @ivar code: the three-digit code.
    @ivar lines: the text of each line, without the code.
    """

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """
        The whole reply on one line, as people read it:
        C{"550 5.1.1 no such user"}.
        """
        return " ".join([str(self.code), *(line for line in self.lines if line)])

    @property
    def enhanced(self) -> str:
        """
        The RFC 3463 code that starts the reply (RFC 2034), if its class is
        the reply's; else C{""}.
        """
        match = _ENHANCED.match(self.lines[0] if self.lines else "")
        if match is None or match.group(1) != str(self.code)[0]:
            return ""
        return ".".join(match.groups())

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400


class _HostFailed(Exception):
    """
    This host cannot take the transaction: try the next one.

    @ivar outcome: what the recipients get if no host is left.
    """

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class _TLSFailed(_HostFailed):
    """
    The TLS handshake failed (or the certificate was refused).
    """


class _Done(Exception):
    """
    The transaction ended early with a final outcome for every recipient
    left (a refused MAIL, a message too big, 8-bit to a 7-bit server).
    """

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class _Stale(Exception):
    """
    A kept connection did not answer RSET: it was closed while idle, and
    nothing of this transaction was taken.
    """


class _StepFailed(Exception):
    """
    A step got no reply: the connection was lost or the step timed out.

    @ivar what: what happened, for people.
    @ivar reason: the connection's failure, if it was lost.
    """

    def __init__(self, what: str, reason: Failure | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.reason = reason

    @property
    def tls(self) -> bool:
        """
        Whether the connection was lost to a TLS error.
        """
        return self.reason is not None and self.reason.check(
            SSL.Error, VerificationError
        ) is not None


def _defaultEnhanced(code: int, enhanced: str) -> str:
    if enhanced:
        return enhanced
    return f"{str(code)[0]}.0.0" if code >= 200 else ""


def _fromReply(reply: Reply, host: str) -> Outcome:
    """
    The outcome a reply means: C{5xx} permanent, anything else that is not
    positive transient.
    """
    return Outcome(
        code=reply.code,
        text=reply.text,
        permanent=500 <= reply.code < 600,
        remoteMTA=host,
        enhanced=_defaultEnhanced(reply.code, reply.enhanced),
    )


def _isAddress(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class _DotStuffer:
    """
    Turn the message file's bytes into DATA content, one chunk at a time:
    line ends become CRLF, a dot that starts a line is doubled (RFC 5321
    §4.5.2), and the end is C{CRLF . CRLF}.  A CR that ends a chunk waits
    for the next one, so a CRLF is never split.  A bare CR is left as it
    is (the SMTP server refused it when the message was received).
    """

    def __init__(self) -> None:
        self._atLineStart = True
        self._heldCR = False

    def transform(self, chunk: bytes) -> bytes:
        if self._heldCR:
            chunk = b"\r" + chunk
            self._heldCR = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._heldCR = True
        if not chunk:
            return b""
        if chunk.count(b"\n") != chunk.count(b"\r\n"):
            # A bare LF (never in what our server queued) becomes CRLF.
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if self._atLineStart and chunk.startswith(b"."):
            chunk = b"." + chunk
        if b"\r\n." in chunk:
            chunk = chunk.replace(b"\r\n.", b"\r\n..")
        self._atLineStart = chunk.endswith(b"\r\n")
        return chunk

    def end(self) -> bytes:
        tail = b""
        if self._heldCR:
            tail = b"\r\n"
            self._heldCR = False
        elif not self._atLineStart:
            tail = b"\r\n"
        return tail + b".\r\n"


@implementer(IPullProducer)
class _MessageProducer:
    """
    Write the message file to the connection a chunk at a time, when the
    transport asks for more (so a big message is never all in memory).
    """

    def __init__(self, file: IO[bytes], protocol: "_ClientProtocol") -> None:
        self._file = file
        self._protocol = protocol
        self._stuffer = _DotStuffer()
        self._finished = False

    def resumeProducing(self) -> None:
        if self._finished:
            return
        chunk = self._file.read(CHUNK_SIZE)
        transport = self._protocol.transport
        assert transport is not None
        if len(chunk) == CHUNK_SIZE:
            data = self._stuffer.transform(chunk)
            if data:
                transport.write(data)
            self._protocol._blockSent()
            return
        # A short read is the end of the file: the last data and the final
        # dot go out in one write, not a dot alone after the data.
        self._finished = True
        transport.write(self._stuffer.transform(chunk) + self._stuffer.end())
        transport.unregisterProducer()
        self._protocol._messageSent()

    def stopProducing(self) -> None:
        self._finished = True


@implementer(IHandshakeListener)
class _ClientProtocol(LineReceiver):
    """
    The SMTP client's wire: replies read one at a time, each with a timeout,
    through the injected clock.  The session logic is in
    L{SMTPSender._session}.
    """

    MAX_LENGTH = MAX_LINE
    delimiter = b"\n"

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._lines: list[str] = []
        self._replies: list[Reply] = []
        self._waiter: Deferred[Any] | None = None
        self._waitingFor: str = ""
        self._timer: IDelayedCall | None = None
        self._lost: Failure | None = None
        self._broken: str | None = None
        self.closed: Deferred[None] = Deferred()
        #: The server's EHLO extensions, kept for the connection's reuse.
        self.extensions: dict[str, str] = {}

    # Receiving.

    def lineReceived(self, line: bytes) -> None:
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        if len(text) < 3 or not text[:3].isdigit() or text[3:4] not in ("", " ", "-"):
            self._protocolError(f"malformed reply line {text[:80]!r}")
            return
        self._lines.append(text[4:])
        if len(self._lines) > MAX_REPLY_LINES:
            self._protocolError("reply too long")
            return
        if text[3:4] == "-":
            return
        reply = Reply(int(text[:3]), tuple(self._lines))
        self._lines = []
        if reply.code < 200 or reply.code >= 600:
            self._protocolError(f"bad reply code {reply.code}")
            return
        self._replies.append(reply)
        self._deliverReply()

    def lineLengthExceeded(self, line: bytes) -> None:
        self._protocolError("reply line too long")

    def _protocolError(self, what: str) -> None:
        self._broken = what
        self._fail(_StepFailed(f"protocol error: {what}"))
        if self.transport is not None:
            self.transport.abortConnection()

    def _deliverReply(self) -> None:
        if self._replies and self._waiter is not None and self._waitingFor == "reply":
            waiter = self._take()
            waiter.callback(self._replies.pop(0))

    def _take(self) -> Deferred[Any]:
        waiter, self._waiter = self._waiter, None
        assert waiter is not None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        return waiter

    def _fail(self, error: Exception) -> None:
        if self._waiter is not None:
            self._take().errback(error)

    def _wait(self, kind: str, timeout: float, step: str) -> Deferred[Any]:
        assert self._waiter is None, "one step at a time"
        if self._broken is not None:
            return Deferred.fromCoroutine(_raise(_StepFailed(f"protocol error: {self._broken}")))
        if self._lost is not None and not (kind == "reply" and self._replies):
            return Deferred.fromCoroutine(_raise(self._lostError(step)))
        self._waiter = Deferred()
        self._waitingFor = kind
        self._timer = self._clock.callLater(timeout, self._timedOut, step, timeout)
        waiter = self._waiter
        if kind == "reply":
            self._deliverReply()
        return waiter

    def _timedOut(self, step: str, timeout: float) -> None:
        self._timer = None
        self._fail(_StepFailed(f"timeout after {timeout:g} s waiting for {step}"))
        if self.transport is not None:
            self.transport.abortConnection()

    def _lostError(self, step: str) -> _StepFailed:
        assert self._lost is not None
        if self._lost.check(ConnectionDone):
            what = f"connection closed by the remote while waiting for {step}"
        else:
            why = self._lost.getErrorMessage() or self._lost.type.__name__
            what = f"connection lost while waiting for {step}: {why}"
        return _StepFailed(what, self._lost)

    def connectionMade(self) -> None:
        setNoDelay(self.transport)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self._lost = reason
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._waiter is not None:
            step = self._waitingStep
            self._take().errback(self._lostError(step))
        self.closed.callback(None)

    @property
    def _waitingStep(self) -> str:
        return {"reply": "a reply", "tls": "the TLS handshake", "data": "the message to be sent"}.get(
            self._waitingFor, "the remote"
        )

    # Steps.

    def readReply(self, timeout: float, step: str) -> Deferred[Reply]:
        """
        The next reply.

        @param timeout: seconds to wait for it.
        @param step: what it answers, for the error (C{"the greeting"}).

        @return: a Deferred that fails with L{_StepFailed}.
        """
        return self._wait("reply", timeout, step)

    def command(self, line: str, timeout: float, step: str | None = None) -> Deferred[Reply]:
        """
        Send a command and read its reply.
        """
        if self._lost is None and self.transport is not None:
            self.transport.write(line.encode("utf-8") + b"\r\n")
        return self.readReply(timeout, step or f"the reply to {line.split(' ', 1)[0].split(':')[0]}")

    def send(self, lines: Sequence[str]) -> None:
        """
        Send several commands in one write, without reading their replies
        (RFC 2920 pipelining: read them with L{readReply}, in order).
        """
        if self._lost is None and self.transport is not None:
            self.transport.write(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))

    @property
    def usable(self) -> bool:
        """
        Whether the connection is still open and in step (for reuse).
        """
        return self._lost is None and self._broken is None and not self._replies and not self._lines

    def startTLS(self, creator: IOpenSSLClientConnectionCreator, timeout: float) -> Deferred[None]:
        """
        Start TLS (after C{220} to STARTTLS) and wait for the handshake.
        """
        waiter = self._wait("tls", timeout, "the TLS handshake")
        if self._lost is None and self.transport is not None:
            self.transport.startTLS(creator)  # type: ignore[attr-defined]
        return waiter

    def handshakeCompleted(self) -> None:
        if self._waiter is not None and self._waitingFor == "tls":
            self._take().callback(None)

    def sendMessage(self, file: IO[bytes], blockTimeout: float) -> Deferred[None]:
        """
        Send the message (after C{354}) and its final dot.
        """
        self._blockTimeout = blockTimeout
        waiter = self._wait("data", blockTimeout, "the remote to read the message")
        if self._lost is None and self.transport is not None:
            self.transport.registerProducer(_MessageProducer(file, self), False)
        return waiter

    def _blockSent(self) -> None:
        # RFC 5321 §4.5.3.2.5: the data block timeout runs from each write.
        if self._timer is not None and self._timer.active():
            self._timer.reset(self._blockTimeout)

    def _messageSent(self) -> None:
        if self._waiter is not None and self._waitingFor == "data":
            self._take().callback(None)

    def close(self, timeout: float) -> Deferred[None]:
        """
        Close the connection; abort it if it is not closed after C{timeout}.
        """
        if self._lost is None and self.transport is not None:
            self.transport.loseConnection()
            timer = self._clock.callLater(timeout, self.transport.abortConnection)
            self.closed.addBoth(lambda _: timer.cancel() if timer.active() else None)
        return self.closed


async def _raise(error: Exception) -> Any:
    raise error


async def _nothing() -> None:
    return None


class _ProtocolFactory(Factory):
    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock

    def buildProtocol(self, addr: Any) -> _ClientProtocol:
        protocol = _ClientProtocol(self.clock)
        protocol.factory = self
        return protocol


@implementer(IOpenSSLClientConnectionCreator)
class _AnyCertificate:
    """
    TLS that takes any certificate (opportunistic and C{require}), and
    records whether it would have passed C{verify}: a chain to the trust
    root and the host's name (C{service_identity}).
    """

    def __init__(self, hostname: str, trustRoot: IOpenSSLTrustRoot) -> None:
        self.hostname = hostname
        self.chainValid = True
        self.connection: SSL.Connection | None = None
        options = CertificateOptions(trustRoot=trustRoot, raiseMinimumTo=TLSVersion.TLSv1_2)
        self._context = options.getContext()

    def _verify(self, connection: SSL.Connection, certificate: Any, errno: int, depth: int, ok: int) -> bool:
        if not ok:
            self.chainValid = False
        return True

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        if not _isAddress(self.hostname):
            connection.set_tlsext_host_name(self.hostname.encode("idna"))
        connection.set_verify(SSL.VERIFY_PEER, self._verify)
        self.connection = connection
        return connection

    def verified(self) -> bool:
        """
        Whether the certificate the handshake got is valid for the host.
        """
        if not self.chainValid or self.connection is None:
            return False
        try:
            if _isAddress(self.hostname):
                verify_ip_address(self.connection, self.hostname)
            else:
                verify_hostname(self.connection, self.hostname)
        except Exception:
            return False
        return True


def _tlsVersion(transport: Any) -> str:
    getHandle = getattr(transport, "getHandle", None)
    try:
        connection = getHandle() if getHandle is not None else None
        if isinstance(connection, SSL.Connection):
            return str(connection.get_protocol_version_name())
    except Exception:
        pass
    return "unknown"


def _hasEightBit(file: IO[bytes]) -> bool:
    """
    Whether the message has a byte above 127, read a chunk at a time.
    """
    file.seek(0)
    try:
        while chunk := file.read(CHUNK_SIZE):
            if not chunk.isascii():
                return True
        return False
    finally:
        file.seek(0)


class _ConnectionCache:
    """
    Idle connections kept after a transaction, for the next message to the
    same host (like Postfix's connection cache): each is closed with QUIT
    after C{idleTimeout} seconds unused, and all when the sender stops.

    @param clock: schedules the idle timeouts.
    @param idleTimeout: how long a connection waits for its next message.
    @param maxIdle: the most idle connections kept per host.
    """

    def __init__(self, clock: IReactorTime, idleTimeout: float, maxIdle: int, quit: Any) -> None:
        self._clock = clock
        self._idleTimeout = idleTimeout
        self._maxIdle = maxIdle
        self._quit = quit
        self._idle: dict[tuple[Any, ...], list[tuple[_ClientProtocol, IDelayedCall]]] = {}
        self._closing: set[Deferred[None]] = set()

    def take(self, key: tuple[Any, ...]) -> _ClientProtocol | None:
        """
        An idle connection for C{key}, the most recently used, or C{None}.
        """
        idle = self._idle.get(key)
        while idle:
            protocol, timer = idle.pop()
            if timer.active():
                timer.cancel()
            if protocol.usable:
                if not idle:
                    del self._idle[key]
                return protocol
            self._close(protocol)
        self._idle.pop(key, None)
        return None

    def put(self, key: tuple[Any, ...], protocol: _ClientProtocol) -> bool:
        """
        Keep C{protocol} for the next transaction to C{key}.

        @return: whether it was kept (otherwise the caller closes it).
        """
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self._maxIdle or not protocol.usable:
            if not idle:
                del self._idle[key]
            return False
        timer = self._clock.callLater(self._idleTimeout, self._expire, key, protocol)
        idle.append((protocol, timer))
        return True

    def _expire(self, key: tuple[Any, ...], protocol: _ClientProtocol) -> None:
        idle = self._idle.get(key, [])
        self._idle[key] = [(p, t) for p, t in idle if p is not protocol]
        if not self._idle[key]:
            del self._idle[key]
        self._close(protocol)

    def _close(self, protocol: _ClientProtocol) -> None:
        d = Deferred.fromCoroutine(self._quit(protocol))
        self._closing.add(d)
        d.addBoth(lambda _: self._closing.discard(d))

    def closeAll(self) -> Deferred[Any]:
        """
        Close every idle connection (QUIT); fires when all are closed.
        """
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for protocol, timer in connections:
                if timer.active():
                    timer.cancel()
                self._close(protocol)
        return DeferredList(list(self._closing), consumeErrors=True)


class SMTPSender:
    """
    Delivers messages to remote SMTP servers: the relay's courier.

    @ivar hostname: the name given in EHLO.
    @ivar tlsPolicy: the TLS policy for domains without an override.
    @ivar policies: TLS policies by recipient domain.
    @ivar timeouts: the timeout of every step.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        resolver: IResolver,
        hostname: str,
        *,
        tlsPolicy: str = TLS_OPPORTUNISTIC,
        policies: dict[str, str] | None = None,
        timeouts: Timeouts = Timeouts(),
        localNames: Iterable[str] = (),
        trustRoot: Certificate | IOpenSSLTrustRoot | None = None,
        mxResolver: MXResolver | None = None,
        port: int = SMTP_PORT,
        connectionCacheTime: float = 0.0,
        connectionCacheSize: int = 20,
    ) -> None:
        """
        @param reactor: an L{IReactorTCP} and L{IReactorTime}: connections
            and every timeout go through it.
        @param resolver: the DNS resolver for MX and address lookups.
        @param hostname: this server's name, for EHLO (and a local name).
        @param tlsPolicy: C{"opportunistic"} (default), C{"require"} or
            C{"verify"}.
        @param policies: a TLS policy per recipient domain, overriding
            C{tlsPolicy}; a route's own policy overrides both.
        @param timeouts: how long each step may take.
        @param localNames: the names and addresses of this server; a host
            among them is never connected to (a loop, 5.4.6).
        @param trustRoot: the certificate authorities for C{verify} (and
            for the C{verified=} of other policies): a CA L{Certificate}
            or an L{IOpenSSLTrustRoot}; the platform's by default.
        @param mxResolver: the MX lookup (made from C{resolver} and
            C{localNames} by default; tests give one with a seeded random,
            the service one that knows its listeners).
        @param port: the port of MX hosts.
        @param connectionCacheTime: keep a connection this many seconds
            after a transaction for the next message to the same host
            (C{0}: close each after its transaction).
        @param connectionCacheSize: the most idle connections kept per
            host.

        @raise ValueError: for an unknown TLS policy.
        """
        assert IReactorTCP.providedBy(reactor) and IReactorTime.providedBy(reactor)
        self.reactor = reactor
        self.hostname = hostname
        self.policies = {normalizeName(d): p for d, p in (policies or {}).items()}
        for policy in [tlsPolicy, *self.policies.values()]:
            _checkPolicy(policy)
        self.tlsPolicy = tlsPolicy
        self.timeouts = timeouts
        self.port = port
        names = {hostname, *localNames}
        self.mx = mxResolver if mxResolver is not None else MXResolver(resolver, names)
        if isinstance(trustRoot, Certificate):
            trustRoot = trustRootFromCertificates([trustRoot])
        self._trustRoot = trustRoot
        self._cache: _ConnectionCache | None = None
        if connectionCacheTime > 0:
            self._cache = _ConnectionCache(reactor, connectionCacheTime, connectionCacheSize, self._quitAndClose)

    async def _quitAndClose(self, protocol: _ClientProtocol) -> None:
        await self._quit(protocol)
        await protocol.close(self.timeouts.quit)

    def close(self) -> Deferred[Any]:
        """
        Close the idle connections kept for reuse; fires when they are
        closed.
        """
        if self._cache is None:
            return Deferred.fromCoroutine(_nothing())
        return self._cache.closeAll()

    @property
    def trustRoot(self) -> IOpenSSLTrustRoot:
        if self._trustRoot is None:
            self._trustRoot = platformTrust()
        return self._trustRoot

    async def deliver(
        self,
        domain: str,
        route: Route | Sequence[Route] | None,
        sender: str,
        recipients: list[str],
        messagePath: str,
        size: int,
        *,
        queueId: str = "",
    ) -> dict[str, Outcome]:
        """
        Deliver a message to some recipients of one domain, in one SMTP
        transaction per host tried.

        @param domain: the recipients' domain.
        @param route: where to send it: C{None} for the domain's MX hosts,
            a L{Route}, or several tried in order (a smarthost and its
            backups).
        @param sender: the reverse-path, C{""} for C{<>}.
        @param recipients: the forward-paths.
        @param messagePath: the message file (as received, with headers).
        @param size: its size in octets (for C{SIZE=}).
        @param queueId: the queue id, for the log.

        @return: an L{Outcome} for every recipient.  Never fails.
        """
        recipients = list(dict.fromkeys(recipients))
        if not recipients:
            return {}
        routes: list[Route | None]
        if route is None or isinstance(route, Route):
            routes = [route]
        else:
            routes = list(route)
        try:
            file = open(messagePath, "rb")
        except OSError as e:
            self._log.error(
                "relay id={queueId} cannot open the message: {error}",
                queueId=queueId,
                error=e.strerror,
            )
            return self._all(recipients, Outcome(0, "cannot read the queued message", False, "", "4.3.0"))
        try:
            eightBit = _hasEightBit(file)
            return await self._deliverFile(domain, routes, sender, recipients, file, size, eightBit, queueId)
        finally:
            file.close()

    def _all(self, recipients: Iterable[str], outcome: Outcome) -> dict[str, Outcome]:
        return {r: outcome for r in recipients}

    def _policyFor(self, domain: str, route: Route | None) -> str:
        if route is not None and route.tlsPolicy is not None:
            return route.tlsPolicy
        return self.policies.get(normalizeName(domain), self.tlsPolicy)

    async def _hosts(self, domain: str, route: Route | None) -> list[tuple[MXHost, int]]:
        """
        The hosts to try for C{route} with their port; never one of our own
        listeners (the port is given for the L{MXResolver} to tell).
        """
        if route is None:
            return [(h, self.port) for h in await self.mx.mxHosts(domain, self.port)]
        if route.mxLookup:
            return [(h, route.port) for h in await self.mx.mxHosts(route.host, route.port)]
        return [(await self.mx.routeHost(route.host, route.port), route.port)]

    async def _deliverFile(
        self,
        domain: str,
        routes: list[Route | None],
        sender: str,
        recipients: list[str],
        file: IO[bytes],
        size: int,
        eightBit: bool,
        queueId: str,
    ) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        last: Outcome | None = None
        tried = 0
        for route in routes:
            try:
                hosts = await self._hosts(domain, route)
            except DeliveryError as e:
                last = Outcome(e.code, e.text, e.permanent, "", e.enhanced)
                if e.enhanced == "5.4.6":
                    self._log.warn(
                        "relay id={queueId} to=<{domain}> routing loop: {why}",
                        queueId=queueId, domain=domain, why=e.text,
                    )
                continue
            policy = self._policyFor(domain, route)
            for host, port in hosts:
                for address in host.addresses:
                    if tried >= MAX_ADDRESSES:
                        break
                    tried += 1
                    left = [r for r in recipients if r not in outcomes]
                    useTLS = True
                    while True:
                        try:
                            outcomes.update(
                                await self._session(
                                    host.name, address, port, route, policy, useTLS,
                                    sender, left, file, size, eightBit, domain, queueId,
                                )
                            )
                            return self._finish(recipients, outcomes, last)
                        except _TLSFailed as e:
                            last = e.outcome
                            self._log.warn(
                                "relay id={queueId} to=<{domain}> mx={mx} TLS failed: {why}",
                                queueId=queueId, domain=domain, mx=host.name, why=e.outcome.text,
                            )
                            if useTLS and policy == TLS_OPPORTUNISTIC:
                                # Opportunistic TLS: the same host once more,
                                # in plain text.
                                useTLS = False
                                continue
                            break
                        except _HostFailed as e:
                            last = e.outcome
                            self._log.info(
                                "relay id={queueId} to=<{domain}> mx={mx} [{address}] failed: {why}",
                                queueId=queueId, domain=domain, mx=host.name,
                                address=address, why=e.outcome.text,
                            )
                            break
        return self._finish(recipients, outcomes, last)

    def _finish(
        self, recipients: list[str], outcomes: dict[str, Outcome], last: Outcome | None
    ) -> dict[str, Outcome]:
        if last is None:
            last = Outcome(0, "no host to deliver to", False, "", "4.4.0")
        return {r: outcomes.get(r, last) for r in recipients}

    async def _connect(self, host: str, address: str, port: int) -> _ClientProtocol:
        endpointType = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
        endpoint = endpointType(self.reactor, address, port, timeout=self.timeouts.connect)
        try:
            protocol: _ClientProtocol = await endpoint.connect(_ProtocolFactory(self.reactor))
        except CancelledError:
            raise
        except Exception as e:
            raise _HostFailed(
                Outcome(0, f"cannot connect to {host} [{address}]:{port}: {_describe(e)}", False, host, "4.4.1")
            ) from None
        return protocol

    async def _session(
        self,
        host: str,
        address: str,
        port: int,
        route: Route | None,
        policy: str,
        useTLS: bool,
        sender: str,
        recipients: list[str],
        file: IO[bytes],
        size: int,
        eightBit: bool,
        domain: str,
        queueId: str,
    ) -> dict[str, Outcome]:
        """
        One transaction: on an idle connection to the same host kept from
        an earlier one when there is one, else on a new connection.

        @return: an outcome for every recipient.

        @raise _HostFailed: the next host should be tried.
        """
        key = (host, address, port, useTLS, policy, route.username if route is not None else None)
        args = (host, address, port, route, policy, useTLS, sender, recipients, file, size, eightBit, domain, queueId)
        if self._cache is not None:
            cached = self._cache.take(key)
            if cached is not None:
                try:
                    return await self._converse(cached, key, *args)
                except _Stale:
                    pass  # closed while idle: a new connection
        protocol = await self._connect(host, address, port)
        return await self._converse(protocol, None, *args)

    async def _converse(
        self,
        protocol: _ClientProtocol,
        reusedKey: tuple[Any, ...] | None,
        host: str,
        address: str,
        port: int,
        route: Route | None,
        policy: str,
        useTLS: bool,
        sender: str,
        recipients: list[str],
        file: IO[bytes],
        size: int,
        eightBit: bool,
        domain: str,
        queueId: str,
    ) -> dict[str, Outcome]:
        """
        The session on C{protocol}: greeting, EHLO, TLS and AUTH on a new
        connection (C{reusedKey} is C{None}); then the transaction, its
        commands pipelined where the server offers PIPELINING (RFC 2920).
        A reused connection starts with RSET, and if that is not answered
        the connection went away while idle: L{_Stale}, nothing was sent.
        After a whole transaction the connection is kept for the next one
        to the same host (when the sender caches connections).
        """
        t = self.timeouts
        outcomes: dict[str, Outcome] = {}
        dataSent = False
        keep = False
        key = reusedKey

        def failed(what: str, enhanced: str = "4.4.2") -> Outcome:
            return Outcome(0, f"{what} ({host} [{address}]:{port})", False, host, enhanced)

        try:
            if reusedKey is None:
                greeting = await protocol.readReply(t.greeting, "the greeting")
                if greeting.code != 220:
                    # RFC 5321 §3.1: a server that does not want to talk (421,
                    # 554): the next host may.
                    raise _HostFailed(_fromReply(greeting, host))
                extensions = await self._hello(protocol, host)
                tlsVersion = "none"
                verified = False
                if useTLS and "STARTTLS" in extensions:
                    tlsVersion, verified = await self._startTLS(protocol, host, policy)
                    extensions = await self._hello(protocol, host)
                elif policy != TLS_OPPORTUNISTIC or (route is not None and route.username):
                    await self._quit(protocol)
                    raise _HostFailed(
                        failed("TLS is required but the server does not offer STARTTLS", "4.7.10")
                    )
                self._log.info(
                    "relay id={queueId} to=<{domain}> mx={mx} tls={tls} verified={verified}",
                    queueId=queueId, domain=domain, mx=host, tls=tlsVersion, verified=verified,
                )
                if route is not None and route.username:
                    await self._auth(protocol, host, extensions, route, tlsVersion != "none")
                protocol.extensions = extensions
                key = (host, address, port, useTLS, policy, route.username if route is not None else None)
            extensions = protocol.extensions
            try:
                params = self._mailParameters(extensions, host, sender, recipients, size, eightBit)
            except _Done as done:
                await self._quit(protocol)
                return self._all(recipients, done.outcome)
            mail = f"MAIL FROM:<{sender}>{params}"
            pipelining = "PIPELINING" in extensions
            if pipelining:
                # RFC 2920 §3.1: RSET, MAIL, RCPT and DATA in one group.
                protocol.send(
                    (["RSET"] if reusedKey is not None else [])
                    + [mail]
                    + [f"RCPT TO:<{r}>" for r in recipients]
                    + ["DATA"]
                )
            if reusedKey is not None:
                try:
                    if pipelining:
                        reply = await protocol.readReply(t.mail, "the reply to RSET")
                    else:
                        reply = await protocol.command("RSET", t.mail, "the reply to RSET")
                except _StepFailed:
                    raise _Stale() from None
                if reply.code != 250:
                    raise _Stale()
            if pipelining:
                reply = await protocol.readReply(t.mail, "the reply to MAIL")
            else:
                reply = await protocol.command(mail, t.mail, "the reply to MAIL")
            self._check421(reply, host)
            mailAccepted = 200 <= reply.code < 300
            if not mailAccepted:
                outcomes = self._all(recipients, _fromReply(reply, host))
                if not pipelining:
                    await self._quit(protocol)
                    return outcomes
            accepted: list[str] = []
            for recipient in recipients:
                if pipelining:
                    reply = await protocol.readReply(t.rcpt, "the reply to RCPT")
                else:
                    reply = await protocol.command(f"RCPT TO:<{recipient}>", t.rcpt, "the reply to RCPT")
                self._check421(reply, host)
                if not mailAccepted:
                    continue
                if 200 <= reply.code < 300:
                    accepted.append(recipient)
                else:
                    outcomes[recipient] = _fromReply(reply, host)
            if not accepted and not pipelining:
                await self._quit(protocol)
                return outcomes
            if pipelining:
                reply = await protocol.readReply(t.dataInit, "the reply to DATA")
            else:
                reply = await protocol.command("DATA", t.dataInit, "the reply to DATA")
            self._check421(reply, host)
            if not accepted:
                if reply.code == 354:
                    # RFC 2920 §3.1: DATA taken with no recipient; the
                    # connection is closed without the final dot, so
                    # nothing is delivered.
                    return outcomes
                await self._quit(protocol)
                return outcomes
            if reply.code != 354:
                if reply.positive:
                    reply = Reply(451, ("4.5.0 unexpected reply to DATA: " + reply.text,))
                outcomes.update(self._all(accepted, _fromReply(reply, host)))
                await self._quit(protocol)
                return outcomes
            file.seek(0)
            await protocol.sendMessage(file, t.dataBlock)
            dataSent = True
            reply = await protocol.readReply(t.dataEnd, "the reply to the end of the data")
            outcomes.update(self._all(accepted, _fromReply(reply, host)))
            if reply.code != 421 and self._cache is not None and protocol.usable:
                keep = True
            else:
                await self._quit(protocol)
            return outcomes
        except _StepFailed as e:
            if e.tls:
                raise _TLSFailed(failed(f"TLS failed: {e.what}", "4.7.0")) from None
            if dataSent:
                # RFC 5321 §4.5.3.2.6: the message may have been taken; do
                # not hand it straight to another host.
                left = [r for r in recipients if r not in outcomes]
                outcomes.update(self._all(left, failed(e.what)))
                return outcomes
            raise _HostFailed(failed(e.what)) from None
        finally:
            if not (keep and self._cache is not None and key is not None and self._cache.put(key, protocol)):
                if keep:
                    await self._quit(protocol)
                await protocol.close(t.quit)

    def _check421(self, reply: Reply, host: str) -> None:
        # RFC 5321 §3.8: 421 means the server is closing the connection.
        if reply.code == 421:
            raise _HostFailed(_fromReply(reply, host))

    async def _hello(self, protocol: _ClientProtocol, host: str) -> dict[str, str]:
        """
        EHLO, or HELO if EHLO is refused (RFC 5321 §3.2).

        @return: the extensions, keyword (upper case) to parameters.
        """
        reply = await protocol.command(f"EHLO {self.hostname}", self.timeouts.command, "the reply to EHLO")
        self._check421(reply, host)
        if reply.code == 250:
            extensions: dict[str, str] = {}
            for line in reply.lines[1:]:
                keyword, _, params = line.strip().partition(" ")
                if keyword:
                    extensions[keyword.upper()] = params.strip()
            return extensions
        reply = await protocol.command(f"HELO {self.hostname}", self.timeouts.command, "the reply to HELO")
        self._check421(reply, host)
        if reply.code != 250:
            raise _HostFailed(
                Outcome(reply.code, reply.text, False, host, _defaultEnhanced(reply.code, reply.enhanced))
            )
        return {}

    async def _startTLS(self, protocol: _ClientProtocol, host: str, policy: str) -> tuple[str, bool]:
        """
        STARTTLS (RFC 3207) and the handshake.

        @return: the TLS version and whether the certificate is valid for
            C{host}.

        @raise _TLSFailed: the server refused, or the handshake failed.
        """
        reply = await protocol.command("STARTTLS", self.timeouts.command, "the reply to STARTTLS")
        self._check421(reply, host)
        if reply.code != 220:
            raise _TLSFailed(
                Outcome(reply.code, f"STARTTLS refused: {reply.text}", False, host,
                        _defaultEnhanced(reply.code, reply.enhanced).replace("5.", "4.", 1))
            )
        anyCertificate: _AnyCertificate | None = None
        creator: IOpenSSLClientConnectionCreator
        if policy == TLS_VERIFY:
            creator = optionsForClientTLS(
                host,
                trustRoot=self.trustRoot,
                extraCertificateOptions={"raiseMinimumTo": TLSVersion.TLSv1_2},
            )
        else:
            anyCertificate = _AnyCertificate(host, self.trustRoot)
            creator = anyCertificate
        try:
            await protocol.startTLS(creator, self.timeouts.command)
        except _StepFailed as e:
            raise _TLSFailed(
                Outcome(0, f"TLS failed with {host}: {e.what}", False, host, "4.7.0")
            ) from None
        verified = anyCertificate.verified() if anyCertificate is not None else True
        return _tlsVersion(protocol.transport), verified

    async def _auth(
        self, protocol: _ClientProtocol, host: str, extensions: dict[str, str], route: Route, encrypted: bool
    ) -> None:
        """
        AUTH PLAIN (RFC 4954, RFC 4616) with the route's credentials, only
        over TLS.
        """
        if not encrypted:
            raise _HostFailed(Outcome(0, f"not sending credentials to {host} without TLS", False, host, "4.7.10"))
        mechanisms = extensions.get("AUTH", "").upper().split()
        if "PLAIN" not in mechanisms:
            raise _HostFailed(Outcome(0, f"{host} does not offer AUTH PLAIN", False, host, "4.7.12"))
        token = base64.b64encode(
            b"\0" + (route.username or "").encode("utf-8") + b"\0" + (route.password or "").encode("utf-8")
        ).decode("ascii")
        reply = await protocol.command(f"AUTH PLAIN {token}", self.timeouts.command, "the reply to AUTH")
        self._check421(reply, host)
        if reply.code != 235:
            # A refused login is a configuration error here: keep the mail
            # (like Postfix's smtp_sasl_auth_soft_bounce).
            raise _HostFailed(
                Outcome(reply.code, f"authentication failed: {reply.text}", False, host,
                        _defaultEnhanced(reply.code, reply.enhanced).replace("5.", "4.", 1))
            )

    def _mailParameters(
        self, extensions: dict[str, str], host: str, sender: str, recipients: list[str], size: int, eightBit: bool
    ) -> str:
        """
        The parameters of MAIL FROM, or L{_Done} if the message cannot go to
        this server at all.
        """
        params = ""
        if "SIZE" in extensions:
            limit = extensions["SIZE"]
            # RFC 1870 §4: a limit of 0 (or none) means no fixed limit.
            if limit.isdigit() and int(limit) > 0 and size > int(limit):
                raise _Done(
                    Outcome(0, f"message size {size} exceeds the limit of {host} ({limit})", True, host, "5.3.4")
                )
            params += f" SIZE={size}"
        if eightBit:
            if "8BITMIME" not in extensions:
                # RFC 6152 §3: 8-bit content only to a server that takes it.
                raise _Done(
                    Outcome(0, f"the message has 8-bit content and {host} does not support 8BITMIME",
                            True, host, "5.6.3")
                )
            params += " BODY=8BITMIME"
        if not all(a.isascii() for a in [sender, *recipients]):
            if "SMTPUTF8" not in extensions:
                # RFC 6531 §3.2.
                raise _Done(
                    Outcome(0, f"an address is not ASCII and {host} does not support SMTPUTF8", True, host, "5.6.7")
                )
            params += " SMTPUTF8"
        return params

    async def _quit(self, protocol: _ClientProtocol) -> None:
        try:
            await protocol.command("QUIT", self.timeouts.quit, "the reply to QUIT")
        except _StepFailed:
            pass


def _checkPolicy(policy: str) -> None:
    if policy not in TLS_POLICIES:
        raise ValueError(f"unknown TLS policy {policy!r} (one of {', '.join(sorted(TLS_POLICIES))})")


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return text or error.__class__.__name__
