# -*- test-case-name: tests.smtp.test_server -*-
"""
The ESMTP server: Twisted's L{twisted.mail.smtp.ESMTP}, extended where it
falls short of RFC 5321 and of what a public MX must withstand.

What is ours, and why (each has a named regression test):

  - Input framing.  Commands and message text are framed here, not by
    C{LineOnlyReceiver}: a line over the limit is answered C{500 5.5.2}
    and skipped without ever being held whole, so 64 MiB without a line
    break costs neither memory nor a stalled reactor; inside DATA an
    over-long line never drops back to command mode (body smuggling).
  - Only C{<CRLF>.<CRLF>} ends DATA (RFC 5321 §4.1.1.4); bare LF in the
    text is stored as CRLF, and C{<LF>.<LF>} is just text.  Message text is
    scanned a chunk at a time rather than a line at a time.
  - Pipelining (RFC 2920): commands are answered strictly in order; while a
    reply is pending (a delivery being fsynced) the rest of the input
    waits.
  - STARTTLS discards whatever the client pipelined after it and forgets
    the whole session (RFC 3207 §4.2).
  - HELO/EHLO before MAIL; NOOP, VRFY (C{252}), RSET, HELP; SIZE (RFC
    1870), 8BITMIME (RFC 6152), ENHANCEDSTATUSCODES (RFC 2034/3463) and
    PIPELINING advertised and honoured.
  - A failure after DATA is answered as what it is: C{451 4.3.0} when it
    is temporary, never Twisted's blanket C{550}.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import re
from typing import Any, Callable

from attrs import evolve
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.python.failure import Failure

from mailhub.address import NULL_SENDER, Address, AddressError, parsePath
from mailhub.config import Limits
from mailhub.envelope import Envelope, Session
from mailhub import sasl
from mailhub.errors import DeliveryError, TemporaryAuthError
from mailhub.smtp import replies as R
from mailhub.smtp.delivery import IMailDelivery
from mailhub.smtp.replies import Reply
from mailhub.sessions import Refuse, SessionFactory, inNetworks, peerHost
from mailhub.spool import Spool

COMMAND, DATA, AUTH, CLOSED = "command", "data", "auth", "closed"

#: While a reply is pending, stop reading once this much input is waiting.
MAX_PENDING_INPUT = 256 * 1024

_BARE_LF = re.compile(rb"(?<!\r)\n")


def _hasLongLine(text: bytes, lineLength: int) -> bool:
    """
    Whether C{text} has a line longer than C{lineLength} octets without
    its CRLF: a run of C{lineLength + 2} or more octets without LF (the CR
    before the LF is part of the run).

    Such a run holds a whole aligned block of half its length, so only
    blocks without LF are measured, which costs a few C{find} calls for
    text of ordinary lines (splitting it into lines costs a list of them).
    """
    run = lineLength + 2
    size = len(text)
    if size < run:
        return False
    half = run // 2
    for start in range(0, size - half + 1, half):
        if text.find(b"\n", start, start + half) < 0:
            right = text.find(b"\n", start + half)
            if (size if right < 0 else right) - (text.rfind(b"\n", 0, start) + 1) >= run:
                return True
    return False


_dateCache: tuple[int, str] = (-1, "")


def _rfc5322Date(seconds: float) -> str:
    """
    C{seconds} as an RFC 5322 date in UTC, made once per second.
    """
    global _dateCache
    whole = int(seconds)
    if _dateCache[0] != whole:
        when = datetime.datetime.fromtimestamp(whole, datetime.timezone.utc)
        _dateCache = (whole, email.utils.format_datetime(when))
    return _dateCache[1]
_PARAM = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e]+))?\Z")
_HTTP_VERBS = frozenset({b"GET", b"POST", b"HEAD", b"PUT", b"CONNECT", b"OPTIONS"})


def _clean(text: str, limit: int = 100) -> str:
    """
    A client-given string made safe for a header or a log line.
    """
    return "".join(c if " " < c < "\x7f" else "?" for c in text[:limit])


class ESMTPServer(smtp.ESMTP):
    """
    One SMTP session.  Built by L{SMTPFactory}, which sets the class
    attributes below per listener.
    """

    log = Logger()

    def __init__(
        self,
        factory: "SMTPFactory",
        contextFactory: Any = None,
    ) -> None:
        super().__init__(contextFactory=contextFactory)
        self.factory = factory
        self.delivery = factory.delivery
        self.host = factory.hostname.encode("ascii")
        self.timeout = factory.limits.idleTimeout
        self.callLater = factory.clock.callLater
        self._input = b""
        self._blocked = False
        self._shuttingDown = False
        self._skippingLongLine = False
        self._errors = 0
        self._sasl: Any = None
        self.session: Session | None = None
        self._reset()

    @property
    def peer(self) -> str:
        """
        The client's address (what the factory counts sessions by).
        """
        return self.session.peer if self.session is not None else ""

    # Connection

    def connectionMade(self) -> None:
        peer = peerHost(self.transport.getPeer())
        self.session = Session(peer=peer, mayRelay=self.factory.isTrusted(peer))
        self.canStartTLS = self.ctx is not None and hasattr(self.transport, "startTLS")
        self.session.tls = self.factory.implicitTLS
        self.factory.connected(self)
        self.mode = COMMAND
        self.reply(R.GREETING.format(host=self.factory.hostname))
        self.setTimeout(self.timeout)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.mode = CLOSED
        self.setTimeout(None)
        self._reset()
        self.factory.disconnected(self)
        if self._onLogout:
            self._onLogout()
            self._onLogout = None

    def timeoutConnection(self) -> None:
        self.log.info("timeout peer={peer}", peer=self.session and self.session.peer)
        self.close(R.TIMEOUT.format(host=self.factory.hostname))

    def shutDown(self) -> None:
        """
        The server is stopping: say C{421 4.3.2} (RFC 5321 §3.8) and hang
        up, at once or, if a message is being delivered, right after its
        reply.
        """
        self._shuttingDown = True
        if not self._blocked:
            self.close(R.SHUTTING_DOWN.format(host=self.factory.hostname))

    def close(self, reply: Reply | None = None) -> None:
        """
        Say C{reply} (if any) and hang up.
        """
        if self.mode is CLOSED:
            return
        if reply is not None:
            self.reply(reply)
        self.mode = CLOSED
        self._input = b""
        self.transport.loseConnection()

    # Replies

    def reply(self, reply: Reply) -> None:
        """
        Send C{reply}, counting errors.  The enhanced code goes on every
        line (RFC 2034 §4).
        """
        if self.mode is CLOSED:
            return
        prefix = f"{reply.enhanced} " if reply.enhanced else ""
        lines = reply.text.split("\n")
        out = []
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            out.append(f"{reply.code}{sep}{prefix}{line}\r\n")
        self.transport.write("".join(out).encode("utf-8", "replace"))
        if reply.code >= 500:
            self._errors += 1
            if self._errors >= self.factory.limits.errors:
                self.log.info(
                    "too many errors peer={peer}", peer=self.session and self.session.peer
                )
                self.close(R.TOO_MANY_ERRORS.format(host=self.factory.hostname))

    def sendCode(self, code: int, message: bytes = b"") -> None:
        # What Twisted's own code paths (AUTH, later) send goes through here.
        text = message.decode("utf-8", "replace")
        self.reply(Reply(code, "", text))

    # Input framing

    def dataReceived(self, data: bytes) -> None:
        if self.mode is CLOSED:
            return
        self.resetTimeout()
        self._input += data
        if self._blocked:
            if len(self._input) > MAX_PENDING_INPUT:
                self.transport.pauseProducing()
            return
        self._process()

    def _process(self) -> None:
        limit = self.factory.limits.lineLength
        while self._input and not self._blocked:
            mode = self.mode
            if mode is DATA:
                if not self._dataChunk():
                    return
                continue
            if mode is AUTH:
                end = self._input.find(b"\n")
                if end < 0:
                    if len(self._input) > limit + 1:
                        self._input = b""
                        self.mode = COMMAND
                        self.reply(R.LINE_TOO_LONG)
                    return
                line, self._input = self._input[:end], self._input[end + 1 :]
                self._authResponse(line)
                continue
            if mode is not COMMAND:
                self._input = b""
                return
            end = self._input.find(b"\n")
            if end < 0:
                if len(self._input) > limit + 1:  # the line may end in its CR
                    # Keep nothing of a line that is already too long.
                    self._skippingLongLine = True
                    self._input = b""
                return
            line, self._input = self._input[:end], self._input[end + 1 :]
            if self._skippingLongLine or len(line) > limit + 1:
                self._skippingLongLine = False
                self.reply(R.LINE_TOO_LONG)
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            self._command(line)

    def _block(self, d: Deferred[Any]) -> None:
        """
        Hold further input until C{d} has fired (pipelined commands are
        answered in order).
        """
        if d.called:
            return
        self._blocked = True

        def unblock(result: object) -> None:
            self._blocked = False
            if self._shuttingDown:
                self.close(R.SHUTTING_DOWN.format(host=self.factory.hostname))
            elif self.mode is not CLOSED:
                self.transport.resumeProducing()
                self._process()

        d.addBoth(unblock)

    def _command(self, line: bytes) -> None:
        verb, _, rest = line.strip().partition(b" ")
        verb = verb.upper()
        handler = self._COMMANDS.get(verb)
        if handler is None:
            if verb in _HTTP_VERBS:
                self.log.info("HTTP request from peer={peer}", peer=self.session.peer)
                self.close(R.NOT_SMTP.format(host=self.factory.hostname))
            else:
                self.reply(R.UNRECOGNIZED)
            return
        try:
            arg = rest.strip().decode("ascii")
        except UnicodeDecodeError:
            self.reply(R.SYNTAX.format(usage=f"{verb.decode()} with ASCII arguments"))
            return
        try:
            result = handler(self, arg)
        except Exception:
            self.log.failure("SMTP command {verb} failed", verb=verb)
            self.reply(R.LOCAL_ERROR)
            return
        if isinstance(result, Deferred):
            self._block(result)

    # Session state

    def _reset(self) -> None:
        """
        Forget the mail transaction (RSET, HELO, EHLO, end of data).
        """
        self._sender: Address | None = None
        self._recipients: list[tuple[Address, Any]] = []
        spool = getattr(self, "_spool", None)
        if spool is not None:
            spool.discard()
        self._spool: Spool | None = None
        self._dataError: Reply | None = None

    # Commands

    def do_HELO(self, arg: str) -> None:
        if not arg:
            self.reply(R.SYNTAX.format(usage="HELO hostname"))
            return
        self._reset()
        self.session.helo = _clean(arg.split()[0])
        self.session.esmtp = False
        self.reply(Reply(250, "", self.factory.hostname))

    def do_EHLO(self, arg: str) -> None:
        if not arg:
            self.reply(R.SYNTAX.format(usage="EHLO hostname"))
            return
        self._reset()
        self.session.helo = _clean(arg.split()[0])
        self.session.esmtp = True
        lines = [self.factory.hostname, "PIPELINING", f"SIZE {self.factory.limits.messageSize}"]
        if self.canStartTLS and not self.session.tls:
            lines.append("STARTTLS")
        if self._authOffered() and self.session.tls and self.session.user is None:
            lines.append("AUTH PLAIN LOGIN")
        lines += ["ENHANCEDSTATUSCODES", "8BITMIME"]
        self.reply(Reply(250, "", "\n".join(lines)))

    def do_MAIL(self, arg: str) -> Deferred[None] | None:
        if self.session.helo is None:
            self.reply(R.NEED_HELO)
            return None
        if self._sender is not None:
            self.reply(R.NESTED_MAIL)
            return None
        if self.factory.requireAuth and self.session.user is None:
            # RFC 6409 §4.3 / RFC 4954 §6.
            self.reply(R.AUTH_REQUIRED if self.session.tls else R.TLS_REQUIRED)
            return None
        path, params = self._splitPath(arg, "FROM:")
        if path is None:
            self.reply(R.SYNTAX.format(usage="MAIL FROM:<address>"))
            return None
        try:
            sender = parsePath(path, allowNull=True)
        except AddressError:
            self.reply(R.BAD_SENDER_SYNTAX)
            return None
        for name, value in params:
            if name == "SIZE":
                if value is None or not value.isdigit() or len(value) > 20:
                    self.reply(R.SYNTAX.format(usage="MAIL FROM:<address> SIZE=octets"))
                    return None
                # RFC 1870 §6.2: refuse at once what will not fit.
                if int(value) > self.factory.limits.messageSize:
                    self.reply(R.MESSAGE_TOO_BIG)
                    return None
            elif name == "BODY" and value is not None:
                if value.upper() not in ("7BIT", "8BITMIME"):
                    self.reply(R.BAD_BODY.format(value=_clean(value, 20)))
                    return None
            elif name == "AUTH" and value is not None:
                pass  # RFC 4954 §5: may be ignored.
            else:
                self.reply(R.UNKNOWN_PARAMETER.format(parameter=_clean(name, 30)))
                return None
        d = maybeDeferred(self.delivery.validateFrom, self.session, sender)

        def accepted(_: object) -> None:
            self._sender = sender
            self.reply(R.SENDER_OK)

        return d.addCallbacks(accepted, self._refused, errbackArgs=("MAIL", str(sender)))

    def do_RCPT(self, arg: str) -> Deferred[None] | None:
        if self._sender is None:
            self.reply(R.NEED_MAIL)
            return None
        path, params = self._splitPath(arg, "TO:")
        if path is None:
            self.reply(R.SYNTAX.format(usage="RCPT TO:<address>"))
            return None
        try:
            recipient = parsePath(path)
        except AddressError:
            self.reply(R.BAD_RECIPIENT_SYNTAX)
            return None
        if params:
            self.reply(R.UNKNOWN_PARAMETER.format(parameter=_clean(params[0][0], 30)))
            return None
        if len(self._recipients) >= self.factory.limits.recipients:
            # RFC 5321 §4.5.3.1.10
            self.reply(R.TOO_MANY_RECIPIENTS)
            return None
        d = maybeDeferred(self.delivery.validateTo, self.session, recipient)

        def accepted(resolution: Any) -> None:
            self._recipients.append((recipient, resolution))
            self.reply(R.RECIPIENT_OK)

        return d.addCallbacks(accepted, self._refused, errbackArgs=("RCPT", str(recipient)))

    def _refused(self, reason: Failure, command: str, address: str) -> None:
        if reason.check(DeliveryError):
            reply = Reply.fromError(reason.value)
        else:
            self.log.failure("{command} check failed", reason, command=command)
            reply = R.LOCAL_ERROR
        self.log.info(
            "rejected {command} from=<{sender}> address=<{address}> peer={peer}: {reply}",
            command=command,
            sender=self._sender,
            address=_clean(address),
            peer=self.session.peer,
            reply=f"{reply.code} {reply.enhanced} {reply.text}",
        )
        self.reply(reply)

    def _splitPath(self, arg: str, keyword: str) -> tuple[str | None, list[tuple[str, str | None]]]:
        """
        Split C{FROM:<path> PARAM=VALUE ...}.  A space after the colon is
        tolerated, as most servers do.
        """
        if arg[: len(keyword)].upper() != keyword:
            return None, []
        rest = arg[len(keyword) :].lstrip(" ")
        if rest.startswith("<"):
            end = rest.find(">")
            if end < 0:
                return None, []
            path, rest = rest[: end + 1], rest[end + 1 :]
        else:
            path, _, rest = rest.partition(" ")
            path = f"<{path}>" if path else path
        params = []
        for word in rest.split():
            match = _PARAM.match(word)
            if match is None:
                return None, []
            params.append((match.group(1).upper(), match.group(2)))
        return (path or None), params

    def do_DATA(self, arg: str) -> None:
        if arg:
            self.reply(R.SYNTAX.format(usage="DATA"))
            return
        if self._sender is None:
            self.reply(R.NEED_MAIL)
            return
        if not self._recipients:
            self.reply(R.NO_VALID_RECIPIENTS)
            return
        self._queueId = self.factory.newQueueId()
        self._spool = self.factory.newSpool(self._queueId)
        self._received = 0
        self._afterCRLF = True
        self._dataError = None
        try:
            self._spool.write(self._receivedHeader())
        except OSError:
            self._dataFailed(R.LOCAL_ERROR)
        self.mode = DATA
        self.reply(R.START_DATA)

    def _receivedHeader(self) -> bytes:
        """
        The trace header of RFC 5321 §4.4, with TLS details when used.
        """
        session = self.session
        lines = [f"Received: from {session.helo} ([{session.peer}])"]
        if session.tls:
            described = self.factory.describeTLS(self.transport)
            if described:
                lines.append(f"\t({described})")
        lines.append(
            f"\tby {self.factory.hostname} (mailhub) with {session.protocolName}"
            f" id {self._queueId}"
        )
        if len(self._recipients) == 1:
            lines.append(f"\tfor <{self._recipients[0][0]}>;")
        else:
            lines[-1] += ";"
        lines.append("\t" + _rfc5322Date(self.factory.clock.seconds()))
        return "\r\n".join(lines).encode("ascii", "replace") + b"\r\n"

    def do_RSET(self, arg: str) -> None:
        self._reset()
        self.reply(R.OK)

    def do_NOOP(self, arg: str) -> None:
        self.reply(R.OK)

    def do_VRFY(self, arg: str) -> None:
        if not arg:
            self.reply(R.SYNTAX.format(usage="VRFY address"))
            return
        # RFC 5321 §3.5.3: 252 when the server will not say.
        self.reply(R.CANNOT_VRFY)

    def do_EXPN(self, arg: str) -> None:
        self.reply(R.NOT_IMPLEMENTED)

    def do_HELP(self, arg: str) -> None:
        self.reply(R.HELP)

    def do_QUIT(self, arg: str) -> None:
        self.close(R.BYE)

    def do_STARTTLS(self, arg: str) -> None:
        if arg:
            self.reply(R.SYNTAX.format(usage="STARTTLS"))
        elif self.session.tls:
            self.reply(R.TLS_ACTIVE)
        elif not self.canStartTLS:
            self.reply(R.TLS_UNAVAILABLE)
        else:
            self.reply(R.READY_FOR_TLS)
            # RFC 3207 §4.2: forget everything from before TLS, including
            # whatever was pipelined after this command.
            self._input = b""
            self._reset()
            peer = self.session.peer
            self.session = Session(peer=peer, tls=True, mayRelay=self.factory.isTrusted(peer))
            self.transport.startTLS(self.ctx)

    def _authOffered(self) -> bool:
        """
        AUTH is offered on this listener (and, RFC 4954 §4 aside, only once
        the connection is encrypted: see L{do_AUTH}).
        """
        return self.factory.authenticator is not None and self.factory.offerAuth

    def do_AUTH(self, arg: str) -> None:
        if not self._authOffered():
            self.reply(R.AUTH_UNAVAILABLE)
            return
        if self.session.user is not None:
            self.reply(R.AUTH_ALREADY)
            return
        if self._sender is not None:
            self.reply(R.AUTH_IN_TRANSACTION)
            return
        if not self.session.tls:
            # Passwords never cross the network in the clear.
            self.reply(R.AUTH_NEEDS_TLS)
            return
        name, _, initial = arg.partition(" ")
        mechanism = sasl.MECHANISMS.get(name.upper().encode("ascii", "replace"))
        if mechanism is None or not name:
            self.reply(R.AUTH_MECHANISM)
            return
        self._sasl = mechanism()
        if initial:
            self._authResponse(initial.encode("ascii"))  # blocks input itself
        else:
            self._challenge(self._sasl.first())

    def _challenge(self, challenge: bytes) -> None:
        self.mode = AUTH
        self.reply(R.CHALLENGE.format(challenge=base64.b64encode(challenge).decode("ascii")))

    def _authResponse(self, line: bytes) -> None:
        self.mode = COMMAND
        mechanism = self._sasl
        try:
            challenge = mechanism.respond(sasl.decode(line.rstrip(b"\r")))
        except sasl.SASLError as e:
            self._sasl = None
            self.reply(R.AUTH_CANCELLED if e.cancelled else R.AUTH_MALFORMED.format(reason=str(e)))
            return
        if challenge is not None:
            self._challenge(challenge)
            return
        self._sasl = None
        credentials = mechanism.credentials
        d = self.factory.authenticator.login(credentials, self.session.peer, IMailDelivery)

        def authenticated(result: tuple[Any, Any, Any]) -> None:
            _, avatar, logout = result
            if self.mode is CLOSED:
                logout()
                return
            self.delivery = avatar
            self._onLogout = logout
            self.session.user = credentials.username.decode("utf-8").lower()
            self.session.mayRelay = True
            self.reply(R.AUTH_OK)

        def refused(reason: Failure) -> None:
            if reason.check(UnauthorizedLogin):
                self.reply(R.AUTH_FAILED)
            else:
                if not reason.check(TemporaryAuthError):
                    self.log.failure("authentication failed", reason)
                self.reply(R.AUTH_TEMPORARY)

        d.addCallbacks(authenticated, refused)
        self._block(d)

    _COMMANDS: dict[bytes, Callable[["ESMTPServer", str], Any]] = {}

    # Message text

    def _dataChunk(self) -> bool:
        """
        Consume message text from the input.

        @return: whether anything was consumed (C{False}: wait for more).
        """
        buf = self._input
        if self._afterCRLF and buf.startswith(b".\r\n"):
            self._input = buf[3:]
            self._endOfData()
            return True
        end = buf.find(b"\r\n.\r\n")
        if end >= 0:
            self._text(buf[: end + 2])
            self._input = buf[end + 5 :]
            self._endOfData()
            return True
        cut = buf.rfind(b"\n") + 1
        if cut == 0:
            if len(buf) > self.factory.limits.lineLength + 2:
                # A line already too long: keep its last byte only (a CR
                # there may start the CRLF that ends it).
                self._dataFailed(R.LINE_TOO_LONG)
                self._afterCRLF = False
                self._input = buf[-1:]
            return False
        self._text(buf[:cut])
        self._input = buf[cut:]
        return True

    def _text(self, text: bytes) -> None:
        """
        Store complete lines of message text (C{text} starts at the start of
        a line and ends with LF).
        """
        afterCRLF = self._afterCRLF
        self._afterCRLF = text.endswith(b"\r\n")
        if self._dataError is not None:
            return
        limits = self.factory.limits
        if _hasLongLine(text, limits.lineLength):
            self._dataFailed(R.LINE_TOO_LONG)
            return
        # RFC 5321 §4.5.2: remove the leading dot of every line.
        if afterCRLF and text[:1] == b".":
            text = text[1:]
        if b"\r\n." in text:
            text = text.replace(b"\r\n.", b"\r\n")
        if text.count(b"\n") != text.count(b"\r\n"):
            # Bare LF ends a line of text but never the message; stored as CRLF.
            text = _BARE_LF.sub(b"\r\n", text)
        self._received += len(text)
        if self._received > limits.messageSize:
            self._dataFailed(R.MESSAGE_TOO_BIG)
            return
        try:
            self._spool.write(text)
        except OSError:
            self.log.failure("spool write failed id={queueId}", queueId=self._queueId)
            self._dataFailed(R.LOCAL_ERROR)

    def _dataFailed(self, reply: Reply) -> None:
        """
        The message cannot be accepted; read on to its end, then say C{reply}.
        """
        if self._dataError is None:
            self._dataError = reply
        if self._spool is not None:
            self._spool.discard()

    def _endOfData(self) -> None:
        self.mode = COMMAND
        spool, self._spool = self._spool, None
        if self._dataError is not None:
            reply = self._dataError
            self.log.info(
                "rejected DATA id={queueId} from=<{sender}> peer={peer}: {reply}",
                queueId=self._queueId,
                sender=self._sender,
                peer=self.session.peer,
                reply=f"{reply.code} {reply.enhanced} {reply.text}",
            )
            self._reset()
            self.reply(reply)
            return
        envelope = Envelope(
            queueId=self._queueId,
            sender=self._sender or NULL_SENDER,
            recipients=tuple(self._recipients),
            session=evolve(self.session),
        )
        self.log.info(
            "received id={queueId} from=<{sender}> to={to} size={size} tls={tls} peer={peer}",
            queueId=envelope.queueId,
            sender=envelope.sender,
            to=",".join(f"<{a}>" for a, _ in envelope.recipients),
            size=spool.size,
            tls=self.session.tls,
            peer=self.session.peer,
        )
        self._reset()
        d = maybeDeferred(self.delivery.deliver, envelope, spool)

        def delivered(_: object) -> None:
            self.reply(R.QUEUED.format(queueId=envelope.queueId))

        def failed(reason: Failure) -> None:
            if reason.check(DeliveryError):
                reply = Reply.fromError(reason.value)
            else:
                self.log.failure("delivery failed id={queueId}", reason, queueId=envelope.queueId)
                reply = R.LOCAL_ERROR
            self.reply(reply)

        d.addCallbacks(delivered, failed)
        d.addBoth(lambda _: spool.discard())
        self._block(d)


ESMTPServer._COMMANDS = {
    name[3:].encode("ascii"): getattr(ESMTPServer, name)
    for name in dir(ESMTPServer)
    if name.startswith("do_")
}


class SMTPFactory(SessionFactory):
    """
    Builds L{ESMTPServer} sessions for one listener.

    @param hostname: this server's name.
    @param delivery: the delivery policy.
    @param limits: the named limits.
    @param clock: the reactor's clock (timeouts, dates, names).
    @param contextFactory: TLS server options, for STARTTLS (or C{None}).
    @param implicitTLS: the listener is TLS from the first byte.
    @param newQueueId: makes queue ids.
    @param newSpool: makes a L{Spool} for a queue id.
    @param describeTLS: describes a TLS transport for C{Received:}.
    @param authenticator: logs users in (C{login(credentials, peer,
        *interfaces)}), or C{None}.
    @param offerAuth: offer AUTH (after TLS) on this listener.
    @param requireAuth: MAIL needs AUTH first (submission, RFC 6409).
    @param trustedNetworks: clients from these may relay without AUTH.
    """

    log = Logger()
    noisy = False
    protocol = ESMTPServer  # type: ignore[assignment]

    def __init__(
        self,
        *,
        hostname: str,
        delivery: IMailDelivery,
        limits: Limits,
        clock: IReactorTime,
        newQueueId: Callable[[], str],
        newSpool: Callable[[str], Spool],
        contextFactory: Any = None,
        implicitTLS: bool = False,
        describeTLS: Callable[[Any], str | None] = lambda transport: None,
        authenticator: Any = None,
        offerAuth: bool = False,
        requireAuth: bool = False,
        trustedNetworks: tuple[Any, ...] = (),
    ) -> None:
        self.hostname = hostname
        self.delivery = delivery
        self.limits = limits
        self.clock = clock
        self.newQueueId = newQueueId
        self.newSpool = newSpool
        self.contextFactory = contextFactory
        self.implicitTLS = implicitTLS
        self.describeTLS = describeTLS
        self.authenticator = authenticator
        self.offerAuth = offerAuth
        self.requireAuth = requireAuth
        self.trustedNetworks = trustedNetworks
        self.initSessions()

    def buildProtocol(self, addr: Any) -> Protocol:
        host = peerHost(addr)
        if self.overLimit(host, self.limits.connectionsPerPeer, self.limits.peerLimitExempt):
            self.log.info("too many connections peer={peer}", peer=host)
            reply = R.TOO_MANY_CONNECTIONS.format(host=self.hostname)
            refuse = Refuse(f"{reply.code} {reply.enhanced} {reply.text}\r\n".encode())
            refuse.factory = self
            return refuse
        p = self.protocol(self, contextFactory=None if self.implicitTLS else self.contextFactory)
        return p

    def isTrusted(self, host: str) -> bool:
        """
        Whether a client at C{host} may relay without authenticating.
        """
        return inNetworks(host, self.trustedNetworks)
