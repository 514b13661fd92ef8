# -*- test-case-name: tests.pop3.test_server -*-
"""
The POP3 server: Twisted's L{twisted.mail.pop3.POP3}, extended where it
falls short of the RFCs and of what a public server must withstand.

What is ours, and why (each Twisted trap has a named regression test):

  - Input framing, as in the SMTP server: a line over the limit is
    answered C{-ERR} and skipped without being held whole; commands are
    answered strictly in order (RFC 2449 PIPELINING); while a reply is
    pending (a login, a message being sent, the commit) the rest waits.
  - CAPA (RFC 2449) lists what is true: Twisted's lists joke entries
    (C{CELERITY}, C{AUSPEX}, C{POTENCE}) and C{PIPELINE} for PIPELINING.
  - STLS (RFC 2595), which Twisted lacks; whatever the client pipelined
    after it is discarded, and the session forgets the USER it was given.
  - USER/PASS and AUTH PLAIN (RFC 5034, RFC 4616) only under TLS; before,
    C{-ERR [AUTH]} says to use STLS, and CAPA lists neither.  Twisted's
    AUTH takes only CRAM-MD5's format; ours does PLAIN, with the initial
    response on the line or after C{+ }, and C{*} cancels.
  - No APOP: it needs the password in clear text on the server, and
    Twisted's always fails.  The greeting carries no timestamp.
  - Messages go out through a pull producer a chunk at a time, never read
    whole; bare LF becomes CRLF and CRLF stays CRLF, and lines are
    dot-stuffed (RFC 1939 §3).  Twisted's RETR and TOP expect LF files:
    CRLF goes out as CR CR LF; TOP misses a header end that is not inside
    one chunk and drops a body line longer than a chunk; a message that
    cannot be opened gets no reply at all and one whose reading fails
    (a text-mode file) leaves the session blocked for ever.  Here a
    message that cannot be opened is C{-ERR [SYS/TEMP]} and a read that
    fails mid-message hangs up.  TCP_NODELAY is set: Twisted's RETR of
    many messages stalls about 40 ms each on Nagle's algorithm.
  - Response codes (RFC 2449 §8, RFC 3206): C{[AUTH]}, C{[SYS/TEMP]},
    C{[IN-USE]}.  A failure that is ours is C{[SYS/TEMP]}, never a
    traceback.
  - The maildrop is a L{ISessionMailbox}: locked, a snapshot at login,
    changed only at QUIT (RFC 1939 §6).
  - The idle timeout (RFC 1939 §3: at least 10 minutes) closes the
    connection without a reply and without entering the UPDATE state.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Any, Callable, Iterable, Iterator

from attrs import frozen
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginDenied, UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IPullProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.mail import pop3
from twisted.mail.pop3 import IMailbox
from twisted.python.failure import Failure
from zope.interface import implementer

from mailhub.errors import TemporaryAuthError
from mailhub.pop3.mailbox import ISessionMailbox, MailboxInUse
from mailhub.sessions import Refuse, SessionFactory, peerHost, setNoDelay

AUTHORIZATION, SASL, TRANSACTION, CLOSED = "authorization", "sasl", "transaction", "closed"

#: Longest command line, in octets before the CRLF.  RFC 2449 §4 allows 255
#: with the CRLF; an AUTH line carries more.
LINE_LENGTH = 1024

#: Seconds a client may stay silent (RFC 1939 §3: at least 10 minutes).
IDLE_TIMEOUT = 600.0

#: Protocol errors one session may make before it is dropped.
MAX_ERRORS = 10

#: Octets of a message read (and written) at a time.
CHUNK_SIZE = 64 * 1024

#: While a reply is pending, stop reading once this much input is waiting.
MAX_PENDING_INPUT = 64 * 1024

_BARE_LF = re.compile(rb"(?<!\r)\n")
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@frozen
class Reply:
    """
    A POP3 status line: C{+OK} or C{-ERR}, an optional response code (RFC
    2449 §8) and text (which may hold C{str.format} fields).
    """

    ok: bool
    text: str
    code: str = ""

    def format(self, **fields: object) -> "Reply":
        return Reply(self.ok, self.text.format(**fields), self.code)

    def toBytes(self) -> bytes:
        status = "+OK" if self.ok else "-ERR"
        code = f" [{self.code}]" if self.code else ""
        text = f" {self.text}" if self.text else ""
        return f"{status}{code}{text}\r\n".encode("utf-8", "replace")

    @property
    def isClientError(self) -> bool:
        """
        Whether the client caused it (it counts towards the error limit).
        """
        return not self.ok and self.code not in ("SYS/TEMP", "IN-USE")


# Session
GREETING = Reply(True, "{host} POP3 mailhub ready")
BYE = Reply(True, "Bye")
SHUTTING_DOWN = Reply(False, "Server shutting down", "SYS/TEMP")
TOO_MANY_CONNECTIONS = Reply(False, "Too many connections from your address", "SYS/TEMP")
INTERNAL_ERROR = Reply(False, "Internal error, try again later", "SYS/TEMP")

# Authorization (RFC 1939 §4, RFC 2595 §4, RFC 5034 §4, RFC 3206 §4-5)
CAPABILITIES = Reply(True, "Capability list follows")
BEGIN_TLS = Reply(True, "Begin TLS negotiation")
TLS_ACTIVE = Reply(False, "TLS already active")
TLS_UNAVAILABLE = Reply(False, "TLS not available")
PLAINTEXT_REFUSED = Reply(
    False, "Plaintext authentication disallowed on non-secure connections; use STLS first", "AUTH"
)
USER_OK = Reply(True, "Send PASS")
USER_FIRST = Reply(False, "Send USER first")
MECHANISMS = Reply(True, "Supported mechanisms follow")
UNKNOWN_MECHANISM = Reply(False, "Unsupported authentication mechanism")
AUTH_CANCELLED = Reply(False, "Authentication cancelled")
BAD_BASE64 = Reply(False, "Invalid base64 data")
BAD_PLAIN = Reply(False, "Malformed PLAIN response")
NO_PROXY_AUTH = Reply(False, "Authorization identity must be empty or the user", "AUTH")
APOP_UNAVAILABLE = Reply(False, "APOP not supported")
LOGGED_IN = Reply(True, "Logged in")
AUTH_FAILED = Reply(False, "Authentication failed", "AUTH")
AUTH_TEMPORARY = Reply(False, "Authentication temporarily unavailable, try again later", "SYS/TEMP")
IN_USE = Reply(False, "Mailbox in use by another POP3 session", "IN-USE")
MAILBOX_TEMPORARY = Reply(False, "Mailbox cannot be opened, try again later", "SYS/TEMP")

# Transaction (RFC 1939 §5)
OK = Reply(True, "")
STAT = Reply(True, "{count} {size}")
LIST_FOLLOWS = Reply(True, "{count} messages ({size} octets)")
UIDL_FOLLOWS = Reply(True, "Unique-ID listing follows")
LISTING_LINE = Reply(True, "{number} {value}")
RETR_FOLLOWS = Reply(True, "{size} octets")
TOP_FOLLOWS = Reply(True, "Top of message follows")
MARKED_DELETED = Reply(True, "Message {number} deleted")
RESET = Reply(True, "Reset")
READ_FAILED = Reply(False, "Message cannot be read, try again later", "SYS/TEMP")
MESSAGE_GONE = Reply(False, "Message {number} was removed by another session")
COMMIT_FAILED = Reply(False, "Some deleted messages not removed, try again later", "SYS/TEMP")

# Errors of the client
LINE_TOO_LONG = Reply(False, "Line too long")
UNKNOWN_COMMAND = Reply(False, "Unknown command")
SYNTAX = Reply(False, "Syntax: {usage}")
LOG_IN_FIRST = Reply(False, "Log in first")
ALREADY_LOGGED_IN = Reply(False, "Already logged in")
BAD_NUMBER = Reply(False, "Invalid message number")
NO_SUCH_MESSAGE = Reply(False, "No such message")
MESSAGE_DELETED = Reply(False, "Message {number} is deleted")
BAD_LINE_COUNT = Reply(False, "Invalid line count")


def _clean(data: bytes, limit: int = 64) -> str:
    """
    A client-given string made safe for a log line.
    """
    text = data[:limit].decode("utf-8", "replace")
    return "".join(c if " " < c != "\x7f" else "?" for c in text)


def _number(text: str) -> int | None:
    if text.isascii() and text.isdigit() and len(text) <= 9:
        return int(text)
    return None


class _Encoder:
    """
    Turns a stored message, a block at a time, into the text of a POP3
    multi-line response: CRLF line ends whatever the file has (bare LF
    becomes CRLF, CRLF stays), dot-stuffed (RFC 1939 §3); for TOP, cut
    after the header (which ends at the first empty line) and C{bodyLines}
    lines of the body (RFC 1939 §7).

    @ivar complete: TOP has everything it wants; read no further.
    """

    def __init__(self, bodyLines: int | None = None) -> None:
        self._bodyLines = bodyLines
        self._inHeader = bodyLines is not None
        self._heldCR = False
        self._atLineStart = True
        self.complete = False

    def feed(self, block: bytes) -> bytes:
        if self.complete:
            return b""
        if self._heldCR:
            block = b"\r" + block
            self._heldCR = False
        if block.endswith(b"\r"):
            # It may be the start of a CRLF split across blocks.
            block = block[:-1]
            self._heldCR = True
        if b"\n" in block:
            block = _BARE_LF.sub(b"\r\n", block)
        if not block:
            return b""
        if self._bodyLines is None:
            return self._stuff(block)
        return self._top(block)

    def finish(self) -> bytes:
        """
        The end of the response: a CRLF if the message did not end with
        one, then the terminating dot.
        """
        out = b""
        if not self.complete:
            if self._heldCR:
                out += self._stuff(b"\r")
            if not self._atLineStart:
                out += b"\r\n"
        return out + b".\r\n"

    def _stuff(self, text: bytes) -> bytes:
        out = text.replace(b"\n.", b"\n..")
        if self._atLineStart and out[:1] == b".":
            out = b"." + out
        self._atLineStart = out.endswith(b"\n")
        return out

    def _top(self, text: bytes) -> bytes:
        out = []
        position = 0
        while position < len(text):
            end = text.find(b"\n", position)
            whole = end >= 0
            piece = text[position : end + 1] if whole else text[position:]
            position = end + 1 if whole else len(text)
            emptyLine = whole and piece == b"\r\n" and self._atLineStart
            out.append(self._stuff(piece))
            if self._inHeader:
                if emptyLine:
                    self._inHeader = False
                    self.complete = self._bodyLines == 0
            elif whole:
                assert self._bodyLines is not None
                self._bodyLines -= 1
                self.complete = self._bodyLines == 0
            if self.complete:
                break
        return b"".join(out)


def _messageChunks(source: Any, encoder: _Encoder, chunkSize: int = CHUNK_SIZE) -> Iterator[bytes]:
    """
    The encoded message, in non-empty chunks; the last one carries the
    terminating dot.  C{source} is closed at the end.
    """
    try:
        block = source.read(chunkSize)
        while True:
            out = encoder.feed(block)
            following = source.read(chunkSize) if block and not encoder.complete else b""
            if not following:
                yield out + encoder.finish()
                return
            if out:
                yield out
            block = following
    finally:
        source.close()


def _listChunks(lines: Iterable[bytes], chunkSize: int = CHUNK_SIZE) -> Iterator[bytes]:
    """
    Lines of a multi-line response in chunks; the last carries the dot.
    """
    batch: list[bytes] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line)
        if size >= chunkSize:
            yield b"".join(batch)
            batch, size = [], 0
    batch.append(b".\r\n")
    yield b"".join(batch)


@implementer(IPullProducer)
class _Sender:
    """
    Writes a multi-line response a chunk at a time, as the transport asks
    for more, so a large message is never in memory whole and a slow
    client holds back only its own session.

    @ivar done: fires with C{True} when everything was written, C{False}
        when the connection went first or reading failed.
    """

    log = Logger()

    def __init__(
        self,
        transport: Any,
        head: bytes,
        chunks: Iterator[bytes],
        onProgress: Callable[[], None],
    ) -> None:
        self._transport = transport
        self._head = head
        self._chunks = chunks
        self._onProgress = onProgress
        self._pending = b""
        self._finished = False
        self.done: Deferred[bool] = Deferred()

    def start(self) -> Deferred[bool]:
        """
        Read the first chunk, then produce.

        @raise OSError: the first read failed; nothing has been sent.
        """
        self._pending = self._head + next(self._chunks)
        self._transport.registerProducer(self, False)
        return self.done

    def resumeProducing(self) -> None:
        if self._finished:
            return
        data = self._pending
        try:
            following = next(self._chunks, None)
        except Exception:
            # Part of the response is out: the only honest end is to hang up.
            self.log.failure("reading a message failed mid-response")
            self._finish(False)
            self._transport.loseConnection()
            return
        self._transport.write(data)
        self._onProgress()
        if following is None:
            self._finish(True)
        else:
            self._pending = following

    def stopProducing(self) -> None:
        if not self._finished:
            self._finish(False, unregister=False)

    def _finish(self, completed: bool, unregister: bool = True) -> None:
        self._finished = True
        self._pending = b""
        self._chunks.close()  # type: ignore[attr-defined]
        if unregister:
            self._transport.unregisterProducer()
        self.done.callback(completed)


class POP3Server(pop3.POP3):
    """
    One POP3 session.  Built by L{POP3Factory}.

    Twisted's line framing, dispatch, CAPA, AUTH, APOP and message sending
    are replaced (see the module docstring); its class is kept so that
    code that knows Twisted's server knows this one.
    """

    log = Logger()

    def __init__(self, factory: "POP3Factory", contextFactory: Any = None) -> None:
        self.factory = factory
        self.portal = factory.portal
        self.ctx = contextFactory
        self.timeOut = factory.idleTimeout
        self.callLater = factory.clock.callLater
        self.state = AUTHORIZATION
        self.mbox: ISessionMailbox | None = None
        self.peer = ""
        self.tls = factory.implicitTLS
        self.canStartTLS = False
        self._input = b""
        self._blocked = False
        self._skippingLongLine = False
        self._shuttingDown = False
        self._errors = 0
        self._user: bytes | None = None
        self._loggedIn = ""
        self._sender: _Sender | None = None
        self._retrieved = 0
        self._deleted: set[int] = set()

    # Connection

    def connectionMade(self) -> None:
        self.peer = peerHost(self.transport.getPeer())
        portalFor = getattr(self.portal, "portalFor", None)
        if portalFor is not None:
            # An Authenticator: logins from this peer are throttled and logged.
            self.portal = portalFor(self.peer)
        self.canStartTLS = self.ctx is not None and hasattr(self.transport, "startTLS")
        # Twisted's RETR of many messages stalls ~40 ms each on Nagle's
        # algorithm and delayed ACKs.
        setNoDelay(self.transport)
        self.factory.connected(self)
        # No APOP timestamp (RFC 1939 §7): APOP is not offered.
        self.reply(GREETING.format(host=self.factory.hostname))
        self.setTimeout(self.timeOut)

    def connectionLost(self, reason: Failure | None = None) -> None:  # type: ignore[override]
        self.state = CLOSED
        self.setTimeout(None)
        self._input = b""
        if self._sender is not None:
            self._sender.stopProducing()
        # RFC 1939 §6: without QUIT there is no UPDATE state; nothing changes.
        self._endSession()
        self.factory.disconnected(self)

    def _endSession(self) -> None:
        mbox, self.mbox = self.mbox, None
        if mbox is not None:
            mbox.release()
        logout, self._onLogout = self._onLogout, None
        if logout is not None:
            logout()

    def timeoutConnection(self) -> None:
        self.log.info("pop3 idle timeout peer={peer} user={user}", peer=self.peer, user=self._loggedIn)
        # RFC 1939 §3: close without a response and without UPDATE.
        self.close(abort=self._sender is not None)

    def shutDown(self) -> None:
        """
        The server is stopping: say so and hang up, at once or, if a reply
        is pending (a message being sent, the commit), right after it.
        Uncommitted changes are dropped, as for any connection lost.
        """
        self._shuttingDown = True
        if not self._blocked:
            self.close(SHUTTING_DOWN)

    def close(self, reply: Reply | None = None, abort: bool = False) -> None:
        """
        Say C{reply} (if any) and hang up.
        """
        if self.state is CLOSED:
            return
        if reply is not None:
            self.reply(reply)
        self.state = CLOSED
        self._input = b""
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    # Replies

    def reply(self, reply: Reply) -> None:
        """
        Send C{reply}; after too many client errors, hang up.
        """
        if self.state is CLOSED:
            return
        self.transport.write(reply.toBytes())
        if reply.isClientError:
            self._errors += 1
            if self._errors >= self.factory.maxErrors:
                self.log.info("pop3 too many errors peer={peer}", peer=self.peer)
                self.close()

    def _multiline(self, head: Reply, lines: Iterable[str]) -> None:
        text = "".join(f"{line}\r\n" for line in lines)
        self.transport.write(head.toBytes() + text.encode("ascii") + b".\r\n")

    def _send(self, head: Reply, chunks: Iterator[bytes]) -> Deferred[bool]:
        """
        Send a multi-line response through a L{_Sender}.

        @raise OSError: the first read failed; nothing was sent.
        """
        sender = _Sender(self.transport, head.toBytes(), chunks, self._progress)
        d = sender.start()
        if not d.called:
            self._sender = sender

        def finished(completed: bool) -> bool:
            self._sender = None
            return completed

        return d.addCallback(finished)

    def _progress(self) -> None:
        self.resetTimeout()
        if self.mbox is not None:
            self.mbox.keepAlive()

    # Input framing

    def dataReceived(self, data: bytes) -> None:
        if self.state is CLOSED:
            return
        self.resetTimeout()
        self._input += data
        if self._blocked:
            if len(self._input) > MAX_PENDING_INPUT:
                self.transport.pauseProducing()
            return
        self._process()

    def _process(self) -> None:
        limit = self.factory.lineLength
        while self._input and not self._blocked:
            if self.state is CLOSED:
                self._input = b""
                return
            end = self._input.find(b"\n")
            if end < 0:
                if len(self._input) > limit + 1:  # the line may end in its CR
                    self._skippingLongLine = True
                    self._input = b""
                return
            line, self._input = self._input[:end], self._input[end + 1 :]
            if self._skippingLongLine or len(line) > limit + 1:
                self._skippingLongLine = False
                if self.state is SASL:
                    self.state = AUTHORIZATION
                self.reply(LINE_TOO_LONG)
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if self.state is SASL:
                self.state = AUTHORIZATION
                result = self._plain(line.strip())
            else:
                result = self._command(line)
            if isinstance(result, Deferred):
                self._block(result)

    def _block(self, d: Deferred[Any]) -> None:
        """
        Hold further input until C{d} has fired.
        """
        if d.called:
            return
        self._blocked = True

        def unblock(result: object) -> None:
            self._blocked = False
            if self._shuttingDown:
                self.close(SHUTTING_DOWN)
            elif self.state is not CLOSED:
                self.transport.resumeProducing()
                self._process()

        d.addBoth(unblock)

    def _command(self, line: bytes) -> Any:
        verb, _, rest = line.lstrip(b" ").partition(b" ")
        entry = self._COMMANDS.get(verb.upper())
        if entry is None:
            self.reply(UNKNOWN_COMMAND)
            return None
        handler, states = entry
        if self.state not in states:
            self.reply(LOG_IN_FIRST if self.state is AUTHORIZATION else ALREADY_LOGGED_IN)
            return None
        try:
            return handler(self, rest)
        except Exception:
            self.log.failure("POP3 command {verb} failed", verb=_clean(verb))
            self.reply(INTERNAL_ERROR)
            return None
        finally:
            if self.mbox is not None:
                self.mbox.keepAlive()

    def _arguments(self, rest: bytes, count: int, usage: str) -> list[str] | None:
        """
        Exactly C{count} ASCII words, or a syntax error said.
        """
        try:
            words = rest.decode("ascii").split()
        except UnicodeDecodeError:
            words = []
            count = -1
        if len(words) != count:
            self.reply(SYNTAX.format(usage=usage))
            return None
        return words

    def _message(self, text: str) -> int | None:
        """
        The 0-based index of a message number that names a message not
        deleted (RFC 1939 §5), or C{None} with the error said.
        """
        number = _number(text)
        if number is None or number < 1:
            self.reply(BAD_NUMBER)
            return None
        assert self.mbox is not None
        try:
            deleted = self.mbox.isDeleted(number - 1)
        except ValueError:
            self.reply(NO_SUCH_MESSAGE)
            return None
        if deleted:
            self.reply(MESSAGE_DELETED.format(number=number))
            return None
        return number - 1

    def _live(self) -> list[tuple[int, int]]:
        """
        C{(number, size)} of every message not deleted.
        """
        mbox = self.mbox
        assert mbox is not None
        sizes = mbox.listMessages()
        return [(i + 1, size) for i, size in enumerate(sizes) if not mbox.isDeleted(i)]

    # Authorization state

    def do_CAPA(self, rest: bytes) -> None:
        # RFC 2449 §5; RFC 2595 §4 (STLS); RFC 5034 §3 (SASL); RFC 3206 §6.
        if rest.strip():
            self.reply(SYNTAX.format(usage="CAPA"))
            return
        lines = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is AUTHORIZATION:
            if self.canStartTLS and not self.tls:
                lines.append("STLS")
            if self.tls:
                lines += ["USER", "SASL PLAIN"]
        self._multiline(CAPABILITIES, lines)

    def do_STLS(self, rest: bytes) -> None:
        if rest.strip():
            self.reply(SYNTAX.format(usage="STLS"))
        elif self.tls:
            self.reply(TLS_ACTIVE)
        elif not self.canStartTLS:
            self.reply(TLS_UNAVAILABLE)
        else:
            self.reply(BEGIN_TLS)
            # RFC 2595 §4: what was pipelined after STLS came in the clear
            # and is discarded; nothing said before TLS is kept.
            self._input = b""
            self._skippingLongLine = False
            self._user = None
            self.tls = True
            self.transport.startTLS(self.ctx)

    def do_USER(self, rest: bytes) -> None:
        if not self.tls:
            self.reply(PLAINTEXT_REFUSED)
            return
        name = rest.strip()
        if not name or b" " in name:
            self.reply(SYNTAX.format(usage="USER name"))
            return
        self._user = name
        self.reply(USER_OK)

    def do_PASS(self, rest: bytes) -> Deferred[None] | None:
        if not self.tls:
            self.reply(PLAINTEXT_REFUSED)
            return None
        user, self._user = self._user, None
        if user is None:
            self.reply(USER_FIRST)
            return None
        if not rest:
            self.reply(SYNTAX.format(usage="PASS password"))
            return None
        # The password is the rest of the line, spaces and all.
        return self._login(user, rest)

    def do_AUTH(self, rest: bytes) -> Deferred[None] | None:
        if not self.tls:
            self.reply(PLAINTEXT_REFUSED)
            return None
        words = rest.split()
        if not words:
            self._multiline(MECHANISMS, ["PLAIN"])
            return None
        if len(words) > 2:
            self.reply(SYNTAX.format(usage="AUTH mechanism [initial-response]"))
            return None
        if words[0].upper() != b"PLAIN":
            self.reply(UNKNOWN_MECHANISM)
            return None
        if len(words) == 2:
            # RFC 5034 §4: the initial response on the line; "=" is empty.
            return self._plain(words[1])
        self.state = SASL
        self.transport.write(b"+ \r\n")
        return None

    def _plain(self, response: bytes) -> Deferred[None] | None:
        """
        One SASL PLAIN response (RFC 4616): C{authzid NUL authcid NUL
        passwd}, base64.
        """
        if response == b"*":
            self.reply(AUTH_CANCELLED)  # RFC 5034 §4
            return None
        if response == b"=":
            response = b""
        try:
            decoded = base64.b64decode(response, validate=True)
        except (binascii.Error, ValueError):
            self.reply(BAD_BASE64)
            return None
        parts = decoded.split(b"\0")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            self.reply(BAD_PLAIN)
            return None
        authzid, authcid, password = parts
        if authzid and authzid != authcid:
            self.reply(NO_PROXY_AUTH)
            return None
        return self._login(authcid, password)

    def do_APOP(self, rest: bytes) -> None:
        # APOP needs the clear-text password on the server; passwords are
        # stored hashed.  (Twisted's APOP always fails anyway.)
        self.reply(APOP_UNAVAILABLE)

    def _login(self, user: bytes, password: bytes) -> Deferred[None]:
        d = maybeDeferred(self.portal.login, UsernamePassword(user, password), None, IMailbox)
        return d.addCallbacks(
            self._authenticated, self._loginFailed, callbackArgs=(user,), errbackArgs=(user,)
        )

    def _authenticated(self, result: tuple[Any, Any, Callable[[], None]], user: bytes) -> Any:
        interface, avatar, logout = result
        if self.state is CLOSED:
            logout()
            return None
        if interface is not IMailbox or not ISessionMailbox.providedBy(avatar):
            self.log.error("the realm gave POP3 a {avatar!r}, not an ISessionMailbox", avatar=avatar)
            logout()
            self.reply(AUTH_TEMPORARY)
            return None
        name = _clean(user)
        d = self.factory.runBlocking(avatar.open, self.factory.clock)

        def opened(_: object) -> None:
            if self.state is CLOSED:
                avatar.release()
                logout()
                return
            self.mbox, self._onLogout = avatar, logout
            self.state = TRANSACTION
            self._loggedIn = name
            self.log.info(
                "pop3 login user={user} peer={peer} tls={tls}", user=name, peer=self.peer, tls=self.tls
            )
            self.reply(LOGGED_IN)

        def notOpened(reason: Failure) -> None:
            logout()
            if reason.check(MailboxInUse):
                self.log.info("pop3 mailbox in use user={user} peer={peer}", user=name, peer=self.peer)
                self.reply(IN_USE)
            else:
                self.log.failure("cannot open the maildrop of {user}", reason, user=name)
                self.reply(MAILBOX_TEMPORARY)

        return d.addCallbacks(opened, notOpened)

    def _loginFailed(self, reason: Failure, user: bytes) -> None:
        if self.state is CLOSED:
            return
        name = _clean(user)
        if reason.check(TemporaryAuthError):
            self.log.info(
                "pop3 login deferred user={user} peer={peer}: {why}",
                user=name,
                peer=self.peer,
                why=reason.getErrorMessage(),
            )
            self.reply(AUTH_TEMPORARY)
        elif reason.check(UnauthorizedLogin, LoginDenied):
            if not hasattr(self.factory.portal, "portalFor"):
                # (An Authenticator logs the failure itself, with the peer.)
                self.log.info(
                    "pop3 login failed user={user} peer={peer}", user=name, peer=self.peer
                )
            self.reply(AUTH_FAILED)
        else:
            self.log.failure("POP3 login of {user} failed", reason, user=name)
            self.reply(AUTH_TEMPORARY)

    # Transaction state

    def do_STAT(self, rest: bytes) -> None:
        if self._arguments(rest, 0, "STAT") is None:
            return
        live = self._live()
        self.reply(STAT.format(count=len(live), size=sum(size for _, size in live)))

    def do_LIST(self, rest: bytes) -> Deferred[bool] | None:
        assert self.mbox is not None
        return self._listing(rest, "LIST", self.mbox.listMessages)

    def do_UIDL(self, rest: bytes) -> Deferred[bool] | None:
        mbox = self.mbox
        assert mbox is not None
        return self._listing(rest, "UIDL", lambda index: mbox.getUidl(index).decode("ascii"))

    def _listing(self, rest: bytes, verb: str, value: Callable[[int], object]) -> Deferred[bool] | None:
        """
        LIST or UIDL: one message's line, or every message's (RFC 1939 §5,
        §7).
        """
        mbox = self.mbox
        assert mbox is not None
        try:
            words = rest.decode("ascii").split()
        except UnicodeDecodeError:
            words = ["", ""]
        if len(words) > 1:
            self.reply(SYNTAX.format(usage=f"{verb} [message]"))
            return None
        if words:
            index = self._message(words[0])
            if index is not None:
                self.reply(LISTING_LINE.format(number=index + 1, value=value(index)))
            return None
        if verb == "LIST":
            live = self._live()
            head = LIST_FOLLOWS.format(count=len(live), size=sum(size for _, size in live))
            numbers = [number for number, _ in live]
        else:
            head = UIDL_FOLLOWS
            numbers = [i + 1 for i in range(mbox.count()) if not mbox.isDeleted(i)]
        lines = (f"{number} {value(number - 1)}\r\n".encode("ascii") for number in numbers)
        return self._send(head, _listChunks(lines))

    def do_RETR(self, rest: bytes) -> Deferred[bool] | None:
        words = self._arguments(rest, 1, "RETR message")
        if words is None:
            return None
        index = self._message(words[0])
        if index is None:
            return None
        assert self.mbox is not None
        size = self.mbox.listMessages(index)
        return self._sendMessage(index, RETR_FOLLOWS.format(size=size), None)

    def do_TOP(self, rest: bytes) -> Deferred[bool] | None:
        words = self._arguments(rest, 2, "TOP message lines")
        if words is None:
            return None
        index = self._message(words[0])
        if index is None:
            return None
        lines = _number(words[1])
        if lines is None:
            self.reply(BAD_LINE_COUNT)
            return None
        return self._sendMessage(index, TOP_FOLLOWS, lines)

    def _sendMessage(self, index: int, head: Reply, bodyLines: int | None) -> Deferred[bool] | None:
        mbox = self.mbox
        assert mbox is not None
        try:
            source = mbox.getMessage(index)
            d = self._send(head, _messageChunks(source, _Encoder(bodyLines)))
        except FileNotFoundError:
            # An IMAP session (or another program) expunged it since this
            # session's listing: nothing is wrong with the server.
            self.log.warn(
                "message {number} of {user} was removed by another session", number=index + 1, user=self._loggedIn
            )
            self.reply(MESSAGE_GONE.format(number=index + 1))
            return None
        except OSError:
            self.log.failure("cannot read message {number} of {user}", number=index + 1, user=self._loggedIn)
            self.reply(READ_FAILED)
            return None

        def sent(completed: bool) -> bool:
            # Dovecot's rule: RETR marks the message seen, TOP does not.
            if completed and bodyLines is None and self.mbox is mbox:
                mbox.markSeen(index)
                self._retrieved += 1
            return completed

        return d.addCallback(sent)

    def do_DELE(self, rest: bytes) -> None:
        words = self._arguments(rest, 1, "DELE message")
        if words is None:
            return
        index = self._message(words[0])
        if index is None:
            return
        assert self.mbox is not None
        self.mbox.deleteMessage(index)
        self._deleted.add(index)
        self.reply(MARKED_DELETED.format(number=index + 1))

    def do_NOOP(self, rest: bytes) -> None:
        if self._arguments(rest, 0, "NOOP") is not None:
            self.reply(OK)

    def do_RSET(self, rest: bytes) -> None:
        if self._arguments(rest, 0, "RSET") is None:
            return
        assert self.mbox is not None
        self.mbox.undeleteMessages()
        self._deleted.clear()
        self.reply(RESET)

    def do_QUIT(self, rest: bytes) -> Deferred[None] | None:
        if self.state is not TRANSACTION:
            self.close(BYE)
            return None
        # RFC 1939 §6: the UPDATE state.
        assert self.mbox is not None
        d = self.factory.runBlocking(self.mbox.commit)

        def committed(_: object) -> None:
            self.log.info(
                "pop3 logout user={user} retrieved={retrieved} deleted={deleted} peer={peer}",
                user=self._loggedIn,
                retrieved=self._retrieved,
                deleted=len(self._deleted),
                peer=self.peer,
            )
            self._endSession()
            self.close(BYE)

        def failed(reason: Failure) -> None:
            self.log.failure("pop3 commit failed user={user}", reason, user=self._loggedIn)
            self._endSession()
            self.close(COMMIT_FAILED)

        return d.addCallbacks(committed, failed)

    _COMMANDS: dict[bytes, tuple[Callable[..., Any], frozenset[str]]] = {}


_AUTHORIZATION = frozenset({AUTHORIZATION})
_TRANSACTION = frozenset({TRANSACTION})
_EITHER = _AUTHORIZATION | _TRANSACTION

# Built by hand: Twisted's class has do_LAST, do_RPOP and others that are
# not offered.
POP3Server._COMMANDS = {
    b"CAPA": (POP3Server.do_CAPA, _EITHER),
    b"QUIT": (POP3Server.do_QUIT, _EITHER),
    b"STLS": (POP3Server.do_STLS, _AUTHORIZATION),
    b"USER": (POP3Server.do_USER, _AUTHORIZATION),
    b"PASS": (POP3Server.do_PASS, _AUTHORIZATION),
    b"AUTH": (POP3Server.do_AUTH, _AUTHORIZATION),
    b"APOP": (POP3Server.do_APOP, _AUTHORIZATION),
    b"STAT": (POP3Server.do_STAT, _TRANSACTION),
    b"LIST": (POP3Server.do_LIST, _TRANSACTION),
    b"UIDL": (POP3Server.do_UIDL, _TRANSACTION),
    b"RETR": (POP3Server.do_RETR, _TRANSACTION),
    b"TOP": (POP3Server.do_TOP, _TRANSACTION),
    b"DELE": (POP3Server.do_DELE, _TRANSACTION),
    b"NOOP": (POP3Server.do_NOOP, _TRANSACTION),
    b"RSET": (POP3Server.do_RSET, _TRANSACTION),
}


class POP3Factory(SessionFactory):
    """
    Builds L{POP3Server} sessions for one listener.

    @param portal: logs users in; the realm gives L{IMailbox} avatars that
        provide L{ISessionMailbox}.
    @param clock: the reactor's clock (idle timeout, lock times).
    @param hostname: this server's name, for the greeting.
    @param contextFactory: TLS server options, for STLS (or C{None}).
    @param implicitTLS: the listener is TLS from the first byte (port 995).
    @param idleTimeout: seconds a client may stay silent.
    @param lineLength: longest command line, in octets before the CRLF.
    @param maxErrors: client errors one session may make.
    @param connectionsPerPeer: most simultaneous sessions from one address.
    @param peerLimitExempt: networks that limit does not apply to.
    @param runBlocking: runs blocking file-system work (opening the
        maildrop, the commit) and returns a L{Deferred}; by default in
        the reactor thread, or give it a thread pool.
    """

    log = Logger()
    noisy = False
    protocol = POP3Server  # type: ignore[assignment]

    def __init__(
        self,
        *,
        portal: Portal,
        clock: IReactorTime,
        hostname: str = "localhost",
        contextFactory: Any = None,
        implicitTLS: bool = False,
        idleTimeout: float = IDLE_TIMEOUT,
        lineLength: int = LINE_LENGTH,
        maxErrors: int = MAX_ERRORS,
        connectionsPerPeer: int = 20,
        peerLimitExempt: tuple[Any, ...] = _LOOPBACK,
        runBlocking: Callable[..., Deferred[Any]] = maybeDeferred,
    ) -> None:
        self.portal = portal
        self.clock = clock
        self.hostname = hostname
        self.contextFactory = contextFactory
        self.implicitTLS = implicitTLS
        self.idleTimeout = idleTimeout
        self.lineLength = lineLength
        self.maxErrors = maxErrors
        self.connectionsPerPeer = connectionsPerPeer
        self.peerLimitExempt = peerLimitExempt
        self.runBlocking = runBlocking
        self.initSessions()

    def buildProtocol(self, addr: Any) -> Protocol:
        host = peerHost(addr)
        if self.overLimit(host, self.connectionsPerPeer, self.peerLimitExempt):
            self.log.info("too many POP3 connections peer={peer}", peer=host)
            refuse = Refuse(TOO_MANY_CONNECTIONS.toBytes())
            refuse.factory = self
            return refuse
        return self.protocol(self, contextFactory=None if self.implicitTLS else self.contextFactory)
