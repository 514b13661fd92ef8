"""
What the IMAP functional tests share: a test case that knows when the
server's last IMAP and POP3 session has gone, C{imaplib} in a thread, a
raw IMAP client on the reactor (for IDLE, LITERAL+ and bad input, where a
test must see every byte and wait with a deadline), and Twisted's own
L{IMAP4Client}.

No test sleeps: a test waits for a reply, a closed connection or a fired
Deferred.  Where the server pushes something it must push within a
bounded time (IDLE), the wait has a deadline and the test fails when it
passes.
"""

from __future__ import annotations

import imaplib
import mailbox
import os
import re
import smtplib
from typing import Any, Callable, NamedTuple, TypeVar

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.threads import deferToThread
from twisted.mail.imap4 import IMAP4Client
from twisted.python.failure import Failure

from tests.functional.support import (
    DOMAIN,
    HOSTNAME,
    PASSWORD,
    SENDER,
    SOCKET_GUARD,
    RunningServerTestCase,
    message,
    unverified,
)

_T = TypeVar("_T")

ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"

#: How long a test waits for a reply the server owes now (a guard against
#: a hang, not a measure).
REPLY_GUARD = 10.0

#: IDLE: the server polls the mailbox once a second, so a change reaches
#: the idling client within a second of being made (RFC 2177 asks for
#: prompt pushes); the tests allow one more second for a loaded machine,
#: and fail if a push takes longer.
PUSH_WITHIN = 2.0



def untagged(data: list[Any]) -> list[bytes]:
    """
    The untagged response data imaplib returns, as a flat list of bytes
    (literal pieces joined to their line).
    """
    out: list[bytes] = []
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            out.append(b"".join(item))
        else:
            out.append(item)
    return out


def parseValues(data: bytes) -> list[Any]:
    """
    IMAP response data as values: C{(...)} a list, C{NIL} C{None}, a
    number an C{int}, a quoted string or literal C{bytes}, any other atom
    a C{str} (C{BODY[HEADER.FIELDS (A B)]<0>} is one atom).
    """
    stack: list[list[Any]] = [[]]
    i, n = 0, len(data)
    while i < n:
        c = data[i : i + 1]
        if c in b" \r\n":
            i += 1
        elif c == b"(":
            stack.append([])
            i += 1
        elif c == b")":
            inner = stack.pop()
            stack[-1].append(inner)
            i += 1
        elif c == b'"':
            out = bytearray()
            i += 1
            while data[i : i + 1] != b'"':
                if data[i : i + 1] == b"\\":
                    i += 1
                out += data[i : i + 1]
                i += 1
            stack[-1].append(bytes(out))
            i += 1
        elif c == b"{":
            end = data.index(b"}", i)
            size = int(data[i + 1 : end])
            start = end + 3  # past "}\r\n"
            stack[-1].append(data[start : start + size])
            i = start + size
        else:
            start, depth = i, 0
            while i < n:
                c = data[i : i + 1]
                if c == b"[":
                    depth += 1
                elif c == b"]":
                    depth -= 1
                elif depth == 0 and c in b' ()"\r\n':
                    break
                i += 1
            text = data[start:i].decode("latin-1")
            if text.upper() == "NIL":
                stack[-1].append(None)
            elif text.isdigit():
                stack[-1].append(int(text))
            else:
                stack[-1].append(text)
    if len(stack) != 1:
        raise ValueError(f"unbalanced: {data[:200]!r}")
    return stack[0]


def imaplibData(data: list[Any]) -> bytes:
    """
    What C{imaplib} returns for a command's untagged responses, put back
    together as the server sent them (literals inline).
    """
    out = b""
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            out += item[0] + b"\r\n" + item[1]
        else:
            out += item + b"\r\n"
    return out


