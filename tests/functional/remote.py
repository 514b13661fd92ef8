"""
A fake remote MX for the relay's functional tests: Twisted's own ESMTP
server on 127.0.0.1 port 0, in the test's reactor, scripted per test.

It records every transaction it accepts (sender, recipients, the message
bytes with CRLF line ends, whether the session was under TLS) and fires
Deferreds on events (a message received, a connection closed) so that
tests wait for events, never for time.

What it can be told to do:

    - answer RCPT with a chosen code for chosen addresses
      (L{FakeMX.rcptCodes}), or 451 to the first N RCPTs
      (L{FakeMX.temporaryFailures});
    - offer STARTTLS with a certificate for C{mx.remote.test} signed by a
      test CA (L{testCertificates});
    - on connecting: greet (C{"normal"}), close at once without a greeting
      (C{"close"}), or accept and never say anything (C{"hang"})
      (L{FakeMX.mode});
    - drop the connection in the middle of the message
      (L{FakeMX.dropInData});
    - offer AUTH PLAIN and take only given credentials, like a smarthost
      (L{FakeMX.credentials}, the user names that logged in in
      L{FakeMX.logins}).
"""

from __future__ import annotations

import datetime
from typing import Any, NamedTuple

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import ServerFactory
from twisted.internet.ssl import Certificate, CertificateOptions, PrivateCertificate, TLSVersion
from twisted.mail import smtp
from twisted.mail._cred import PLAINCredentials
from zope.interface import implementer

#: The name in the test MX's certificate.
MX_NAME = "mx.remote.test"


class TestCertificates(NamedTuple):
    """
    A test CA and a leaf certificate for L{MX_NAME} signed by it (PEM).
    """

    caPEM: bytes
    leafPEM: bytes
    leafKeyPEM: bytes

    def serverOptions(self, broken: bool = False) -> CertificateOptions:
        """
        Server TLS options presenting the leaf (and the CA in the chain).

        @param broken: offer nothing newer than TLS 1.1, so that a client
            that wants 1.2 or later fails the handshake.
        """
        leaf = PrivateCertificate.loadPEM(self.leafPEM + self.leafKeyPEM)
        extra: dict[str, Any] = {}
        if broken:
            extra["lowerMaximumSecurityTo"] = TLSVersion.TLSv1_1
        return CertificateOptions(
            privateKey=leaf.privateKey.original,
            certificate=leaf.original,
            extraCertChain=[Certificate.loadPEM(self.caPEM).original],
            **extra,
        )


_certificates: TestCertificates | None = None


