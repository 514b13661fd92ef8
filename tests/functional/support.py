"""
What the functional tests share: the real service started from the twistd
plugin on port 0 of 127.0.0.1, delivered mail read back with the stdlib
L{mailbox.Maildir}, and three kinds of client: C{smtplib} in a thread, a
raw reply reader on the reactor, and Twisted's own C{ESMTPSenderFactory}.

Nothing here sleeps or times anything: every wait is for an event (a reply,
a closed connection, a fired Deferred).  Each test waits, before it ends,
until the server has seen every one of its sessions close, so that no
session timer or transport outlives the test.
"""

from __future__ import annotations

import json
import mailbox
import os
import poplib
import re
import smtplib
import ssl
from collections import deque
from io import BytesIO
from typing import Any, Callable, Mapping, NamedTuple, Sequence, TypeVar

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThread
from twisted.mail.smtp import ESMTPSenderFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

#: The checkout this test suite belongs to (for C{PYTHONPATH} of a child
#: process).
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HOSTNAME = "mx.test"
DOMAIN = "example.test"
OTHER_DOMAIN = "other.test"
SENDER = "sender@client.test"
CLIENT_NAME = "client.test"

#: A guard for blocking clients, so that a server that never answers fails
#: the test instead of hanging a thread forever.  Never an assertion.
SOCKET_GUARD = 30

_T = TypeVar("_T")

_SIZE_IN_NAME = re.compile(r",S=([0-9]+)")


#: The password of the users tests make.
PASSWORD = "correct horse battery staple"