def fetched(data: list[Any]) -> dict[int, dict[str, Any]]:
    """
    C{imaplib}'s FETCH data as C{{sequence number: {item: value}}}; items
    of several responses for one message are merged.
    """
    values = parseValues(imaplibData(data))
    result: dict[int, dict[str, Any]] = {}
    for seq, items in zip(values[::2], values[1::2]):
        entry = result.setdefault(seq, {})
        for name, value in zip(items[::2], items[1::2]):
            entry[name] = value
    return result


def check(result: tuple[str, list[Any]]) -> list[Any]:
    """
    The data of an C{imaplib} command that must have answered OK.
    """
    typ, data = result
    if typ != "OK":
        raise AssertionError(f"{typ} {data!r}")
    return data


def failure(call: Any, *args: Any) -> str:
    """
    Run an C{imaplib} call that must fail with a tagged NO or BAD; its text.
    """
    try:
        typ, data = call(*args)
    except imaplib.IMAP4.error as e:
        return str(e)
    if typ == "OK":
        raise AssertionError(f"succeeded: {data!r}")
    return f"{typ} " + b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")


def responseCode(data: list[Any], name: str) -> list[str]:
    """
    The arguments of response code C{[NAME ...]} in the tagged reply's text
    that C{imaplib} returned as C{data}.
    """
    text = b" ".join(d for d in data if isinstance(d, bytes)).decode()
    match = re.search(r"\[" + name + r" ([^\]]*)\]", text)
    if match is None:
        raise AssertionError(f"no [{name}] in {text!r}")
    return match.group(1).split()


def crlf(text: str) -> bytes:
    """
    C{text} in UTF-8 with CRLF line ends.
    """
    return text.replace("\n", "\r\n").encode("utf-8")


def maildirFiles(path: str) -> dict[str, str]:
    """
    C{{file name: "new" or "cur"}} of one Maildir folder.
    """
    found = {}
    for sub in ("new", "cur"):
        directory = os.path.join(path, sub)
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                found[name] = sub
    return found