def testCertificates() -> TestCertificates:
    """
    Make (once per process) a CA and a leaf for L{MX_NAME}, with EC keys
    (cheap to generate).
    """
    global _certificates
    if _certificates is not None:
        return _certificates
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)

    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailhub test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(caKey, hashes.SHA256())
    )

    leafKey = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, MX_NAME)]))
        .issuer_name(caName)
        .public_key(leafKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(MX_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(caKey, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _certificates = TestCertificates(
        caPEM=ca.public_bytes(pem),
        leafPEM=leaf.public_bytes(pem),
        leafKeyPEM=leafKey.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    return _certificates


class Transaction(NamedTuple):
    """
    One message the fake MX accepted.

    @ivar sender: the reverse-path (C{""} for C{<>}).
    @ivar recipients: the accepted forward-paths.
    @ivar data: the message as received, dot-unstuffed, CRLF line ends.
    @ivar tls: whether the session was under TLS when the message came.
    """

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    tls: bool


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, protocol: "_RemoteSMTP") -> None:
        self.protocol = protocol
        self.lines: list[bytes] = []
        protocol._parts.append(self)

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> Deferred[None]:
        # One IMessage per recipient: the first one records the transaction.
        if self.protocol._parts and self.protocol._parts[0] is self:
            self.protocol._messageDone(self)
        return succeed(None)

    def connectionLost(self) -> None:
        pass


@implementer(smtp.IMessageDelivery)
class _Delivery:
    def __init__(self, remote: "FakeMX", protocol: "_RemoteSMTP") -> None:
        self.remote = remote
        self.protocol = protocol

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> None:
        # No trace header of our own: the bytes received are the bytes sent.
        return None

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        return origin

    def validateTo(self, user: smtp.User) -> Any:
        address = str(user.dest)
        self.remote.rcpts.append(address)
        code = self.remote._rcptCode(address)
        if code == 250:
            return lambda: _Message(self.protocol)
        if code == 550:
            raise smtp.SMTPServerError(550, f"5.1.1 <{address}>: no such user here")
        raise smtp.SMTPServerError(code, f"{code // 100}.7.1 <{address}>: try again later")


@implementer(IRealm)
class _Realm:
    """
    A login gets the connection's own delivery; the user name is recorded.
    """

    def __init__(self, protocol: "_RemoteSMTP") -> None:
        self.protocol = protocol

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        self.protocol.remote.logins.append(avatarId)
        return smtp.IMessageDelivery, self.protocol.delivery, lambda: None


class _RemoteSMTP(smtp.ESMTP):
    """
    Twisted's ESMTP server with the fake MX's script.
    """

    factory: "_RemoteFactory"

    def __init__(self, remote: "FakeMX", contextFactory: Any) -> None:
        challengers = {b"PLAIN": PLAINCredentials} if remote.credentials else {}
        super().__init__(chal=challengers, contextFactory=contextFactory)
        self.remote = remote
        self.delivery = _Delivery(remote, self)
        if remote.credentials:
            self.portal = Portal(
                _Realm(self), [InMemoryUsernamePasswordDatabaseDontUse(**remote.credentials)]
            )
        self.host = b"mx.remote.test"
        self._parts: list[_Message] = []
        self._transaction: tuple[str, tuple[str, ...]] | None = None
        self._dataLines = 0
        self._dropped = False
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.remote._connected(self)
        mode = self.remote.mode
        if mode == "close":
            self.transport.loseConnection()
            return
        if mode == "hang":
            # Accept and say nothing, ever (no server timeout either).
            return
        super().connectionMade()

    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        self.remote._disconnected(self)
        self.lost.callback(None)

    @property
    def underTLS(self) -> bool:
        return bool(self.startedTLS) and ISSLTransport.providedBy(self.transport)

    def do_DATA(self, rest: bytes) -> None:
        if self._from is not None and self._to:
            self._transaction = (
                "" if not str(self._from) else str(self._from),
                tuple(str(user.dest) for user, _ in self._to),
            )
        self._parts = []
        self._dataLines = 0
        super().do_DATA(rest)

    def state_DATA(self, line: bytes) -> None:
        if self._dropped:
            return  # lines already buffered when the connection was cut
        self._dataLines += 1
        drop = self.remote.dropInData
        if drop is not None and self._dataLines > drop:
            # The connection dies in the middle of the message.
            self._dropped = True
            self.remote.drops += 1
            self.transport.abortConnection()
            return
        smtp.SMTP.dataLineReceived(self, line)

    def _messageDone(self, message: _Message) -> None:
        assert self._transaction is not None
        sender, recipients = self._transaction
        data = b"".join(line + b"\r\n" for line in message.lines)
        self.remote._received(Transaction(sender, recipients, data, self.underTLS))


class _RemoteFactory(ServerFactory):
    def __init__(self, remote: "FakeMX") -> None:
        self.remote = remote

    def buildProtocol(self, addr: Any) -> _RemoteSMTP:
        protocol = _RemoteSMTP(self.remote, self.remote.contextFactory)
        protocol.factory = self
        return protocol


class FakeMX:
    """
    The scripted remote MX.

    @ivar mode: what a new connection gets: C{"normal"}, C{"close"} (closed
        at once, no greeting) or C{"hang"} (no greeting, never closed by
        this side).
    @ivar rcptCodes: the reply code to RCPT by address (250 by default).
    @ivar temporaryFailures: this many RCPTs (of addresses answered 250)
        get 451 first.
    @ivar dropInData: abort the connection after this many lines of the
        message, or C{None}.
    @ivar contextFactory: server TLS options: STARTTLS is offered with them
        (C{tls=True}; C{tls="broken"}: offered, but every handshake fails).
    @ivar credentials: user name to password: AUTH PLAIN is offered and
        these are taken (none by default: no AUTH).
    @ivar logins: the user names that logged in, in order.
    @ivar messages: the transactions accepted, in order.
    @ivar rcpts: every RCPT address seen.
    @ivar connections: how many connections were made.
    """

    def __init__(self, tls: bool | str = False, credentials: dict[str, bytes] | None = None) -> None:
        self.mode = "normal"
        self.credentials = dict(credentials or {})
        self.logins: list[bytes] = []
        self.rcptCodes: dict[str, int] = {}
        self.temporaryFailures = 0
        self.dropInData: int | None = None
        self.drops = 0
        self.contextFactory = (
            testCertificates().serverOptions(broken=tls == "broken") if tls else None
        )
        self.messages: list[Transaction] = []
        self.rcpts: list[str] = []
        self.connections = 0
        self._open: set[_RemoteSMTP] = set()
        self._messageWaiters: list[tuple[int, Deferred[None]]] = []
        self._closedWaiters: list[tuple[int, Deferred[None]]] = []
        self._closed = 0
        self._port: Any = None

    # Life

    def start(self) -> int:
        """
        Listen on 127.0.0.1, port 0.

        @return: the port.
        """
        self._port = reactor.listenTCP(0, _RemoteFactory(self), interface="127.0.0.1")
        return self._port.getHost().port

    @property
    def port(self) -> int:
        return self._port.getHost().port

    def stop(self) -> Deferred[Any]:
        """
        Stop listening and end every open connection; fires when all is
        gone.
        """
        waiting = [p.lost for p in self._open]
        for protocol in list(self._open):
            protocol.transport.abortConnection()
        stopped = self._port.stopListening() if self._port is not None else succeed(None)
        return DeferredList([stopped, *waiting], consumeErrors=True)

    # Events

    def waitMessages(self, count: int) -> Deferred[None]:
        """
        Fires once C{count} messages in all have been received.
        """
        return self._wait(self._messageWaiters, len(self.messages), count)

    def waitClosed(self, count: int) -> Deferred[None]:
        """
        Fires once C{count} connections in all have ended.
        """
        return self._wait(self._closedWaiters, self._closed, count)

    @staticmethod
    def _wait(waiters: list[tuple[int, Deferred[None]]], have: int, want: int) -> Deferred[None]:
        if have >= want:
            return succeed(None)
        d: Deferred[None] = Deferred()
        waiters.append((want, d))
        return d

    @staticmethod
    def _fire(waiters: list[tuple[int, Deferred[None]]], have: int) -> None:
        ready = [(n, d) for n, d in waiters if n <= have]
        for item in ready:
            waiters.remove(item)
        for _, d in ready:
            d.callback(None)

    # From the protocol

    def _rcptCode(self, address: str) -> int:
        code = self.rcptCodes.get(address, 250)
        if code == 250 and self.temporaryFailures > 0:
            self.temporaryFailures -= 1
            return 451
        return code

    def _connected(self, protocol: _RemoteSMTP) -> None:
        self.connections += 1
        self._open.add(protocol)

    def _disconnected(self, protocol: _RemoteSMTP) -> None:
        self._open.discard(protocol)
        self._closed += 1
        self._fire(self._closedWaiters, self._closed)

    def _received(self, transaction: Transaction) -> None:
        self.messages.append(transaction)
        self._fire(self._messageWaiters, len(self.messages))