def unverified() -> ssl.SSLContext:
    """
    A client TLS context that trusts anything (the stdlib clients talk to
    the server's self-signed certificate, as MX-to-MX STARTTLS commonly
    does).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def popSession(
    ports: Mapping[str, int],
    user: str,
    work: Callable[[poplib.POP3], _T],
    *,
    implicit: bool = False,
    login: bool = True,
    starttls: bool = True,
    quit: bool = True,
) -> Deferred[_T]:
    """
    Run C{work(client)} with C{poplib} in a thread: on pop3 after STLS
    (unless C{starttls} is false) or on pop3s, logged in as C{user} with
    USER/PASS (unless C{login} is false), and QUIT afterwards (unless
    C{quit} is false or the work did it).  The socket is closed whatever
    happens.
    """

    def run() -> _T:
        if implicit:
            client: poplib.POP3 = poplib.POP3_SSL(
                "127.0.0.1", ports["pop3s"], timeout=SOCKET_GUARD,
                context=unverified(),
            )
        else:
            client = poplib.POP3("127.0.0.1", ports["pop3"], timeout=SOCKET_GUARD)
        try:
            if starttls and not implicit:
                client.stls(unverified())
            if login:
                client.user(user)
                client.pass_(PASSWORD)
            result = work(client)
            if quit and client.sock is not None:
                client.quit()
            return result
        finally:
            if client.sock is not None:
                client.close()

    return deferToThread(run)


_hashes: dict[str, str] = {}


def cheapHash(password: str) -> str:
    """
    An Argon2id hash of C{password} at a cost low enough for tests (the
    server verifies it like any other; production hashes cost far more).
    """
    if password not in _hashes:
        from argon2 import PasswordHasher

        from mailhub.auth.passwords import hashPassword

        _hashes[password] = hashPassword(
            password, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        )
    return _hashes[password]


def tomlValue(value: object) -> str:
    """
    Write one TOML value: a string, number, boolean or list of them.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string.
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(tomlValue(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def writeConfig(
    path: str,
    data: str,
    *,
    listeners: Sequence[str] = ("tcp:0:interface=127.0.0.1",),
    limits: Mapping[str, object] | None = None,
    aliases: Mapping[str, object] | None = None,
) -> str:
    """
    Write a configuration file for the test server.

    @param path: where.
    @param data: the (absolute) data directory.
    @param limits: the C{[limits]} table.
    @param aliases: the C{[aliases]} table.
    @return: C{path}.
    """
    lines = [
        f"hostname = {tomlValue(HOSTNAME)}",
        f"domains = {tomlValue([DOMAIN, OTHER_DOMAIN])}",
        f"data = {tomlValue(data)}",
        "[listeners]",
        f"smtp = {tomlValue(list(listeners))}",
    ]
    # Every other service on a port of its own choosing, never the defaults.
    for name in ("submission", "submissions", "pop3", "pop3s", "imap", "imaps"):
        lines.append(f"{name} = {tomlValue(['tcp:0:interface=127.0.0.1'])}")
    # Relaying never leaves this machine: DNS goes to a closed port on
    # loopback, and the remote domain the tests use to a refusing port.
    lines += [
        "[relay]",
        'dns_servers = ["127.0.0.1:9"]',
        "[relay.transport]",
        '"elsewhere.example" = "[127.0.0.1]:1"',
    ]
    if limits:
        lines.append("[limits]")
        lines += [f"{key} = {tomlValue(value)}" for key, value in limits.items()]
    if aliases:
        lines.append("[aliases]")
        lines += [f"{json.dumps(key)} = {tomlValue(value)}" for key, value in aliases.items()]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def message(subject: str, body: bytes = b"Hello.\r\n", to: str = f"alice@{DOMAIN}") -> bytes:
    """
    A small RFC 5322 message with CRLF line ends.
    """
    return (
        f"From: Sender <{SENDER}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: {subject}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
    ).encode("ascii") + body


class RunningServer:
    """
    A started mailhub service and what a test needs to reach it.

    @ivar service: the L{mailhub.service.MailhubService}.
    @ivar data: the data directory.
    @ivar port: the SMTP listener's port on 127.0.0.1.
    """

    def __init__(self, service: Any, data: str) -> None:
        self.service = service
        self.data = data
        self.port: int = service.port("smtp").getHost().port
        #: The port of each service, by listener name.
        self.ports: dict[str, int] = {
            name: service.port(name).getHost().port
            for name in ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps")
        }
        self.factory = service.factories["smtp"]
        self._drained: list[Deferred[None]] = []
        original = self.factory.disconnected

        def disconnected(session: Any) -> None:
            original(session)
            if not self.factory.sessions:
                waiting, self._drained = self._drained, []
                for d in waiting:
                    d.callback(None)

        # Watch the factory (an instance attribute, the class is untouched)
        # to learn when the last session has gone.
        self.factory.disconnected = disconnected

    def sessionsClosed(self) -> Deferred[None]:
        """
        Fires once the server has no SMTP session open.
        """
        if not self.factory.sessions:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        return d

    async def stop(self) -> None:
        """
        Wait for every session to end, then stop the service (once).
        """
        await self.sessionsClosed()
        if self.service.running:
            await self.service.stopService()

    def maildir(self, local: str, domain: str = DOMAIN) -> str:
        return os.path.join(self.data, "mail", domain, local)

    def createMailbox(self, local: str, domain: str = DOMAIN, password: str = PASSWORD) -> str:
        """
        Make C{local@domain} exist: a user in the users file (with
        C{password}) and its Maildir directory.
        """
        from mailhub.auth.userfile import UserEntry, readUsers, writeUsers

        users = os.path.join(self.data, "users")
        entries = dict(readUsers(users)) if os.path.exists(users) else {}
        address = f"{local}@{domain}"
        entries[address] = UserEntry(address, cheapHash(password))
        writeUsers(users, entries.values())
        path = self.maildir(local, domain)
        os.makedirs(path, exist_ok=True)
        return path

    def messages(self, local: str, domain: str = DOMAIN) -> list[bytes]:
        """
        The messages delivered to C{local@domain}, read by the stdlib
        Maildir reader, after checking that every one is in C{new/} and
        that the C{S=} size in each name (which Dovecot trusts) is the
        file's size.
        """
        path = self.maildir(local, domain)
        new = os.path.join(path, "new")
        if not os.path.isdir(new):
            return []
        box = mailbox.Maildir(path, factory=None, create=False)
        keys = box.keys()
        inNew = set(os.listdir(new))
        if set(keys) != inNew:
            raise AssertionError(f"messages outside new/: {sorted(set(keys) - inNew)}")
        for name in inNew:
            size = _SIZE_IN_NAME.search(name)
            if size is not None and int(size.group(1)) != os.path.getsize(os.path.join(new, name)):
                raise AssertionError(f"S= in {name} is not the file's size")
        return [box.get_bytes(key) for key in keys]

    def spoolFiles(self) -> list[str]:
        """
        What is left in C{DATA/spool/}.
        """
        return sorted(os.listdir(os.path.join(self.data, "spool")))

    @property
    def certificatePath(self) -> str:
        return os.path.join(self.data, "tls", "cert.pem")


def startService(configPath: str) -> Any:
    """
    Build and start the service as C{twistd mailhub --config PATH} would,
    through the plugin.
    """
    from twisted.plugins.mailhub_plugin import mailhub as maker

    options = maker.options()
    options.parseOptions(["--config", configPath])
    service = maker.makeService(options)
    service.startService()
    return service


class ServerTestCase(TestCase):
    """
    Starts real servers on a fresh data directory and stops them after the
    test, once their sessions have closed.
    """

    timeout = 60

    #: The server most tests talk to.
    server: RunningServer

    def startServer(
        self,
        *,
        limits: Mapping[str, object] | None = None,
        aliases: Mapping[str, object] | None = None,
        data: str | None = None,
    ) -> RunningServer:
        """
        Start a server; C{data} defaults to a new directory.
        """
        if data is None:
            data = os.path.abspath(self.mktemp())
        path = writeConfig(
            os.path.abspath(self.mktemp()) + ".toml", data, limits=limits, aliases=aliases
        )
        server = RunningServer(startService(path), data)
        self.addCleanup(lambda: Deferred.fromCoroutine(server.stop()))
        return server

    # smtplib

    def smtp(self, work: Callable[[smtplib.SMTP], _T], port: int | None = None) -> Deferred[_T]:
        """
        Run C{work} with a connected C{smtplib.SMTP} in a thread; the
        connection is closed afterwards whatever happens.

        @param port: the server's port; by default C{self.server}'s.
        """
        if port is None:
            port = self.server.port

        def run() -> _T:
            client = smtplib.SMTP(
                "127.0.0.1", port, local_hostname=CLIENT_NAME, timeout=SOCKET_GUARD
            )
            try:
                return work(client)
            finally:
                client.close()

        return deferToThread(run)

    # Raw conversation

    async def connect(self, port: int | None = None) -> "ReplyReader":
        """
        A raw connection whose replies can be awaited; closed at cleanup.

        @param port: the server's port; by default C{self.server}'s.
        """
        if port is None:
            port = self.server.port
        reader = ReplyReader()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        await connectProtocol(endpoint, reader)

        def close() -> Deferred[None]:
            if reader.transport is not None and not reader.closed.called:
                reader.transport.loseConnection()
            return reader.closed

        self.addCleanup(close)
        return reader


class RunningServerTestCase(ServerTestCase):
    """
    One server per test, started in C{setUp} with the class's C{limits} and
    C{aliases}, with the mailboxes alice@ and bob@ of the first domain.
    """

    limits: Mapping[str, object] = {}
    aliases: Mapping[str, object] = {}

    def setUp(self) -> None:
        self.server = self.startServer(limits=self.limits, aliases=self.aliases)
        for name in ("alice", "bob"):
            self.server.createMailbox(name)

    # Twisted's client

    def twistedSend(
        self,
        recipients: Sequence[str],
        text: bytes,
        contextFactory: Any = None,
        requireTransportSecurity: bool = False,
    ) -> Deferred[tuple[int, list[Any]]]:
        """
        Send C{text} (LF line ends, as Twisted's client wants) with
        L{ESMTPSenderFactory}, no retries.

        @return: fires with the factory's result once the connection has
            closed too.
        """
        result: Deferred[tuple[int, list[Any]]] = Deferred()
        factory = ClosingSenderFactory(
            None,
            None,
            SENDER,
            list(recipients),
            BytesIO(text),
            result,
            retries=0,
            contextFactory=contextFactory,
            requireAuthentication=False,
            requireTransportSecurity=requireTransportSecurity,
        )
        factory.domain = CLIENT_NAME.encode("ascii")
        reactor.connectTCP("127.0.0.1", self.server.port, factory)

        def both(results: list[tuple[bool, Any]]) -> Any:
            # The send's result (a Failure fails the chain).
            return results[0][1]

        return DeferredList([result, factory.closed], consumeErrors=True).addCallback(both)


class ClosingSenderFactory(ESMTPSenderFactory):
    """
    L{ESMTPSenderFactory} that also says when its connection has closed.

    @ivar closed: fires when the connection is gone (or never came).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed: Deferred[None] = Deferred()

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        super().clientConnectionLost(connector, reason)
        self.closed.callback(None)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        super().clientConnectionFailed(connector, reason)
        self.closed.callback(None)


class ServerReply(NamedTuple):
    """
    One complete SMTP reply: its code, and its lines without the codes
    (joined with LF).
    """

    code: int
    text: str


class ReplyReader(Protocol):
    """
    A raw SMTP client: the test writes bytes, and awaits complete replies
    one by one, in order, and the end of the connection.

    @ivar closed: fires when the connection is lost.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._lines: list[bytes] = []
        self._replies: deque[ServerReply] = deque()
        self._waiting: deque[Deferred[ServerReply]] = deque()
        self._lost: Failure | None = None
        self.closed: Deferred[None] = Deferred()

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\r\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\r\n", 1)
            self._lines.append(line)
            if line[3:4] == b"-":
                continue
            lines, self._lines = self._lines, []
            reply = ServerReply(
                int(lines[0][:3]), "\n".join(l[4:].decode("utf-8", "replace") for l in lines)
            )
            if self._waiting:
                self._waiting.popleft().callback(reply)
            else:
                self._replies.append(reply)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._lost = reason
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.errback(reason)
        self.closed.callback(None)

    def nextReply(self) -> Deferred[ServerReply]:
        """
        The next reply not yet taken; fails if the connection ends first.
        """
        if self._replies:
            return succeed(self._replies.popleft())
        if self._lost is not None:
            return fail(self._lost)
        d: Deferred[ServerReply] = Deferred()
        self._waiting.append(d)
        return d

    async def replies(self, count: int) -> list[ServerReply]:
        """
        The next C{count} replies.
        """
        return [await self.nextReply() for _ in range(count)]

    @property
    def unread(self) -> list[ServerReply]:
        """
        Replies that have arrived and not been taken.
        """
        return list(self._replies)