class IMAPTestCase(RunningServerTestCase):
    """
    The real server with alice@ and bob@, and the clients to reach its IMAP
    listeners.  Every test ends only once the server has seen its IMAP and
    POP3 sessions close.
    """

    def setUp(self) -> None:
        super().setUp()
        self._drained: list[Deferred[None]] = []
        self.watchSessions()
        self.addCleanup(self.sessionsClosed)

    # Sessions

    def watchSessions(self) -> None:
        """
        Learn when the server's last IMAP or POP3 session has gone (an
        instance attribute on each factory; the class is untouched).
        """
        for name in ("imap", "imaps", "pop3", "pop3s"):
            factory = self.server.service.factories[name]
            original = factory.disconnected

            def disconnected(session: Any, original: Any = original) -> None:
                original(session)
                if not self._open():
                    waiting, self._drained = self._drained, []
                    for d in waiting:
                        d.callback(None)

            factory.disconnected = disconnected

    def _open(self) -> bool:
        return any(
            self.server.service.factories[n].sessions for n in ("imap", "imaps", "pop3", "pop3s")
        )

    def sessionsClosed(self) -> Deferred[None]:
        """
        Fires once the server has no IMAP or POP3 session open.
        """
        if not self._open():
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        return d

    # Mail

    async def deliver(self, *texts: bytes, to: str = ALICE) -> None:
        """
        Deliver each message over SMTP, in order.
        """

        def work(client: smtplib.SMTP) -> None:
            for text in texts:
                refused = client.sendmail(SENDER, [to], text)
                assert refused == {}, refused
            client.quit()

        await self.smtp(work)

    def folder(self, name: str = "", user: str = "alice") -> str:
        """
        The directory of a folder of C{user}: C{""} is INBOX, C{"Sent"} is
        C{.Sent}, C{"a/b"} is C{.a.b}.
        """
        root = self.server.maildir(user)
        if not name:
            return root
        return os.path.join(root, "." + name.replace("/", "."))

    def stdlibMaildir(self, name: str = "", user: str = "alice") -> mailbox.Maildir:
        """
        The folder read with the stdlib's reader.
        """
        return mailbox.Maildir(self.folder(name, user), factory=None, create=False)

    # imaplib

    def imap(
        self,
        work: Callable[[imaplib.IMAP4], _T],
        *,
        implicit: bool = False,
        user: str = ALICE,
        login: bool = True,
    ) -> Deferred[_T]:
        """
        Run C{work(client)} in a thread with an C{imaplib} client that has
        done STARTTLS on the plain port (or connected to the implicit-TLS
        port) and logged in; LOGOUT afterwards, whatever happened.
        """
        ports = self.server.ports

        def run() -> _T:
            if implicit:
                client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    "127.0.0.1", ports["imaps"], ssl_context=unverified(), timeout=SOCKET_GUARD
                )
            else:
                client = imaplib.IMAP4("127.0.0.1", ports["imap"], timeout=SOCKET_GUARD)
                client.starttls(ssl_context=unverified())
            try:
                if login:
                    client.login(user, PASSWORD)
                return work(client)
            finally:
                if client.state != "LOGOUT":
                    try:
                        client.logout()
                    except Exception:
                        client.shutdown()

        return deferToThread(run)

    # The raw client

    def clientTLS(self) -> Any:
        """
        Client TLS options that trust only the server's own certificate and
        check it names the server.
        """
        with open(self.server.certificatePath, "rb") as f:
            return optionsForClientTLS(HOSTNAME, trustRoot=Certificate.loadPEM(f.read()))

    async def raw(self, *, tls: str = "starttls", user: str | None = ALICE) -> "RawIMAP":
        """
        A raw IMAP connection on the reactor, closed at cleanup.

        @param tls: C{"starttls"} (plain port, then STARTTLS), C{"implicit"}
            (the implicit-TLS port) or C{"none"} (plain port, in the clear).
        @param user: log in as this user (C{None}: stay unauthenticated).
        """
        port = self.server.ports["imaps" if tls == "implicit" else "imap"]
        endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        if tls == "implicit":
            endpoint = wrapClientTLS(self.clientTLS(), endpoint)
        client = RawIMAP()
        await connectProtocol(endpoint, client)

        def close() -> Deferred[None]:
            if not client.closed.called:
                client.transport.loseConnection()
            return client.closed

        self.addCleanup(close)
        await client.greeting
        if tls == "starttls":
            await client.startTLS(self.clientTLS())
        if user is not None:
            reply = await client.command(f'LOGIN "{user}" "{PASSWORD}"')
            assert reply.ok, reply
        return client

    # Twisted's client

    async def twisted(self, *, implicit: bool = False, login: bool = True) -> "ObservingClient":
        """
        Twisted's L{IMAP4Client}, connected (on the plain port it upgrades
        with STARTTLS before LOGIN, as it does whenever STARTTLS is
        offered) and logged in as alice; it logs out at cleanup.
        """
        port = self.server.ports["imaps" if implicit else "imap"]
        endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        if implicit:
            endpoint = wrapClientTLS(self.clientTLS(), endpoint)
        client = ObservingClient(self.clientTLS())
        await connectProtocol(endpoint, client)

        async def close() -> None:
            if not client.closed.called:
                try:
                    await client.logout()
                except Exception:
                    client.transport.loseConnection()
            await client.closed

        self.addCleanup(lambda: Deferred.fromCoroutine(close()))
        await client.greeted
        if login:
            await client.login(ALICE.encode("ascii"), PASSWORD.encode("ascii"))
        return client


class ObservingClient(IMAP4Client):
    """
    L{IMAP4Client} that says when it is greeted and disconnected, and keeps
    what the server told it unasked (C{IMailboxListener}).
    """

    def __init__(self, contextFactory: Any = None) -> None:
        super().__init__(contextFactory)
        self.greeted: Deferred[Any] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self.events: list[tuple[str, Any]] = []
        #: Untagged responses no command of the client took.
        self.unused: list[Any] = []

    def serverGreeting(self, caps: Any) -> None:
        self.greeted.callback(caps)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        super().connectionLost(reason)
        self.closed.callback(None)

    def modeChanged(self, writeable: bool) -> None:
        self.events.append(("mode", writeable))

    def flagsChanged(self, newFlags: dict) -> None:
        self.events.append(("flags", newFlags))

    def newMessages(self, exists: int | None, recent: int | None) -> None:
        self.events.append(("new", (exists, recent)))

    def _extraInfo(self, lines: list[Any]) -> None:
        # The untagged responses the client has no use for (ID, ENABLED...).
        self.unused.extend(lines)
        super()._extraInfo(lines)


class Reply(NamedTuple):
    """
    A command's outcome on the raw client: the untagged responses that came
    while it ran (each a C{bytes} with any literal inline) and the tagged
    line's status and text.
    """

    untagged: list[bytes]
    status: str
    text: str

    @property
    def ok(self) -> bool:
        return self.status == "OK"


class PushTimeout(AssertionError):
    """
    The server did not send what a test waited for in time.
    """


_TAGGED = re.compile(rb"([^ ]+) (OK|NO|BAD)(?: (.*))?\Z", re.S)
_LITERAL_END = re.compile(rb"\{([0-9]+)\}\Z")


class RawIMAP(Protocol):
    """
    A raw IMAP client on the reactor.  The test writes commands; responses
    are read whole (a literal inside a response is kept inline), tagged
    ones answer L{command}, untagged and continuation ones are kept in
    order in L{responses} and can be awaited with a deadline
    (L{waitFor}).

    @ivar greeting: fires with the greeting line.
    @ivar closed: fires when the connection is lost.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._partial = b""
        self._literalLeft = 0
        self._count = 0
        self._tagged: dict[bytes, tuple[Deferred[Reply], int]] = {}
        self._lastTagged = 0
        self._waiters: list[tuple[re.Pattern[bytes], Deferred[bytes], Any]] = []
        self._mark = 0
        #: Every untagged and continuation response, in order.
        self.responses: list[bytes] = []
        self.greeting: Deferred[bytes] = Deferred()
        self.closed: Deferred[None] = Deferred()

    # Receiving

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if self._literalLeft:
                chunk = self._buffer[: self._literalLeft]
                self._buffer = self._buffer[len(chunk) :]
                self._partial += chunk
                self._literalLeft -= len(chunk)
                if self._literalLeft:
                    return
            end = self._buffer.find(b"\r\n")
            if end < 0:
                return
            line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            self._partial += line
            literal = _LITERAL_END.search(line)
            if literal is not None:
                self._partial += b"\r\n"
                self._literalLeft = int(literal.group(1))
                if self._literalLeft:
                    continue
            response, self._partial = self._partial, b""
            self._response(response)

    def _response(self, response: bytes) -> None:
        if not self.greeting.called:
            self.greeting.callback(response)
            return
        match = _TAGGED.match(response)
        if match is not None and match.group(1) in self._tagged:
            d, first = self._tagged.pop(match.group(1))
            # The untagged responses since the command was sent and since
            # the reply to the command before it (pipelining).
            begin = max(first, self._lastTagged)
            self._lastTagged = self._mark = max(self._mark, len(self.responses))
            status, text = match.group(2).decode(), (match.group(3) or b"").decode("utf-8", "replace")
            d.callback(Reply(self.responses[begin:], status, text))
            return
        self.responses.append(response)
        self._wake()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        tagged, self._tagged = self._tagged, {}
        for d, _ in tagged.values():
            d.errback(reason)
        waiters, self._waiters = self._waiters, []
        for _, d, timer in waiters:
            if timer.active():
                timer.cancel()
            d.errback(reason)
        if not self.greeting.called:
            self.greeting.errback(reason)
        self.closed.callback(None)

    # Sending

    def send(self, data: bytes) -> None:
        """
        Write raw octets.
        """
        self.transport.write(data)

    def nextTag(self) -> bytes:
        self._count += 1
        return b"t%d" % (self._count,)

    def start(self, text: str | bytes, tag: bytes | None = None) -> tuple[bytes, Deferred[Reply]]:
        """
        Send one command line (without its CRLF); the Deferred fires with
        its L{Reply} when its tagged response comes.
        """
        if tag is None:
            tag = self.nextTag()
        if isinstance(text, str):
            text = text.encode("utf-8")
        d = self.expectTag(tag)
        self.send(tag + b" " + text + b"\r\n")
        return tag, d

    def expectTag(self, tag: bytes) -> Deferred[Reply]:
        """
        The L{Reply} to a command the test writes itself (with L{send}),
        called before it is written.
        """
        d: Deferred[Reply] = Deferred()
        self._tagged[tag] = (d, len(self.responses))
        return d

    async def command(self, text: str | bytes) -> Reply:
        """
        Send one command line and wait for its reply (guarded by
        L{REPLY_GUARD}).
        """
        _, d = self.start(text)
        return await withDeadline(d, REPLY_GUARD, f"no reply to {text!r}")

    async def startTLS(self, options: Any) -> None:
        reply = await self.command("STARTTLS")
        assert reply.ok, reply
        self.transport.startTLS(options)

    # Waiting for unsolicited responses

    def waitFor(self, pattern: bytes, timeout: float = REPLY_GUARD) -> Deferred[bytes]:
        """
        The next response (untagged or continuation), not yet waited for or
        seen as part of a command's reply, that matches C{pattern} (a
        regular expression searched from the start of the response); fails
        with L{PushTimeout} if none comes within C{timeout} seconds.
        """
        regexp = re.compile(pattern, re.S)
        for i in range(self._mark, len(self.responses)):
            if regexp.match(self.responses[i]):
                self._mark = i + 1
                return succeed(self.responses[i])
        d: Deferred[bytes] = Deferred()

        def expire() -> None:
            self._waiters = [w for w in self._waiters if w[1] is not d]
            d.errback(
                PushTimeout(
                    f"nothing matching {pattern!r} within {timeout} s; "
                    f"had {self.responses[self._mark:]!r}"
                )
            )

        timer = reactor.callLater(timeout, expire)
        self._waiters.append((regexp, d, timer))
        return d

    def _wake(self) -> None:
        response = self.responses[-1]
        for entry in list(self._waiters):
            regexp, d, timer = entry
            if regexp.match(response):
                self._waiters.remove(entry)
                self._mark = len(self.responses)
                timer.cancel()
                d.callback(response)
                return

    @property
    def unread(self) -> list[bytes]:
        """
        Responses not yet waited for or taken by a command's reply.
        """
        return self.responses[self._mark :]


def withDeadline(d: Deferred[_T], timeout: float, what: str) -> Deferred[_T]:
    """
    C{d}, failed with L{PushTimeout} if it has not fired within C{timeout}
    seconds.
    """
    result: Deferred[_T] = Deferred()

    def expire() -> None:
        result.errback(PushTimeout(f"{what} within {timeout} s"))

    timer = reactor.callLater(timeout, expire)

    def done(value: Any) -> None:
        if timer.active():
            timer.cancel()
            result.callback(value)
        # After the deadline the late result is dropped (the test has
        # failed already).
        elif isinstance(value, Failure):
            return None

    d.addBoth(done)
    return result


__all__ = [
    "ALICE",
    "check",
    "crlf",
    "failure",
    "responseCode",
    "BOB",
    "IMAPTestCase",
    "ObservingClient",
    "PASSWORD",
    "PUSH_WITHIN",
    "PushTimeout",
    "RawIMAP",
    "Reply",
    "maildirFiles",
    "message",
    "unverified",
    "untagged",
]
