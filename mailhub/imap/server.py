# -*- test-case-name: tests.imap.test_server -*-
"""
The IMAP4rev1 server: Twisted's L{twisted.mail.imap4.IMAP4Server}, with
its parser and most commands replaced where they fall short of RFC 3501
and of what a public server must withstand.

What is ours, and why (each Twisted trap has a regression test named
C{test_twistedTrap*}):

  - Input framing: lines are bounded (L{LINE_LENGTH}); a literal's
    declared size is checked I{before} anything is read (Twisted answered
    C{+ Ready} to C{{50000000000}}): over the limit a synchronising literal
    gets C{NO [TOOBIG]} (APPEND) or C{BAD [TOOBIG]}, a non-synchronising
    one (RFC 7888 LITERAL+) C{BAD [TOOBIG]} and the connection is closed,
    since its octets are already on their way.
  - A tokeniser that knows quoted strings with backslash escapes, literals
    anywhere in a command, nested lists and C{BODY[...]<...>} atoms.
  - STARTTLS discards whatever the client pipelined after it (RFC 3501
    §6.2.1; Twisted ran it inside TLS).  LOGIN and AUTHENTICATE only under
    TLS; before, C{LOGINDISABLED} and C{NO [PRIVACYREQUIRED]}.
  - FETCH builds every item with L{mailhub.imap.message}: partial fetches
    are sliced and labelled C{BODY[...]<origin>} (Twisted sent the whole
    message), C{BODY[]}, C{RFC822} and C{RFC822.TEXT} set C{\\Seen} unless
    PEEK or EXAMINE (RFC 3501 §6.4.5).
  - SEARCH parses with L{mailhub.imap.search} and looks only at the
    candidate messages (Twisted scanned the whole mailbox per key, O(n²),
    and raised C{TypeError} on header keys).
  - IDLE (RFC 2177): only C{DONE} ends it; mailbox changes are pushed as
    the backend reports them, and a backend with a C{refresh()} method is
    polled once a second; keepalives every L{IDLE_KEEPALIVE} seconds; the
    idle timeout does not run while idling.
  - APPEND/COPY/MOVE to a missing folder answer C{NO [TRYCREATE]} (RFC 3501
    §6.3.11); UIDPLUS (RFC 4315), MOVE (RFC 6851), UNSELECT (RFC 3691),
    ENABLE (RFC 5161), ID (RFC 2971), NAMESPACE (RFC 2342), CHILDREN (RFC
    3348) and SPECIAL-USE (RFC 6154) attributes from the account.
  - CONDSTORE (RFC 7162 §3.1): C{MODSEQ} and C{CHANGEDSINCE} in FETCH,
    C{UNCHANGEDSINCE} in STORE (C{[MODIFIED set]} for the messages that
    failed the test), C{MODSEQ} in SEARCH (and C{(MODSEQ n)} after the
    results), C{HIGHESTMODSEQ} in STATUS, C{SELECT/EXAMINE ... (CONDSTORE)}
    and C{ENABLE CONDSTORE}.  Any of them enables CONDSTORE for the rest of
    the connection: SELECT and EXAMINE then answer C{[HIGHESTMODSEQ n]}
    (C{[NOMODSEQ]} for a backend without mod-sequences, whose commands
    above answer C{BAD}), and every untagged FETCH that reports flags
    (after STORE, even C{.SILENT}; a FETCH that set C{\\Seen}; a change
    by another session) carries C{UID} and C{MODSEQ}.
  - QRESYNC (RFC 7162 §3.2), after C{ENABLE QRESYNC} and in mailboxes with
    mod-sequences: C{VANISHED} instead of C{EXPUNGE} (own expunges, MOVE,
    other sessions'), C{[HIGHESTMODSEQ n]} on the tagged OK of EXPUNGE and
    UID EXPUNGE, C{SELECT/EXAMINE ... (QRESYNC (uidvalidity modseq
    [known-uids [seq-match]]))}, C{UID FETCH ... (CHANGEDSINCE n
    VANISHED)}, C{[CLOSED]} when SELECT replaces a selected mailbox.
    Expunged messages leave no mod-sequence behind, so C{VANISHED
    (EARLIER)} names every UID of the client's known ones that is gone,
    whenever it went: a server that keeps no mod-sequence of expunged
    messages reports them all (RFC 7162 §3.2.6).
  - Folder names with empty, C{.} or C{..} components, a leading C{/},
    NUL or control characters are refused before the backend sees them.
  - Too many client errors, and the session is dropped; at most
    C{connectionsPerUser} sessions per user.
  - TCP_NODELAY is set: a reply written after work on a worker thread
    would otherwise wait for the client's delayed ACK (40 ms).

  - Nothing that grows with a mailbox runs on the reactor thread: every
    backend call that reads or writes the disk (SELECT/EXAMINE, FETCH,
    SEARCH, STORE, EXPUNGE, APPEND, COPY/MOVE, STATUS, LIST/LSUB, CREATE,
    DELETE, RENAME, (UN)SUBSCRIBE, CLOSE, the refresh of NOOP, CHECK and
    the IDLE poll, closing a mailbox) goes through the factory's
    C{runBlocking}, one call at a time per session; FETCH in batches of
    L{FETCH_BATCH} messages.  The command's reply waits for it, and so
    does the input after it (pipelined commands are answered in order).
    Listener callbacks the backend makes meanwhile (from the worker
    thread) are queued and turned into responses on the reactor thread
    when the call is done.  Inline, only what is held in memory: message
    counts, C{getUID}, C{getUIDValidity}.  A backend method run on a
    worker thread must answer synchronously; with an inline
    C{runBlocking} it may answer with a L{Deferred}.

The optional backend protocol (all duck-typed, each with a fallback):

  - C{IMailbox.addMessage} and C{IMessageCopier.copy} firing with the new
    message's UID (an C{int}) give APPENDUID/COPYUID; anything else, a
    plain OK.
  - C{mailbox.getUIDList()}: every UID in ascending order (SEARCH); else
    C{getUID(seq)} for each message.
  - C{mailbox.expungeUIDs(uids)}: expunge just those messages (if
    C{\\Deleted}) and return their sequence numbers, as C{expunge()} does
    (UID EXPUNGE, MOVE); else C{\\Deleted} is taken off the other messages
    around a plain C{expunge()}.
  - C{mailbox.refresh()}: look for changes made by others and report them
    to the listeners; called on NOOP, CHECK and once a second during IDLE.
  - C{target.copyMessages(source, messageSet, uid)}, when C{target} and the
    selected mailbox are of one class: COPY the whole set in one call,
    returning C{(source UID, new UID)} pairs.
  - Listener callback C{messagesExpunged(seqs)} (besides Twisted's
    C{newMessages} and C{flagsChanged}): the EXPUNGE responses to send,
    in order, each valid when sent; C{expunge()} and C{expungeUIDs()}
    return the same kind of list.
  - C{ISearchableMailbox.search(node, uid)} is given the parsed
    L{mailhub.imap.search.Node} and returns sequence numbers (Twisted's
    convention: the server maps them to UIDs for UID SEARCH).
  - Mod-sequences (RFC 7162), all or nothing: C{mailbox.getHighestModSeq()},
    C{mailbox.getModSeq(seq)}, C{message.getModSeq()} for the messages
    C{fetch} gives, and C{mailbox.storeWithModSeq(messages, flags, mode,
    uid, unchangedSince)} returning an object with C{flags} ({seq:
    flags}), C{modseqs} ({seq: mod-sequence}) and C{modified} (the
    sequence numbers that failed the UNCHANGEDSINCE test), and search
    views with a C{modseq}.  A mailbox without C{getHighestModSeq} and
    C{storeWithModSeq} has none: C{[NOMODSEQ]}.  Listener callback
    C{flagsChangedWithModSeq({seq: (flags, uid, modseq)})} instead of
    C{flagsChanged}.
  - QRESYNC needs besides C{mailbox.vanishUIDs(uids)} (C{expungeUIDs}
    answering the UIDs removed, ascending) and C{mailbox.getUIDList()};
    listener callback C{messagesExpungedWithUIDs(seqs, uids)} instead of
    C{messagesExpunged}.
  - Messages providing C{IMessageFile} give their raw octets through
    C{open()}; others are rebuilt from C{getHeaders(True)} and the body.
  - C{message.envelope()} and C{message.bodyStructure()}: the message's
    ENVELOPE and BODYSTRUCTURE (extensible) as nested lists, as
    L{mailhub.imap.message} makes them (a backend that caches them); FETCH
    then reads no octets for those items.  C{message.envelopeText()}, if
    present, is preferred: the ENVELOPE already written as IMAP text
    (L{mailhub.imap.message.nestedList}, without the outer parentheses).
"""

from __future__ import annotations

import bisect
import email.utils
import re
import tempfile
from collections import deque
from itertools import islice
from typing import Any, Callable, Iterable

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginDenied, UnauthorizedLogin
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime, ITLSTransport
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.mail import imap4
from twisted.mail.imap4 import (
    IAccount,
    ICloseableMailbox,
    IMessageCopier,
    IMessageFile,
    ISearchableMailbox,
    MailboxCollision,
    MailboxException,
    MessageSet,
    NoSuchMailbox,
    ReadOnlyMailbox,
)
from twisted.python.failure import Failure

from mailhub import sasl
from mailhub.errors import MailboxGone, MailhubError, MessageExpunged, TemporaryAuthError
from mailhub.imap import message as M
from mailhub.imap import search as S
from mailhub.imap.patterns import patternRegexp
from mailhub.sessions import Refuse, SessionFactory, peerHost, setNoDelay

#: Longest command line, in octets before the CRLF (RFC 7162 §4 suggests
#: servers accept at least 8192).
LINE_LENGTH = 8192

#: Largest literal outside APPEND (a folder name, a password, a search
#: string).
STRING_LITERAL = 64 * 1024

#: Most literals in one command.
MAX_LITERALS = 32

#: Largest message APPEND takes by default (the message size limit).
MAX_LITERAL = 50 * 1024 * 1024

#: RFC 7162 §7: mod-sequence-value, 63 bits.
MAX_MODSEQ = 2**63 - 1

#: The STATUS item of RFC 7162 §3.1.7, besides L{_STATUS_ITEMS}.
_MODSEQ_STATUS_ITEMS = ("HIGHESTMODSEQ",)

#: An APPEND literal larger than this is spooled to a temporary file.
SPOOL_IN_MEMORY = 1024 * 1024

#: RFC 3501 §5.4: the autologout timer is at least 30 minutes.
IDLE_TIMEOUT = 1800.0

#: Before login a client must be quicker.
PREAUTH_TIMEOUT = 60.0

#: Seconds between polls of a mailbox during IDLE (RFC 2177 pushes within
#: a second).
IDLE_POLL = 1.0

#: Seconds after a SELECT answered from a partly read index before the
#: rest of it is read (on a worker thread): the answer goes out first.
WARM_DELAY = 0.005

#: Seconds after a command on a selected mailbox before its folder's
#: directories are listed again if the command (or another) changed them
#: (see L{mailhub.maildir.index.FolderIndex.settle}): just over the index's
#: settling time.
SETTLE_DELAY = 1.2

#: Seconds between C{* OK Still here} during IDLE (NAT keepalive).
IDLE_KEEPALIVE = 300.0

#: Protocol errors one session may make before it is dropped.
MAX_ERRORS = 20

#: While a command runs, stop reading once this much input waits.
MAX_PENDING_INPUT = 256 * 1024

#: FETCH works through the messages this many at a time, each batch in one
#: C{runBlocking} call (file reads, flags), written out before the next.
FETCH_BATCH = 100

#: The batch when every item comes from the index (L{_INDEX_ITEMS}): no file
#: is read, so a batch is quick however large, and fewer thread hops count.
FETCH_INDEX_BATCH = 2000

#: A FETCH batch's rendering stops early once this many octets are ready.
FETCH_BATCH_OCTETS = 1024 * 1024

NOT_AUTHENTICATED, AUTHENTICATED, SELECTED, LOGOUT = "unauth", "auth", "select", "logout"

# Named replies: (status, code, text).
GREETING = "{host} mailhub IMAP4rev1 ready"
LINE_TOO_LONG = ("BAD", "TOOBIG", "Command line too long")
LITERAL_TOO_BIG = ("BAD", "TOOBIG", "Literal too large")
MESSAGE_TOO_BIG = ("NO", "TOOBIG", "Message too large")
TOO_MANY_LITERALS = ("BAD", "", "Too many literals")
TOO_MANY_ERRORS = "Too many errors"
SHUTTING_DOWN = "Server shutting down"
AUTOLOGOUT = "Autologout; idle for too long"
MAILBOX_GONE = "Selected mailbox was deleted, have to disconnect"
PRIVACY_REQUIRED = ("NO", "PRIVACYREQUIRED", "Use STARTTLS first")
AUTH_FAILED = ("NO", "AUTHENTICATIONFAILED", "Authentication failed")
AUTH_UNAVAILABLE = ("NO", "UNAVAILABLE", "Authentication temporarily unavailable")
USER_LIMIT = ("NO", "LIMIT", "Too many connections for this user")
TRYCREATE = ("NO", "TRYCREATE", "No such mailbox")
NONEXISTENT = ("NO", "NONEXISTENT", "No such mailbox")
ALREADY_EXISTS = ("NO", "ALREADYEXISTS", "Mailbox already exists")
READ_ONLY = ("NO", "READ-ONLY", "Mailbox is read-only")
SERVER_BUG = ("NO", "SERVERBUG", "Internal error, try again later")
EXPUNGE_ISSUED = ("NO", "EXPUNGEISSUED", "Some of the requested messages no longer exist")
BAD_NAME = ("NO", "CANNOT", "Invalid mailbox name")

_LITERAL = re.compile(rb"\{([0-9]{1,20})(\+?)\}\Z")
_TAG = re.compile(r"[\x21-\x7e]+\Z")
_BODY = re.compile(r"(BODY(?:\.PEEK)?)\[(.*)\](?:<([0-9]{1,10})\.([0-9]{1,10})>)?\Z", re.S | re.I)
# RFC 3501 §9 date-time: a real day, month name, hour, minute and second.
_DATE_TIME = re.compile(
    r"(?: [1-9]|0[1-9]|[12][0-9]|3[01])-(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-[0-9]{4}"
    r" (?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9] [+-][0-9]{4}\Z",
    re.I,
)
_FETCH_MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
_SIMPLE_FETCH = {
    "FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY",
    "RFC822", "RFC822.HEADER", "RFC822.TEXT", "MODSEQ",
}
_STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN")
#: FETCH items answered from the index alone.
_INDEX_ITEMS = frozenset({"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE"})
#: FETCH items that need the message's octets, unless the message object
#: keeps ENVELOPE (C{envelope()}) or BODYSTRUCTURE (C{bodyStructure()}).
_RAW_ITEMS = frozenset({"ENVELOPE", "BODY", "BODYSTRUCTURE", "BODY[]", "RFC822", "RFC822.HEADER", "RFC822.TEXT"})


class IMAPError(MailhubError):
    """
    A command fails with a tagged C{BAD} or C{NO}: raised by handlers,
    turned into the reply in one place (L{IMAP4Server._failed}).
    """

    def __init__(self, reply: tuple[str, str, str], text: str | None = None) -> None:
        status, code, default = reply
        super().__init__(text or default)
        self.status, self.code, self.text = status, code, text or default


def bad(text: str) -> IMAPError:
    return IMAPError(("BAD", "", text))


def no(text: str, code: str = "") -> IMAPError:
    return IMAPError(("NO", code, text))


class Atom(str):
    """
    An atom of a command (as opposed to a quoted string or a literal,
    which are C{bytes}).
    """


class StringLiteral:
    """
    A literal outside APPEND: its octets, told apart from command text.
    """

    def __init__(self, value: bytes) -> None:
        self.value = value


class FileLiteral:
    """
    A literal of APPEND, held in a spooled temporary file.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.file: Any = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)

    def bytes(self) -> bytes:
        self.file.seek(0)
        return self.file.read()


# -- tokens --------------------------------------------------------------------------------


def tokenize(parts: Iterable[bytes | FileLiteral | Any]) -> list:
    """
    Turn a command (line pieces, with the literals between them) into
    tokens: L{Atom}s, C{bytes} for quoted strings and small literals,
    L{FileLiteral}s, and nested lists for parentheses.  Atoms may hold
    C{[...]} with spaces and parentheses inside (C{BODY[HEADER.FIELDS (A
    B)]<0.10>}).

    @raise IMAPError: malformed (C{BAD}).
    """
    stack: list[list] = [[]]
    for part in parts:
        if isinstance(part, StringLiteral):
            stack[-1].append(part.value)
            continue
        if not isinstance(part, bytes):
            stack[-1].append(part)
            continue
        i, n = 0, len(part)
        while i < n:
            c = part[i]
            if c == 0x20:
                i += 1
            elif c == 0x28:  # (
                stack.append([])
                i += 1
            elif c == 0x29:  # )
                if len(stack) == 1:
                    raise bad("Unbalanced parentheses")
                inner = stack.pop()
                stack[-1].append(inner)
                i += 1
            elif c == 0x22:  # RFC 3501 §9: quoted = DQUOTE *QUOTED-CHAR DQUOTE
                out = bytearray()
                i += 1
                while True:
                    if i >= n:
                        raise bad("Unterminated quoted string")
                    c = part[i]
                    if c == 0x5C:  # backslash: only \\ and \" are escapes
                        if part[i + 1 : i + 2] not in (b"\\", b'"'):
                            raise bad("Invalid escape in quoted string")
                        out += part[i + 1 : i + 2]
                        i += 2
                    elif c == 0x22:
                        i += 1
                        break
                    elif c in (0x00, 0x0A, 0x0D):
                        raise bad("Invalid character in quoted string")
                    else:
                        out.append(c)
                        i += 1
                stack[-1].append(bytes(out))
            else:
                start, depth = i, 0
                while i < n:
                    c = part[i]
                    if c == 0x5B:  # [
                        depth += 1
                    elif c == 0x5D and depth:
                        depth -= 1
                    elif depth == 0 and c in b' ()"{':
                        break
                    if c < 0x20 or c >= 0x7F:
                        raise bad("Invalid character in atom")
                    i += 1
                if depth:
                    raise bad("Unbalanced brackets")
                if i == start:
                    raise bad("Unexpected literal marker")
                stack[-1].append(Atom(part[start:i].decode("ascii")))
    if len(stack) != 1:
        raise bad("Unbalanced parentheses")
    return stack[0]


def astring(token: Any, what: str = "argument") -> bytes:
    """
    An astring argument (atom, quoted string or literal) as octets.
    """
    if isinstance(token, Atom):
        return token.encode("ascii")
    if isinstance(token, bytes):
        return token
    if isinstance(token, FileLiteral) and token.size <= STRING_LITERAL:
        return token.bytes()
    raise bad(f"Expected a string for {what}")


def atom(token: Any, what: str) -> str:
    if not isinstance(token, Atom):
        raise bad(f"Expected {what}")
    return token.upper()


def arguments(args: list, count: int, usage: str) -> list:
    if len(args) != count:
        raise bad(f"Syntax: {usage}")
    return args


def mailboxName(raw: bytes, create: bool = False) -> str:
    """
    A folder name from the client, decoded from modified UTF-7 (RFC 3501
    §5.1.3) and checked: no NUL or control characters, no empty, C{.} or
    C{..} components, no leading C{/}; C{INBOX} in any case is C{INBOX}.
    The backend checks again; nothing here trusts it to.

    @param create: a trailing C{/} is allowed (RFC 3501 §6.3.3) and dropped.
    @raise IMAPError: C{NO [CANNOT]}.
    """
    try:
        name = raw.decode("imap4-utf-7")
    except Exception:
        raise IMAPError(BAD_NAME, "Invalid mailbox name encoding") from None
    if create and name.endswith("/") and len(name) > 1:
        name = name[:-1]
    if not name or len(name) > 255 or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
        raise IMAPError(BAD_NAME)
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise IMAPError(BAD_NAME)
    if name.upper() == "INBOX" or name.upper().startswith("INBOX/") and name[:5] != "INBOX":
        name = "INBOX" + name[5:]
    return name


def listPattern(raw: bytes) -> str:
    try:
        name = raw.decode("imap4-utf-7")
    except Exception:
        raise IMAPError(BAD_NAME, "Invalid mailbox name encoding") from None
    if "\0" in name or ".." in name.split("/"):
        raise IMAPError(BAD_NAME)
    return name


def quoted(data: bytes | str) -> bytes:
    """
    A string for a response: quoted, or a literal if it cannot be.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if any(c in data for c in b"\r\n\0") or len(data) > 1000:
        return b"{%d}\r\n" % len(data) + data
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def encodeName(name: str) -> bytes:
    return quoted(name.encode("imap4-utf-7"))


#: flagList's answers: a mailbox has few kinds of flag lists, and FETCH 1:*
#: FLAGS asks for every message's.
_flagLists: dict[tuple, bytes] = {}


def flagList(flags: Iterable[Any]) -> bytes:
    key = tuple(flags)
    known = _flagLists.get(key)
    if known is None:
        known = b"(" + b" ".join(f.encode("ascii") if isinstance(f, str) else f for f in key) + b")"
        if len(_flagLists) >= 4096:
            _flagLists.clear()
        _flagLists[key] = known
    return known


def uidSet(uids: list[int]) -> bytes:
    """
    UIDs as a compact sequence set, in the order given (RFC 4315 COPYUID
    pairs source and destination UIDs by position).
    """
    out: list[str] = []
    start = prev = None
    for uid in uids:
        if prev is not None and uid == prev + 1:
            prev = uid
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = uid
    if start is not None:
        out.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(out).encode("ascii")


def modseqValue(token: Any, what: str, zero: bool = True) -> int:
    """
    A mod-sequence argument: RFC 7162 §7 mod-sequence-valzer (0 to
    2**63 - 1), or mod-sequence-value (from 1) without C{zero}.

    @raise IMAPError: C{BAD}.
    """
    if not isinstance(token, Atom) or not token.isdigit() or not token.isascii() or len(token) > 19:
        raise bad(f"Invalid {what}")
    value = int(token)
    if value > MAX_MODSEQ or (value == 0 and not zero):
        raise bad(f"Invalid {what}")
    return value


def hasModSeqs(mbox: Any) -> bool:
    """
    Whether a mailbox keeps mod-sequences (the optional backend protocol
    of the module docstring); without, SELECT says C{[NOMODSEQ]}.
    """
    return callable(getattr(mbox, "getHighestModSeq", None)) and callable(getattr(mbox, "storeWithModSeq", None))


def parseSequenceSet(token: Any, uid: bool, count: int) -> MessageSet:
    """
    A sequence set argument as a Twisted L{MessageSet}, C{*} resolved for
    sequence numbers; a sequence number beyond the mailbox is C{BAD}
    (RFC 3501 §9: seq-number must be valid).
    """
    if not isinstance(token, Atom):
        raise bad("Expected a sequence set")
    try:
        parsed = S.parseSequenceSet(str(token), uid=uid)
    except S.SearchError as e:
        raise bad(e.reason) from None
    result = MessageSet()
    for first, last in parsed.ranges:
        if not uid:
            first = count if first is None else first
            last = count if last is None else last
            if max(first, last) > count or min(first, last) < 1:
                raise bad("Invalid message sequence number")
        if first is None and last is not None:
            first, last = last, first
        result += MessageSet(first, last) if first != last or last is None else MessageSet(first)
    return result


def rawMessage(msg: Any) -> bytes:
    """
    The octets of a message: C{IMessageFile.open()} if the message has it,
    else rebuilt from its headers and body.
    """
    opener = IMessageFile(msg, None)
    if opener is not None:
        f = opener.open()
        try:
            data = f.read()
        finally:
            close = getattr(f, "close", None)
            if close is not None:
                close()
        return data if isinstance(data, bytes) else data.encode("utf-8")
    headers = msg.getHeaders(True)
    head = b"".join(
        (k if isinstance(k, bytes) else k.encode("utf-8")) + b": "
        + (v if isinstance(v, bytes) else v.encode("utf-8")) + b"\r\n"
        for k, v in headers.items()
    )
    body = msg.getBodyFile().read()
    return head + b"\r\n" + (body if isinstance(body, bytes) else body.encode("utf-8"))


def internalDate(msg: Any) -> Any:
    value = msg.getInternalDate()
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return email.utils.parsedate_to_datetime("Thu, 01 Jan 1970 00:00:00 +0000")


def formatInternalDate(msg: Any) -> bytes:
    when = internalDate(msg)
    months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    text = (
        f"{when.day:02d}-{months[when.month - 1]}-{when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} "
        f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    )
    return b'"' + text.encode("ascii") + b'"'


def _then(value: Any, function: Callable[[Any], Any]) -> Any:
    """
    C{function(value)} now, or when C{value} fires if it is a L{Deferred}:
    lets the functions run through C{runBlocking} chain backend calls that
    may answer with a Deferred (only an inline C{runBlocking} can wait for
    one; a backend run on a thread pool answers synchronously).
    """
    if isinstance(value, Deferred):
        return value.addCallback(function)
    return function(value)


def _listOf(function: Callable[..., Any], *args: Any) -> Any:
    """
    C{list(function(*args))}, for C{runBlocking}: an iterator the backend
    returns is consumed on the worker thread too.
    """
    return _then(function(*args), list)


def _iterate(function: Callable[..., Any], *args: Any) -> Any:
    """
    C{iter(function(*args))}, for C{runBlocking}: consumed later with
    L{_take}.
    """
    return _then(function(*args), iter)


def _take(iterator: Any, count: int) -> list:
    """
    The next C{count} items of C{iterator} (fewer at its end), for
    C{runBlocking}.
    """
    return list(islice(iterator, count))


def _isDeleted(msg: Any) -> bool:
    return "\\deleted" in {f.lower() for f in msg.getFlags()}


def _messageSet(uids: Iterable[int]) -> MessageSet:
    result = MessageSet()
    for uid in uids:
        result += MessageSet(uid)
    return result


class _SessionGone(Exception):
    """
    The connection closed while a command's blocking work ran: the command
    stops there, with no reply (see L{IMAP4Server._call}).
    """


# -- work for runBlocking ------------------------------------------------------------------
#
# Each of these runs on a worker thread in the service (see
# IMAPFactory.runBlocking): everything a command asks of the backend that
# reads the disk or grows with the mailbox.  They return plain values; the
# responses are written on the reactor thread.


def _openMailbox(account: Any, name: str, rw: bool) -> Any:
    """
    SELECT/EXAMINE: the mailbox and what the responses need, or C{None}.
    """

    def describe(mbox: Any) -> Any:
        if mbox is None:
            return None
        return mbox, {
            "flags": list(mbox.getFlags()),
            "writeable": mbox.isWriteable(),
            "exists": mbox.getMessageCount(),
            "recent": mbox.getRecentCount(),
            "uidValidity": mbox.getUIDValidity(),
            "uidNext": mbox.getUIDNext(),
            "highestModseq": mbox.getHighestModSeq() if hasModSeqs(mbox) else None,
        }

    return _then(account.select(name, rw), describe)


def _status(mbox: Any, wanted: list[str]) -> Any:
    """
    STATUS: the mailbox's C{requestStatus} for the RFC 3501 items, and
    HIGHESTMODSEQ from the mailbox, 0 for one without mod-sequences (RFC
    7162 §3.1.7).
    """

    def withModSeq(status: Any) -> dict:
        status = dict(status)
        if "HIGHESTMODSEQ" in wanted:
            status["HIGHESTMODSEQ"] = mbox.getHighestModSeq() if hasModSeqs(mbox) else 0
        return status

    return _then(mbox.requestStatus([w for w in wanted if w != "HIGHESTMODSEQ"]), withModSeq)


def _absentUIDs(uids: list[int], ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """
    The UIDs of C{ranges} (inclusive, ascending, disjoint) that are not in
    the ascending list C{uids}, as inclusive ranges: O(len(ranges) + the
    UIDs inside them).
    """
    out: list[tuple[int, int]] = []
    for low, high in ranges:
        at = bisect.bisect_left(uids, low)
        expected = low
        while at < len(uids) and uids[at] <= high:
            if uids[at] > expected:
                out.append((expected, uids[at] - 1))
            expected = uids[at] + 1
            at += 1
        if expected <= high:
            out.append((expected, high))
    return out


def _rangeSet(ranges: list[tuple[int, int]]) -> bytes:
    return b",".join(b"%d" % low if low == high else b"%d:%d" % (low, high) for low, high in ranges)


def _knownRanges(parsed: Any, last: int) -> list[tuple[int, int]]:
    """
    A parsed UID set's ranges, C{*} as C{last}, merged, ascending; none
    above C{last}.
    """
    out: list[tuple[int, int]] = []
    for first, end in parsed.ranges:
        a = last if first is None else first
        b = last if end is None else end
        low, high = min(a, b), min(max(a, b), last)
        if low <= high:
            out.append((low, high))
    out.sort()
    merged: list[tuple[int, int]] = []
    for low, high in out:
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _vanishedEarlier(mbox: Any, known: Any) -> bytes | None:
    """
    The C{VANISHED (EARLIER)} line for the UIDs of C{known} (a parsed UID
    set, or C{None}: every UID below UIDNEXT) that are gone, or C{None}.
    """
    last = mbox.getUIDNext() - 1
    ranges = [(1, last)] if known is None else _knownRanges(known, last)
    gone = _absentUIDs(list(mbox.getUIDList()), ranges) if last >= 1 else []
    if not gone:
        return None
    return b"VANISHED (EARLIER) " + _rangeSet(gone)  # RFC 7162 §3.2.10.1


def _qresyncLines(mbox: Any, since: int, known: Any) -> list[bytes]:
    """
    SELECT (QRESYNC ...) with the right UIDVALIDITY (RFC 7162 §3.2.5.1):
    VANISHED (EARLIER) for the known UIDs that are gone, then a FETCH with
    UID, FLAGS and MODSEQ for each message (of the known ones) changed
    after C{since}.
    """
    out = []
    vanished = _vanishedEarlier(mbox, known)
    if vanished is not None:
        out.append(vanished)
    ranges = None if known is None else _knownRanges(known, mbox.getUIDNext() - 1)
    lows = [low for low, _ in ranges or ()]
    for seq, msg in mbox.fetch(MessageSet(1, None), False):
        uid = msg.getUID()
        if ranges is not None:
            at = bisect.bisect_right(lows, uid) - 1
            if at < 0 or uid > ranges[at][1]:
                continue
        modseq = msg.getModSeq()
        if modseq > since:
            out.append(b"%d FETCH (UID %d FLAGS %s MODSEQ (%d))" % (seq, uid, flagList(msg.getFlags()), modseq))
    return out


def _closeBackend(mbox: Any) -> Any:
    closeable = ICloseableMailbox(mbox, None)
    if closeable is not None:
        return closeable.close()
    return None


def _subscribedAmong(account: Any, names: list[str]) -> Any:
    """
    The set of C{names} the account is subscribed to (LSUB).
    """
    found: set[str] = set()

    def step(rest: list[str]) -> Any:
        while rest:
            name, rest = rest[0], rest[1:]
            answer = account.isSubscribed(name)
            if isinstance(answer, Deferred):
                return answer.addCallback(lambda yes, name=name, rest=rest: (found.add(name) if yes else None, step(rest))[1])
            if answer:
                found.add(name)
        return found

    return step(list(names))


#: RFC 5258 §3: the selection options; RFC 6154 §5.1 adds SPECIAL-USE.
_LIST_SELECTION = ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE")

#: RFC 5258 §4: the return options; RFC 6154 §5.1 SPECIAL-USE, RFC 5819 §2
#: STATUS (with its items).
_LIST_RETURN = ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS")

#: RFC 6154 §2: the special-use attributes, lowered.
_SPECIAL_USE = frozenset(("\\all", "\\archive", "\\drafts", "\\flagged", "\\junk", "\\sent", "\\trash"))


def _listMatcher(ref: str, pattern: str, delimiter: str) -> Callable[[str], bool]:
    """
    Whether a folder name matches C{ref} + C{pattern} (RFC 3501 §6.3.8:
    C{*} anything, C{%} anything but the delimiter; case-sensitive but for
    INBOX, RFC 3501 §5.1), as the backend's C{listMailboxes} matches: for
    names that may not exist (subscriptions, their parents) in an extended
    LIST.
    """

    def compile(text: str) -> "re.Pattern[str]":
        return patternRegexp(text, delimiter)

    full = ref + pattern
    exact = compile(full)
    head, sep, rest = full.partition(delimiter)
    inbox = compile("INBOX" + sep + rest) if head.upper() == "INBOX" else exact

    def matches(name: str) -> bool:
        if exact.fullmatch(name):
            return True
        isInbox = name == "INBOX" or name.startswith("INBOX" + delimiter)
        return isInbox and inbox.fullmatch(name) is not None

    return matches


def _deletedUIDs(mbox: Any, messages: MessageSet) -> Any:
    """
    The UIDs of the messages of the UID set C{messages} flagged \\Deleted.
    """
    return _then(mbox.fetch(messages, True), lambda pairs: [msg.getUID() for _, msg in pairs if _isDeleted(msg)])


def _searchLine(mbox: Any, node: S.Node, uid: bool) -> Any:
    """
    SEARCH on an L{ISearchableMailbox}: the untagged line (sequence numbers
    mapped to UIDs for UID SEARCH).
    """

    def line(found: Any) -> bytes:
        numbers = [mbox.getUID(seq) for seq in found] if uid else list(found)
        text = b"SEARCH" + b"".join(b" %d" % n for n in numbers)
        if numbers and S.usesModSeq(node):
            # RFC 7162 §3.1.6: the highest mod-sequence of what was found.
            text += b" (MODSEQ %d)" % max(mbox.getModSeq(seq) for seq in found)
        return text

    return _then(mbox.search(node, uid), line)


def _uidsBySequence(mbox: Any) -> list[int]:
    return [mbox.getUID(seq) for seq in range(1, mbox.getMessageCount() + 1)]


def _searchMessages(node: S.Node, uids: list[int], messages: list, uid: bool) -> tuple[list[int], int | None]:
    """
    SEARCH over fetched messages (a backend without C{search}): reads what
    the keys need.

    @return: the numbers found, and the highest mod-sequence among them
        when the keys have C{MODSEQ} (else C{None}).
    """
    views: dict[int, Any] = {}
    withModSeq = S.usesModSeq(node)
    for seq, msg in messages:
        views[seq] = S.LazyMessage(
            seq=seq,
            uid=msg.getUID(),
            flags=frozenset(msg.getFlags()),
            internalDate=internalDate(msg),
            size=msg.getSize(),
            load=lambda m=msg: rawMessage(m),
            modseq=msg.getModSeq() if withModSeq else 0,
        )
    found = S.search(node, uids, lambda seq: views[seq])
    highest = max((views[seq].modseq for seq in found), default=None) if withModSeq else None
    return ([uids[seq - 1] for seq in found] if uid else found), highest


def _changedSinceSet(mbox: Any, messages: MessageSet, uid: bool, since: int) -> MessageSet:
    """
    FETCH (CHANGEDSINCE n): the messages of the set whose mod-sequence is
    above n (RFC 7162 §3.1.4.1), as a UID set.
    """
    ranges: list[list[int]] = []
    for _, msg in mbox.fetch(messages, uid):
        if msg.getModSeq() > since:
            number = msg.getUID()
            if ranges and ranges[-1][1] == number - 1:
                ranges[-1][1] = number
            else:
                ranges.append([number, number])
    return MessageSet([(low, high) for low, high in ranges])


def _kept(msg: Any, kind: str) -> bool:
    """
    Whether the message object answers FETCH item C{kind} without its
    octets: C{envelope()} for ENVELOPE, C{bodyStructure()} for
    BODYSTRUCTURE (a backend's cache; see the module docstring).
    """
    if kind == "ENVELOPE":
        return callable(getattr(msg, "envelopeText", None)) or callable(getattr(msg, "envelope", None))
    if kind == "BODYSTRUCTURE":
        return callable(getattr(msg, "bodyStructure", None))
    return False


def _flagsOf(batch: list) -> dict[int, list]:
    """
    The flags of each message of C{batch}; one expunged elsewhere is left
    out.
    """
    flags = {}
    for seq, msg in batch:
        try:
            flags[seq] = list(msg.getFlags())
        except MessageExpunged:
            continue
    return flags


def _storeLines(
    mbox: Any,
    messages: MessageSet,
    flags: list[str],
    mode: int,
    uid: bool,
    loud: bool,
    condstore: bool = False,
    unchangedSince: int | None = None,
) -> Any:
    """
    STORE, and its untagged FETCH lines (none for C{.SILENT}).  With
    C{condstore} (CONDSTORE enabled, a mailbox with mod-sequences), the
    store of RFC 7162 §3.1.3: C{unchangedSince} makes it conditional, and
    every message it applied to gets a FETCH with UID and MODSEQ, even
    for C{.SILENT}.

    @return: C{(lines, modified)}: the numbers for C{[MODIFIED]} (UIDs for
        UID STORE), empty when every message passed.
    """
    if condstore:

        def modseqLines(result: Any) -> tuple[list[bytes], list[int]]:
            out = []
            for seq in sorted(result.flags):
                items = b"UID %d MODSEQ (%d)" % (mbox.getUID(seq), result.modseqs[seq])
                if loud:
                    items += b" FLAGS " + flagList(result.flags[seq])
                out.append(b"%d FETCH (%s)" % (seq, items))
            modified = [mbox.getUID(seq) for seq in result.modified] if uid else list(result.modified)
            return out, modified

        return _then(mbox.storeWithModSeq(messages, flags, mode, uid, unchangedSince), modseqLines)

    def lines(result: Any) -> tuple[list[bytes], list[int]]:
        if not loud:
            return [], []
        out = []
        for seq, newFlags in sorted((result or {}).items()):
            uidText = b" UID %d" % (mbox.getUID(seq),) if uid else b""
            out.append(b"%d FETCH (FLAGS %s%s)" % (seq, flagList(newFlags), uidText))
        return out, []

    return _then(mbox.store(messages, flags, mode, uid), lines)


def _appendCopy(target: Any, msg: Any) -> Any:
    """
    COPY into a mailbox that is no C{IMessageCopier}: APPEND the octets.
    """
    data = FileLiteral(msg.getSize())
    data.file.write(rawMessage(msg))
    data.file.seek(0)

    def closed(result: Any) -> Any:
        data.file.close()
        return result

    try:
        new = target.addMessage(data.file, list(msg.getFlags()), msg.getInternalDate())
    except BaseException:
        data.file.close()
        raise
    if isinstance(new, Deferred):
        return new.addBoth(closed)
    return closed(new)


# -- the protocol --------------------------------------------------------------------------


class IMAP4Server(imap4.IMAP4Server):
    """
    One IMAP4rev1 session.  Built by L{IMAPFactory}.

    Twisted's parser and most of its commands are replaced (see the module
    docstring); the class is kept so that code that knows Twisted's server
    knows this one, and it still provides C{IMailboxListener}.
    """

    log = Logger()

    def __init__(self, factory: "IMAPFactory", contextFactory: Any = None) -> None:
        super().__init__(contextFactory=contextFactory)
        self.factory = factory
        self.callLater = factory.clock.callLater
        self.state = NOT_AUTHENTICATED
        self.tls = factory.implicitTLS
        self.peer = ""
        self.user: str | None = None
        self.readOnly = False
        self.mboxName: str | None = None
        self._input = b""
        self._parts: list[Any] = []
        self._literal: Any = None
        self._literalLeft = 0
        self._literalTotal = 0
        self._skipping = False
        self._blocked = False
        self._closed = False
        self._errors = 0
        self._shuttingDown = False
        self._untagged: list[tuple[bool, bytes]] = []
        self._holdExpunges = False
        self._exists = 0
        self._idleTag: bytes | None = None
        self._idlePoll: LoopingCall | None = None
        self._idleKeepalive: Any = None
        self._saslTag: bytes | None = None
        self._running = 0
        self._events: deque[tuple[Callable[..., None], tuple]] = deque()
        self._polling: Deferred[Any] | None = None
        #: A CONDSTORE enabling command was given (RFC 7162 §3.1): for the
        #: rest of the connection.
        self.condstore = False
        #: ENABLE QRESYNC was given (RFC 7162 §3.2.3).
        self.qresync = False
        # The selected mailbox keeps mod-sequences (hasModSeqs).
        self._hasModSeqs = False

    # Connection

    def connectionMade(self) -> None:
        self.tags = {}
        self.peer = peerHost(self.transport.getPeer())
        # A reply written after work on a worker thread goes out in its own
        # segment; with Nagle's algorithm it would wait for the client's
        # delayed ACK of the one before (40 ms).
        noDelay = getattr(self.transport, "setTcpNoDelay", None)
        if noDelay is not None:
            try:
                noDelay(True)
            except OSError:
                pass
        self.canStartTLS = (
            self.ctx is not None and ITLSTransport(self.transport, None) is not None
        )
        # A tagged reply after a long response would wait for the client's
        # delayed ACK (40 ms).
        setNoDelay(self.transport)
        self.factory.connected(self)
        self.setTimeout(min(PREAUTH_TIMEOUT, self.factory.idleTimeout))
        self._write(b"* OK [CAPABILITY " + b" ".join(self.listCapabilities()) + b"] "
                    + GREETING.format(host=self.factory.hostname).encode("utf-8", "replace"))

    def connectionLost(self, reason: Failure | None = None) -> None:  # type: ignore[override]
        self._closed = True
        self.state = LOGOUT
        self.setTimeout(None)
        self._stopIdle()
        self._dropLiteral()
        self._closeMailbox()
        if self._onLogout is not None:
            logout, self._onLogout = self._onLogout, None
            logout()
        if self.user is not None:
            self.factory.userLogout(self.user)
            self.user = None
        self.factory.disconnected(self)

    def timeoutConnection(self) -> None:
        self.log.info("imap idle timeout peer={peer} user={user}", peer=self.peer, user=self.user)
        self.close(AUTOLOGOUT)

    def shutDown(self) -> None:
        """
        The server is stopping: say C{* BYE} and hang up, at once or after
        the command under way.
        """
        self._shuttingDown = True
        if not self._blocked:
            self.close(SHUTTING_DOWN)

    def close(self, bye: str | None = None) -> None:
        if self._closed:
            return
        if bye is not None:
            self._write(b"* BYE " + bye.encode("ascii"))
        self._closed = True
        self._input = b""
        self.transport.loseConnection()

    # Capabilities

    def capabilities(self) -> dict:  # type: ignore[override]
        caps: dict[bytes, Any] = {}
        if not self.tls:
            if self.canStartTLS:
                caps[b"STARTTLS"] = None
            caps[b"LOGINDISABLED"] = None  # RFC 3501 §6.2.3
        else:
            caps[b"AUTH"] = [b"PLAIN"]
            caps[b"SASL-IR"] = None
        for name in (b"IDLE", b"NAMESPACE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"ENABLE",
                     b"UNSELECT", b"LITERAL+", b"ID", b"CHILDREN", b"CONDSTORE", b"QRESYNC"):
            caps[name] = None
        caps[b"LIST-EXTENDED"] = caps[b"LIST-STATUS"] = None  # RFC 5258 §1, RFC 5819 §1
        return caps

    # Output

    def _write(self, line: bytes) -> None:
        if not self._closed:
            self.transport.write(line + b"\r\n")

    def _untaggedLine(self, line: bytes, expunge: bool = False) -> None:
        """
        An unsolicited response: now if idling, else before the next
        tagged reply (an EXPUNGE not during FETCH, STORE or SEARCH: RFC
        3501 §7.4.1).
        """
        if self._idleTag is not None:
            self._write(b"* " + line)
        else:
            self._untagged.append((expunge, line))

    def _flush(self) -> None:
        keep = []
        for expunge, line in self._untagged:
            if expunge and self._holdExpunges:
                keep.append((expunge, line))
            else:
                self._write(b"* " + line)
        self._untagged = keep

    def _reply(self, tag: bytes, status: str, text: str, code: str = "") -> None:
        self._flush()
        codeText = f"[{code}] " if code else ""
        self._write(tag + f" {status} {codeText}{text}".encode("utf-8", "replace"))
        if status == "BAD":
            self._error()

    def _error(self) -> None:
        self._errors += 1
        if self._errors >= self.factory.maxErrors:
            self.log.info("imap too many errors peer={peer}", peer=self.peer)
            self.close(TOO_MANY_ERRORS)

    # Blocking work

    def _blocking(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """
        Run C{function(*args)} through the factory's C{runBlocking} (a
        worker thread in the service).  While it runs, the listener
        callbacks the backend makes (from that thread) are only queued;
        they are turned into responses here, on the reactor thread, when
        it is done (L{_deliver}).
        """
        self._running += 1
        try:
            d = maybeDeferred(self.factory.runBlocking, function, *args)
        except BaseException:  # pragma: no cover - maybeDeferred catches
            self._running -= 1
            raise

        def done(result: object) -> object:
            self._running -= 1
            self._deliver()
            return result

        return d.addBoth(done)

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """
        L{_blocking} for a command: its result, once the work is done.
        Input stays held meanwhile (L{_command} blocks on the command), so
        pipelined commands are answered in order.

        @raise _SessionGone: the connection closed meanwhile.
        """
        result = await self._blocking(function, *args)
        if self._closed:
            raise _SessionGone()
        return result

    def _background(self, function: Callable[..., Any], *args: Any) -> None:
        """
        Blocking work no response waits for (closing a mailbox); a failure
        is logged.
        """
        maybeDeferred(self.factory.runBlocking, function, *args).addErrback(
            lambda f: self.log.failure("IMAP background work failed", f)
        )

    def _listen(self, method: Callable[..., None], *args: Any) -> None:
        if self._running:
            self._events.append((method, args))  # deque.append: thread-safe
        else:
            method(*args)

    def _deliver(self) -> None:
        while self._events and not self._running:
            method, args = self._events.popleft()
            method(*args)

    # IMailboxListener (may be called from a worker thread: see _blocking)

    def modeChanged(self, writeable: bool) -> None:
        self._listen(self._modeChanged, writeable)

    def flagsChanged(self, newFlags: dict) -> None:
        self._listen(self._flagsChanged, dict(newFlags))

    def newMessages(self, exists: int | None, recent: int | None) -> None:
        self._listen(self._newMessages, exists, recent)

    def flagsChangedWithModSeq(self, changes: dict) -> None:
        """
        Optional listener callback, instead of C{flagsChanged}: flags
        changed by others, as {seq: (flags, uid, modseq)}.
        """
        self._listen(self._flagsChangedWithModSeq, dict(changes))

    def messagesExpungedWithUIDs(self, seqs: Iterable[int], uids: Iterable[int]) -> None:
        """
        Optional listener callback, instead of C{messagesExpunged}: the
        EXPUNGE responses to send and the UIDs of those messages.
        """
        self._listen(self._expungedWithUIDs, list(seqs), list(uids))

    def messagesExpunged(self, seqs: Iterable[int]) -> None:
        """
        Optional listener callback: messages are gone; C{seqs} are the
        EXPUNGE responses to send, in order, each valid when sent (as
        C{expunge()} returns them).
        """
        self._listen(self._messagesExpunged, list(seqs))

    def _modeChanged(self, writeable: bool) -> None:
        self.readOnly = not writeable
        self._untaggedLine(b"OK [READ-WRITE]" if writeable else b"OK [READ-ONLY]")

    def _flagsChanged(self, newFlags: dict) -> None:
        for seq, flags in sorted(newFlags.items()):
            self._untaggedLine(b"%d FETCH (FLAGS %s)" % (seq, flagList(flags)))

    def _flagsChangedWithModSeq(self, changes: dict) -> None:
        if not self.condstore:
            self._flagsChanged({seq: flags for seq, (flags, _, _) in changes.items()})
            return
        for seq, (flags, uid, modseq) in sorted(changes.items()):
            # RFC 7162 §3.1: UID and MODSEQ in every untagged FETCH, also
            # for changes by others.
            self._untaggedLine(b"%d FETCH (UID %d MODSEQ (%d) FLAGS %s)" % (seq, uid, modseq, flagList(flags)))

    def _expungedWithUIDs(self, seqs: list[int], uids: list[int]) -> None:
        if self._vanishing():
            self._vanished(uids)
        else:
            self._messagesExpunged(seqs)

    def _vanishing(self) -> bool:
        """
        Whether expunges are told as VANISHED (RFC 7162 §3.2.10.2: once
        QRESYNC is enabled, in a mailbox with mod-sequences).
        """
        return self.qresync and self._hasModSeqs and callable(getattr(self.mbox, "vanishUIDs", None))

    def _vanished(self, uids: list[int]) -> None:
        if not uids:
            return
        self._exists = max(0, self._exists - len(uids))
        # Held during FETCH, STORE and SEARCH, as EXPUNGE is.
        self._untaggedLine(b"VANISHED " + uidSet(sorted(uids)), expunge=True)

    def _enableCondstore(self) -> None:
        """
        A CONDSTORE enabling command (RFC 7162 §3.1) was given.
        """
        self.condstore = True

    def _needModSeqs(self) -> None:
        """
        A command uses mod-sequences in the selected mailbox: it enables
        CONDSTORE, and is C{BAD} in a mailbox without them (RFC 7162
        §3.1.2.2).
        """
        self._enableCondstore()
        if not self._hasModSeqs:
            raise bad("Mailbox has no mod-sequences (NOMODSEQ)")

    def _newMessages(self, exists: int | None, recent: int | None) -> None:
        if exists is not None:
            self._exists = exists
            self._untaggedLine(b"%d EXISTS" % (exists,))
        if recent is not None:
            self._untaggedLine(b"%d RECENT" % (recent,))

    def _messagesExpunged(self, seqs: list[int]) -> None:
        for seq in seqs:
            self._exists = max(0, self._exists - 1)
            self._untaggedLine(b"%d EXPUNGE" % (seq,), expunge=True)

    def _checkExists(self) -> None:
        if self.mbox is not None:
            count = self.mbox.getMessageCount()
            if count > self._exists:
                self._exists = count
                self._untaggedLine(b"%d EXISTS" % (count,))

    # Input framing

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        if self._idleTag is None:
            self.resetTimeout()
        self._input += data
        if self._blocked:
            if len(self._input) > MAX_PENDING_INPUT:
                self.transport.pauseProducing()
            return
        self._process()

    def _process(self) -> None:
        while self._input and not self._blocked and not self._closed:
            if self._literal is not None:
                chunk = self._input[: self._literalLeft]
                self._input = self._input[len(chunk) :]
                self._literalLeft -= len(chunk)
                if isinstance(self._literal, FileLiteral):
                    self._literal.file.write(chunk)
                else:
                    self._literal += chunk
                if self._literalLeft == 0:
                    literal, self._literal = self._literal, None
                    self._parts.append(StringLiteral(bytes(literal)) if isinstance(literal, bytearray) else literal)
                continue
            end = self._input.find(b"\n")
            limit = self.factory.lineLength
            if end < 0:
                if len(self._input) > limit + 1:
                    self._skipping = True
                    self._input = b""
                return
            line, self._input = self._input[:end], self._input[end + 1 :]
            if self._skipping or len(line) > limit + 1:
                self._skipping = False
                self._resetCommand()
                self._replyUntagged(LINE_TOO_LONG)
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            self._line(line)

    def _replyUntagged(self, reply: tuple[str, str, str]) -> None:
        self._replyWith(b"*", reply)

    def _replyWith(self, tag: bytes, reply: tuple[str, str, str]) -> None:
        status, code, text = reply
        self._reply(tag, status, text, code)

    def _resetCommand(self) -> None:
        self._dropLiteral()
        self._parts = []
        self._literalTotal = 0

    def _dropLiteral(self) -> None:
        for item in self._parts + [self._literal]:
            if isinstance(item, FileLiteral):
                item.file.close()
        self._literal = None

    def _line(self, line: bytes) -> None:
        if self._idleTag is not None:
            self._idleLine(line)
            return
        if self._saslTag is not None:
            self._saslLine(line)
            return
        match = _LITERAL.search(line)
        if match is None:
            parts, self._parts = self._parts + [line], []
            self._literalTotal = 0
            self._command(parts)
            return
        size, nonSync = int(match.group(1)), bool(match.group(2))
        self._parts.append(line[: match.start()])
        head = (self._parts[0] if isinstance(self._parts[0], bytes) else b"").split(None, 3)
        tag = head[0] if head else b"*"
        verb = head[1].upper() if len(head) > 1 else b""
        isAppend = verb == b"APPEND"
        limit = self.factory.maxLiteral if isAppend else STRING_LITERAL
        self._literalTotal += 1
        error = None
        if self._literalTotal > MAX_LITERALS:
            error = TOO_MANY_LITERALS
        elif size > limit:
            error = MESSAGE_TOO_BIG if isAppend and not nonSync else LITERAL_TOO_BIG
        elif sum(len(p) for p in self._parts if isinstance(p, bytes)) > 4 * self.factory.lineLength:
            error = LINE_TOO_LONG
        if error is not None:
            self._resetCommand()
            status, code, text = error
            self._reply(tag if _TAG.match(tag.decode("latin-1")) else b"*", status, text, code)
            if nonSync:
                # RFC 7888 §4: the octets are already coming; we cannot
                # know where the next command starts.
                self.close("Literal too large")
            return
        self._literal = FileLiteral(size) if isAppend else bytearray()
        self._literalLeft = size
        if size == 0:
            literal, self._literal = self._literal, None
            self._parts.append(StringLiteral(b"") if isinstance(literal, bytearray) else literal)
        if not nonSync:
            self._write(b"+ Ready for literal data")

    # Dispatch

    def _command(self, parts: list) -> None:
        try:
            tokens = tokenize(parts)
        except IMAPError as e:
            first = parts[0] if parts and isinstance(parts[0], bytes) else b""
            tag = first.split(None, 1)[0] if first.strip() else b"*"
            self._reply(tag if _TAG.match(tag.decode("latin-1")) else b"*", e.status, e.text, e.code)
            return
        if not tokens:
            self._reply(b"*", "BAD", "Empty command")
            return
        tag = tokens[0]
        if not isinstance(tag, Atom) or not _TAG.match(tag) or "+" in tag:
            self._reply(b"*", "BAD", "Invalid tag")
            return
        tagBytes = tag.encode("ascii")
        if len(tokens) < 2 or not isinstance(tokens[1], Atom):
            self._reply(tagBytes, "BAD", "Missing command")
            return
        verb, args = tokens[1].upper(), tokens[2:]
        if verb == "UID":
            if not args or not isinstance(args[0], Atom) or args[0].upper() not in _UID_COMMANDS:
                self._reply(tagBytes, "BAD", "Unknown UID command")
                return
            verb, args = "UID " + args[0].upper(), args[1:]
        entry = _COMMANDS.get(verb)
        if entry is None:
            self._reply(tagBytes, "BAD", "Unknown command")
            return
        handler, states = entry
        if self.state not in states:
            text = "Log in first" if self.state == NOT_AUTHENTICATED else "Select a mailbox first" if self.state == AUTHENTICATED else "Not allowed now"
            self._reply(tagBytes, "BAD", text)
            return
        self._holdExpunges = verb.split()[-1] in ("FETCH", "STORE", "SEARCH")
        d = Deferred.fromCoroutine(handler(self, tagBytes, args))
        d.addErrback(self._failed, tagBytes, verb)
        d.addBoth(self._finished)
        if not d.called:
            self._blocked = True

    def _failed(self, reason: Failure, tag: bytes, verb: str) -> None:
        """
        Every error of a command becomes its tagged reply here.
        """
        if reason.check(_SessionGone):
            return
        if reason.check(IMAPError):
            e = reason.value
            self._reply(tag, e.status, e.text, e.code)
        elif reason.check(S.SearchError):
            e = reason.value
            if e.code == "BADCHARSET":
                self._reply(tag, "NO", e.reason, "BADCHARSET (US-ASCII UTF-8)")
            else:
                self._reply(tag, "BAD", e.reason)
        elif reason.check(M.SectionError):
            self._reply(tag, "BAD", str(reason.value))
        elif reason.check(ReadOnlyMailbox):
            self._replyWith(tag, READ_ONLY)
        elif reason.check(MessageExpunged):
            self._replyWith(tag, EXPUNGE_ISSUED)
        elif reason.check(MailboxCollision):
            self._replyWith(tag, ALREADY_EXISTS)
        elif reason.check(NoSuchMailbox):
            self._replyWith(tag, NONEXISTENT)
        elif reason.check(MailboxException):
            self._reply(tag, "NO", str(reason.value)[:200] or "Failed")
        else:
            self.log.failure("IMAP command {verb} failed", reason, verb=verb)
            self._replyWith(tag, SERVER_BUG)

    def _finished(self, result: object) -> None:
        self._holdExpunges = False
        if self.mbox is not None:
            self.factory.settleLater(self.mbox)
        if self._blocked:
            self._blocked = False
            if self._shuttingDown:
                self.close(SHUTTING_DOWN)
            elif not self._closed:
                self.transport.resumeProducing()
                self._process()
        elif self._shuttingDown:
            self.close(SHUTTING_DOWN)

    # Any state

    async def cmd_CAPABILITY(self, tag: bytes, args: list) -> None:
        arguments(args, 0, "CAPABILITY")
        self._untaggedLine(b"CAPABILITY " + b" ".join(self.listCapabilities()))
        self._reply(tag, "OK", "CAPABILITY completed")

    async def cmd_NOOP(self, tag: bytes, args: list) -> None:
        arguments(args, 0, "NOOP")
        await self._refresh()
        self._reply(tag, "OK", "NOOP completed")

    async def cmd_LOGOUT(self, tag: bytes, args: list) -> None:
        arguments(args, 0, "LOGOUT")
        self._write(b"* BYE Logging out")
        self._reply(tag, "OK", "LOGOUT completed")
        self.state = LOGOUT
        self.close()

    async def cmd_ID(self, tag: bytes, args: list) -> None:
        # RFC 2971 §3.3: NIL or a list of at most 30 field/value pairs.
        arguments(args, 1, "ID (params) | NIL")
        if not (isinstance(args[0], list) and len(args[0]) <= 60 and len(args[0]) % 2 == 0) and args[0] != "NIL":
            raise bad("Syntax: ID (params) | NIL")
        self._untaggedLine(b'ID ("name" "mailhub")')
        self._reply(tag, "OK", "ID completed")

    # Not authenticated

    async def cmd_STARTTLS(self, tag: bytes, args: list) -> None:
        arguments(args, 0, "STARTTLS")
        if self.tls:
            raise bad("TLS already active")
        if not self.canStartTLS:
            raise no("TLS not available")
        self._reply(tag, "OK", "Begin TLS negotiation now")
        # RFC 3501 §6.2.1 and RFC 2595 §3.1: what came after STARTTLS in
        # the clear is not run inside TLS.
        self._input = b""
        self._resetCommand()
        self._skipping = False
        self.tls = self.startedTLS = True
        self.transport.startTLS(self.ctx)

    async def cmd_LOGIN(self, tag: bytes, args: list) -> None:
        if not self.tls:
            raise IMAPError(PRIVACY_REQUIRED)
        user, password = arguments(args, 2, "LOGIN user password")
        await self._login(tag, UsernamePassword(astring(user), astring(password)))

    async def cmd_AUTHENTICATE(self, tag: bytes, args: list) -> None:
        if not self.tls:
            raise IMAPError(PRIVACY_REQUIRED)
        if not 1 <= len(args) <= 2:
            raise bad("Syntax: AUTHENTICATE mechanism [initial-response]")
        if atom(args[0], "a mechanism") != "PLAIN":
            raise no("Unsupported mechanism", "CANNOT")
        if len(args) == 2:  # RFC 4959 SASL-IR
            await self._plain(tag, astring(args[1]))
            return
        self._saslTag = tag
        self._write(b"+ ")

    def _saslLine(self, line: bytes) -> None:
        tag, self._saslTag = self._saslTag, None
        assert tag is not None

        async def run() -> None:
            await self._plain(tag, line)

        d = Deferred.fromCoroutine(run())
        d.addErrback(self._failed, tag, "AUTHENTICATE")
        d.addBoth(self._finished)
        if not d.called:
            self._blocked = True

    async def _plain(self, tag: bytes, response: bytes) -> None:
        mechanism = sasl.Plain()
        try:
            mechanism.respond(sasl.decode(response))
        except sasl.SASLError as e:
            raise bad("Authentication cancelled" if e.cancelled else "Malformed PLAIN response") from None
        assert mechanism.credentials is not None
        await self._login(tag, mechanism.credentials)

    async def _login(self, tag: bytes, credentials: UsernamePassword) -> None:
        portal = self.factory.portal
        if hasattr(portal, "portalFor"):
            portal = portal.portalFor(self.peer)
        name = credentials.username.decode("utf-8", "replace")
        try:
            interface, avatar, logout = await maybeDeferred(portal.login, credentials, None, IAccount)
        except (UnauthorizedLogin, LoginDenied):
            self._replyWith(tag, AUTH_FAILED)
            self._error()
            return
        except TemporaryAuthError:
            self._replyWith(tag, AUTH_UNAVAILABLE)
            return
        if self._closed:
            logout()
            return
        if interface is not IAccount:
            logout()
            raise IMAPError(SERVER_BUG)
        if not self.factory.userLogin(name):
            logout()
            self.log.info("imap too many sessions user={user} peer={peer}", user=name, peer=self.peer)
            self._replyWith(tag, USER_LIMIT)
            return
        self.user, self.account, self._onLogout = name, avatar, logout
        self.state = AUTHENTICATED
        self.setTimeout(self.factory.idleTimeout)
        self.log.info("imap login user={user} peer={peer} tls={tls}", user=name, peer=self.peer, tls=self.tls)
        self._reply(tag, "OK", "Logged in", "CAPABILITY " + b" ".join(self.listCapabilities()).decode("ascii"))

    # Authenticated

    async def cmd_ENABLE(self, tag: bytes, args: list) -> None:
        if not args or not all(isinstance(a, Atom) for a in args):
            raise bad("Syntax: ENABLE capability...")
        # RFC 5161 §3.1: ENABLED lists what this command enabled; unknown
        # and already enabled names are left out.
        enabled = []
        for name in args:
            upper = name.upper()
            if upper == "CONDSTORE" and not self.condstore:
                self._enableCondstore()  # RFC 7162 §3.1
                enabled.append(upper)
            elif upper == "QRESYNC" and not self.qresync:
                # RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
                self.qresync = True
                self._enableCondstore()
                enabled.append(upper)
        self._untaggedLine(b"ENABLED" + b"".join(b" " + name.encode("ascii") for name in enabled))
        self._reply(tag, "OK", "ENABLE completed")

    async def cmd_NAMESPACE(self, tag: bytes, args: list) -> None:
        arguments(args, 0, "NAMESPACE")
        self._untaggedLine(b'NAMESPACE (("" "/")) NIL NIL')  # RFC 2342
        self._reply(tag, "OK", "NAMESPACE completed")

    async def cmd_SELECT(self, tag: bytes, args: list) -> None:
        await self._select(tag, args, True)

    async def cmd_EXAMINE(self, tag: bytes, args: list) -> None:
        await self._select(tag, args, False)

    async def _select(self, tag: bytes, args: list, rw: bool) -> None:
        if not 1 <= len(args) <= 2:
            raise bad("Syntax: SELECT mailbox [(parameters)]")
        raw = args[0]
        qresync = None
        if len(args) == 2:
            # RFC 4466 §2.1 select parameters: RFC 7162 §3.1.8 CONDSTORE,
            # §3.2.5 QRESYNC.
            parameters = args[1]
            if not isinstance(parameters, list) or not parameters:
                raise bad("Syntax: SELECT mailbox [(parameters)]")
            at = 0
            while at < len(parameters):
                parameter = parameters[at]
                if isinstance(parameter, Atom) and parameter.upper() == "CONDSTORE":
                    at += 1
                elif isinstance(parameter, Atom) and parameter.upper() == "QRESYNC" and at + 1 < len(parameters):
                    if not self.qresync:
                        raise bad("QRESYNC is not enabled")  # RFC 7162 §3.2.5
                    qresync = self._qresyncParameter(parameters[at + 1])
                    at += 2
                else:
                    raise bad("Unknown SELECT parameter")
        name = mailboxName(astring(raw))
        if len(args) == 2:
            self._enableCondstore()
        # RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected.
        hadMailbox = self.mbox is not None
        self._closeMailbox()
        if hadMailbox and self.qresync:
            self._write(b"* OK [CLOSED] Previous mailbox closed")  # RFC 7162 §3.2.11
        opened = await self._call(_openMailbox, self.account, name, rw)
        if opened is None:
            raise IMAPError(NONEXISTENT)
        mbox, info = opened
        flags = info["flags"]
        if "\\noselect" in [f.lower() for f in flags]:
            self._background(_closeBackend, mbox)
            raise no("Mailbox cannot be selected", "CANNOT")
        self.mbox, self.mboxName = mbox, name
        self.readOnly = not rw or not info["writeable"]
        self._exists = info["exists"]
        self._untagged = []
        self._write(b"* FLAGS " + flagList(flags))
        self._write(b"* %d EXISTS" % (self._exists,))
        self._write(b"* %d RECENT" % (info["recent"],))
        self._write(b"* OK [PERMANENTFLAGS " + (b"()" if self.readOnly else flagList(list(flags) + ["\\*"])) + b"] Flags")
        self._write(b"* OK [UIDVALIDITY %d] UIDs valid" % (info["uidValidity"],))
        self._write(b"* OK [UIDNEXT %d] Predicted next UID" % (info["uidNext"],))
        self._hasModSeqs = info.get("highestModseq") is not None
        if self.condstore:
            # RFC 7162 §3.1.2: one of the two once CONDSTORE is enabled.
            if self._hasModSeqs:
                self._write(b"* OK [HIGHESTMODSEQ %d] Highest" % (info["highestModseq"],))
            else:
                self._write(b"* OK [NOMODSEQ] No permanent modsequences")
        if qresync is not None and self._hasModSeqs and qresync[0] == info["uidValidity"]:
            # RFC 7162 §3.2.5.1: what changed since the client's last look.
            for line in await self._call(_qresyncLines, mbox, qresync[1], qresync[2]):
                self._write(b"* " + line)
        mbox.addListener(self)
        self.state = SELECTED
        self._reply(tag, "OK", "SELECT completed" if rw else "EXAMINE completed", "READ-ONLY" if self.readOnly else "READ-WRITE")
        needsWarming = getattr(mbox, "needsWarming", None)
        if needsWarming is not None and needsWarming():
            # Answered from the index's header and UIDs: the rest is read
            # now, while the client reads the answer; not before the answer
            # is sent (a worker thread busy with it would hold the reactor
            # thread back by a GIL switch interval, 5 ms, or more), and a
            # call due at once would run before the reactor next writes.
            self.callLater(WARM_DELAY, self._background, mbox.warm)

    def _qresyncParameter(self, spec: Any) -> tuple[int, int, Any]:
        """
        The QRESYNC select parameter (RFC 7162 §3.2.5): C{(uidvalidity
        mod-sequence [known-uids [(known-sequence-set known-uid-set)]])}.

        @return: UIDVALIDITY, the mod-sequence and the known UIDs (a parsed
            UID set, or C{None}); the sequence match data is checked and
            not used (it only saves a server work).
        """
        if not isinstance(spec, list) or not 2 <= len(spec) <= 4:
            raise bad("Syntax: QRESYNC (uidvalidity mod-sequence [known-uids [(seqs uids)]])")
        validity = spec[0]
        if not isinstance(validity, Atom) or not validity.isdigit() or not 0 < int(validity) < 2**32:
            raise bad("Invalid UIDVALIDITY")
        modseq = modseqValue(spec[1], "mod-sequence", zero=False)
        known = None
        try:
            if len(spec) >= 3:
                if not isinstance(spec[2], Atom):
                    raise bad("Invalid known UIDs")
                known = S.parseSequenceSet(str(spec[2]), uid=True)
            if len(spec) == 4:
                match = spec[3]
                if not isinstance(match, list) or len(match) != 2 or not all(isinstance(m, Atom) for m in match):
                    raise bad("Invalid sequence match data")
                S.parseSequenceSet(str(match[0]))
                S.parseSequenceSet(str(match[1]), uid=True)
        except S.SearchError as e:
            raise bad(e.reason) from None
        return int(validity), modseq, known

    def _closeMailbox(self) -> None:
        mbox, self.mbox, self.mboxName = self.mbox, None, None
        self._hasModSeqs = False
        self._stopIdle()
        self._untagged = []
        if self.state == SELECTED:
            self.state = AUTHENTICATED
        if mbox is None:
            return
        mbox.removeListener(self)
        self._background(_closeBackend, mbox)

    async def cmd_CREATE(self, tag: bytes, args: list) -> None:
        (raw,) = arguments(args, 1, "CREATE mailbox")
        name = mailboxName(astring(raw), create=True)
        if name == "INBOX":
            raise IMAPError(ALREADY_EXISTS)
        if not await self._call(self.account.create, name):
            raise no("Cannot create mailbox", "CANNOT")
        self._reply(tag, "OK", "CREATE completed")

    async def cmd_DELETE(self, tag: bytes, args: list) -> None:
        (raw,) = arguments(args, 1, "DELETE mailbox")
        name = mailboxName(astring(raw))
        if name == "INBOX":
            raise no("Cannot delete INBOX", "CANNOT")
        await self._call(self.account.delete, name)
        self._reply(tag, "OK", "DELETE completed")

    async def cmd_RENAME(self, tag: bytes, args: list) -> None:
        old, new = arguments(args, 2, "RENAME old new")
        oldName, newName = mailboxName(astring(old)), mailboxName(astring(new))
        if newName == "INBOX":
            raise IMAPError(ALREADY_EXISTS)
        await self._call(self.account.rename, oldName, newName)
        self._reply(tag, "OK", "RENAME completed")

    async def cmd_SUBSCRIBE(self, tag: bytes, args: list) -> None:
        (raw,) = arguments(args, 1, "SUBSCRIBE mailbox")
        await self._call(self.account.subscribe, mailboxName(astring(raw)))
        self._reply(tag, "OK", "SUBSCRIBE completed")

    async def cmd_UNSUBSCRIBE(self, tag: bytes, args: list) -> None:
        (raw,) = arguments(args, 1, "UNSUBSCRIBE mailbox")
        await self._call(self.account.unsubscribe, mailboxName(astring(raw)))
        self._reply(tag, "OK", "UNSUBSCRIBE completed")

    async def cmd_LIST(self, tag: bytes, args: list) -> None:
        await self._list(tag, args, "LIST")

    async def cmd_LSUB(self, tag: bytes, args: list) -> None:
        await self._list(tag, args, "LSUB")

    async def _list(self, tag: bytes, args: list, verb: str) -> None:
        if verb == "LIST" and (len(args) != 2 or any(isinstance(a, list) for a in args)):
            await self._listExtended(tag, args)  # RFC 5258 §3
            return
        ref, pattern = arguments(args, 2, f"{verb} reference pattern")
        refName, patternName = listPattern(astring(ref)), listPattern(astring(pattern))
        if verb == "LIST" and not patternName:
            # RFC 3501 §6.3.8: the hierarchy delimiter and root.
            self._untaggedLine(b'LIST (\\Noselect) "/" ""')
            self._reply(tag, "OK", "LIST completed")
            return
        boxes = await self._call(_listOf, self.account.listMailboxes, refName, patternName)
        subscribed = None
        if verb == "LSUB":
            subscribed = await self._call(_subscribedAmong, self.account, [name for name, _ in boxes])
        names = None
        for name, info in boxes:
            if subscribed is not None and name not in subscribed:
                continue
            flags = list(info.getFlags())
            lowered = {f.lower() for f in flags}
            if not {"\\haschildren", "\\hasnochildren", "\\noinferiors"} & lowered:
                # RFC 3348: CHILDREN, from the whole list if the backend
                # does not say.
                if names is None:
                    names = [n for n, _ in await self._call(_listOf, self.account.listMailboxes, "", "*")]
                prefix = name + "/"
                flags.append("\\HasChildren" if any(n.startswith(prefix) for n in names) else "\\HasNoChildren")
            delimiter = info.getHierarchicalDelimiter()
            self._untaggedLine(
                verb.encode("ascii") + b" " + flagList(flags) + b" " + quoted(delimiter) + b" " + encodeName(name)
            )
        self._reply(tag, "OK", f"{verb} completed")

    def _listArguments(self, args: list) -> tuple[set[str], str, list[str], set[str], list[str]]:
        """
        An extended LIST's arguments (RFC 5258 §6: C{LIST [(selection)]
        reference (pattern ...) [RETURN (options)]}): the selection
        options, the reference, the patterns, the return options and the
        STATUS items.

        @raise IMAPError: C{BAD} for bad syntax or an unknown option.
        """
        usage = "Syntax: LIST [(selection-options)] reference (patterns) [RETURN (return-options)]"
        selection: set[str] = set()
        if args and isinstance(args[0], list):
            selection = {atom(o, "a selection option") for o in args[0]}
            args = args[1:]
        if len(args) not in (2, 4):
            raise bad(usage)
        if selection - set(_LIST_SELECTION):
            raise bad("Unknown LIST selection option")
        # RFC 5258 §3: RECURSIVEMATCH needs a selection option besides REMOTE.
        if "RECURSIVEMATCH" in selection and not selection - {"RECURSIVEMATCH", "REMOTE"}:
            raise bad("RECURSIVEMATCH needs another selection option")
        refName = listPattern(astring(args[0], "the reference"))
        raw = args[1] if isinstance(args[1], list) else [args[1]]
        if not raw:
            raise bad(usage)
        patterns = [listPattern(astring(p, "a pattern")) for p in raw]
        returns: set[str] = set()
        items: list[str] = []
        if len(args) == 4:
            if not isinstance(args[2], Atom) or args[2].upper() != "RETURN" or not isinstance(args[3], list):
                raise bad(usage)
            options = list(args[3])
            while options:
                option = atom(options.pop(0), "a return option")
                if option not in _LIST_RETURN or option in returns:
                    raise bad("Unknown or repeated LIST return option")
                returns.add(option)
                if option == "STATUS":
                    # RFC 5819 §2: STATUS takes the STATUS command's items.
                    if not options or not isinstance(options[0], list) or not options[0]:
                        raise bad("Syntax: RETURN (STATUS (items))")
                    items = [atom(i, "a status item") for i in options.pop(0)]
                    if any(i not in _STATUS_ITEMS + _MODSEQ_STATUS_ITEMS for i in items):
                        raise bad("Unknown status item")
        return selection, refName, patterns, returns, items

    async def _listExtended(self, tag: bytes, args: list) -> None:
        """
        LIST-EXTENDED (RFC 5258) with the SPECIAL-USE options (RFC 6154
        §5.1) and LIST-STATUS (RFC 5819): the folder list is read once
        (C{listMailboxes("", "*")}) and matched against every pattern
        here, so that subscribed folders that do not exist, and parents
        RECURSIVEMATCH brings in, are matched alike.
        """
        selection, refName, patterns, returns, items = self._listArguments(args)
        if patterns == [""] and not selection - {"REMOTE"}:
            # RFC 3501 §6.3.8: the hierarchy delimiter and root.
            self._untaggedLine(b'LIST (\\Noselect) "/" ""')
            self._reply(tag, "OK", "LIST completed")
            return
        if "HIGHESTMODSEQ" in items:
            self._enableCondstore()  # RFC 7162 §3.1.7
        boxes = await self._call(_listOf, self.account.listMailboxes, "", "*")
        existing = {name: list(info.getFlags()) for name, info in boxes}
        delimiter = boxes[0][1].getHierarchicalDelimiter() if boxes else "/"
        # RFC 5258 §3: the SUBSCRIBED selection option implies the return option.
        wantSubscribed = "SUBSCRIBED" in selection or "SUBSCRIBED" in returns
        subscribed: set[str] = set()
        if wantSubscribed:
            subscriptions = getattr(self.account, "subscriptions", None)
            if subscriptions is not None:
                subscribed = set(await self._call(_listOf, subscriptions))
            else:
                subscribed = set(await self._call(_subscribedAmong, self.account, list(existing)))

        def meets(name: str) -> bool:
            if "SUBSCRIBED" in selection and name not in subscribed:
                return False
            if "SPECIAL-USE" in selection:  # RFC 6154 §5.1
                return bool(_SPECIAL_USE & {f.lower() for f in existing.get(name, ())})
            return True

        names = list(existing)
        if "SUBSCRIBED" in selection:
            names += sorted(subscribed - set(existing))  # RFC 5258 §3.4: \NonExistent
        selected = [n for n in names if meets(n)]
        childInfo: dict[str, list[str]] = {}
        if "RECURSIVEMATCH" in selection:
            # RFC 5258 §3: a parent that does not meet the criteria is
            # listed when a descendant does, and CHILDINFO says which.
            tags = [o for o in ("SUBSCRIBED", "SPECIAL-USE") if o in selection]
            for name in selected:
                parts = name.split(delimiter)
                for i in range(1, len(parts)):
                    childInfo.setdefault(delimiter.join(parts[:i]), tags)
            extra = sorted(set(childInfo) - set(names))
            selected = [n for n in names + extra if n in childInfo or meets(n)]
        matchers = [_listMatcher(refName, p, delimiter) for p in patterns if p]
        for name in selected:
            if not any(m(name) for m in matchers):
                continue
            flags = list(existing.get(name, ["\\NonExistent"]))  # RFC 5258 §3.4
            lowered = {f.lower() for f in flags}
            if not {"\\haschildren", "\\hasnochildren", "\\noinferiors"} & lowered:
                prefix = name + delimiter
                flags.append("\\HasChildren" if any(n.startswith(prefix) for n in existing) else "\\HasNoChildren")
            if wantSubscribed and name in subscribed:
                flags.append("\\Subscribed")  # RFC 5258 §3.4
            status = None
            if items and not {"\\noselect", "\\nonexistent"} & lowered:
                status = await self._listStatus(name, items)
                if status is False:
                    flags.append("\\Noselect")  # RFC 5819 §2: gone meanwhile
            line = b"LIST " + flagList(flags) + b" " + quoted(delimiter) + b" " + encodeName(name)
            if name in childInfo:
                line += b' ("CHILDINFO" (' + b" ".join(quoted(t) for t in childInfo[name]) + b"))"
            self._untaggedLine(line)
            if status:
                pairs = b" ".join(b"%s %d" % (k.encode("ascii"), int(status[k])) for k in items if k in status)
                self._untaggedLine(b"STATUS " + encodeName(name) + b" (" + pairs + b")")
        self._reply(tag, "OK", "LIST completed")

    async def _listStatus(self, name: str, items: list[str]) -> dict | bool | None:
        """
        The STATUS of one folder for LIST-STATUS, as the STATUS command
        reads it: C{False} if the folder cannot be selected, C{None} if
        reading it failed (RFC 5819 §2: the LIST line goes out without
        STATUS, and the command still succeeds).
        """
        try:
            mbox = await self._call(self.account.select, name, False)
        except _SessionGone:
            raise
        except Exception:
            self.log.failure("IMAP LIST-STATUS could not open {name}", name=name)
            return None
        if mbox is None:
            return False
        try:
            return dict(await self._call(_status, mbox, items))
        except _SessionGone:
            raise
        except Exception:
            self.log.failure("IMAP LIST-STATUS could not read {name}", name=name)
            return None
        finally:
            if mbox is not self.mbox:
                await self._call(_closeBackend, mbox)

    async def cmd_STATUS(self, tag: bytes, args: list) -> None:
        raw, items = arguments(args, 2, "STATUS mailbox (items)")
        name = mailboxName(astring(raw))
        if not isinstance(items, list) or not items:
            raise bad("Syntax: STATUS mailbox (items)")
        wanted = [atom(i, "a status item") for i in items]
        if any(w not in _STATUS_ITEMS + _MODSEQ_STATUS_ITEMS for w in wanted):
            raise bad("Unknown status item")
        if "HIGHESTMODSEQ" in wanted:
            self._enableCondstore()  # RFC 7162 §3.1.7
        mbox = await self._call(self.account.select, name, False)
        if mbox is None:
            raise IMAPError(NONEXISTENT)
        try:
            status = await self._call(_status, mbox, wanted)
        finally:
            if mbox is not self.mbox:
                await self._call(_closeBackend, mbox)
        pairs = b" ".join(b"%s %d" % (k.encode("ascii"), int(status[k])) for k in wanted if k in status)
        self._untaggedLine(b"STATUS " + encodeName(name) + b" (" + pairs + b")")
        self._reply(tag, "OK", "STATUS completed")

    async def cmd_APPEND(self, tag: bytes, args: list) -> None:
        if not 2 <= len(args) <= 4:
            raise bad("Syntax: APPEND mailbox [(flags)] [date-time] literal")
        name = mailboxName(astring(args[0]))
        message = args[-1]
        flags: list[str] = []
        date = None
        for extra in args[1:-1]:
            if isinstance(extra, list):
                flags = self._flags(extra)
            elif isinstance(extra, bytes) and _DATE_TIME.match(extra.decode("latin-1")):
                date = extra.decode("ascii")
            else:
                raise bad("Syntax: APPEND mailbox [(flags)] [date-time] literal")
        if isinstance(message, bytes):
            literal = FileLiteral(len(message))
            literal.file.write(message)
            message = literal
        if not isinstance(message, FileLiteral):
            raise bad("APPEND needs a literal")
        if message.size == 0:
            raise no("Empty message")
        try:
            target = await self._call(self.account.select, name)
        except BaseException:
            message.file.close()
            raise
        if target is None:
            message.file.close()
            raise IMAPError(TRYCREATE)  # RFC 3501 §6.3.11
        try:
            message.file.seek(0)
            uid = await self._call(target.addMessage, message.file, flags, date)
            code = ""
            if isinstance(uid, int) and not isinstance(uid, bool):
                code = f"APPENDUID {target.getUIDValidity()} {uid}"  # RFC 4315 §3
        finally:
            message.file.close()
            if target is not self.mbox:
                await self._call(_closeBackend, target)
        if name == self.mboxName:
            # RFC 3501 §6.3.11: EXISTS now (the view changes in a refresh).
            await self._refresh()
        self._checkExists()
        self._reply(tag, "OK", "APPEND completed", code)

    def _flags(self, tokens: list) -> list[str]:
        flags = []
        for token in tokens:
            if not isinstance(token, Atom) or (token.startswith("\\") and token.upper() in ("\\RECENT", "\\*")):
                raise bad("Invalid flag")
            if "[" in token or "]" in token:
                raise bad("Invalid flag")
            flags.append(str(token))
        return flags

    async def cmd_IDLE(self, tag: bytes, args: list) -> None:
        arguments(args, 0, "IDLE")
        self._idleTag = tag
        self.setTimeout(None)  # RFC 2177 §3: no autologout while idling
        self._write(b"+ idling")
        self._flush()
        if self.mbox is not None and callable(getattr(self.mbox, "refresh", None)):
            self._idlePoll = LoopingCall(self._poll)
            self._idlePoll.clock = self.factory.clock
            self._idlePoll.start(IDLE_POLL, now=False).addErrback(
                lambda f: self.log.failure("polling a mailbox failed", f)
            )
        self._idleKeepalive = self.factory.clock.callLater(IDLE_KEEPALIVE, self._keepalive)

    def _poll(self) -> Deferred | None:
        mbox = self.mbox
        if mbox is None or self._polling is not None:
            return None
        d = self._blocking(mbox.refresh)
        self._polling = d

        def done(result: object) -> None:
            self._polling = None
            if self.mbox is mbox and not self._closed:
                self._checkExists()

        def failed(reason: Failure) -> None:
            self._polling = None
            if reason.check(MailboxGone):
                self.close(MAILBOX_GONE)
                return
            self.log.failure("refreshing a mailbox failed", reason)

        d.addCallbacks(done, failed)
        return d

    def _keepalive(self) -> None:
        self._write(b"* OK Still here")
        self._idleKeepalive = self.factory.clock.callLater(IDLE_KEEPALIVE, self._keepalive)

    def _idleLine(self, line: bytes) -> None:
        if line.strip().upper() != b"DONE":
            # RFC 2177 §3: only DONE ends IDLE.
            self._write(b"* BAD Expected DONE")
            self._error()
            return
        tag = self._idleTag
        assert tag is not None
        polling = self._polling
        self._stopIdle()
        self.setTimeout(self.factory.idleTimeout)
        if polling is None:
            self._reply(tag, "OK", "IDLE terminated")
            return
        # A refresh is under way on a worker thread: the reply, and the
        # next command, wait for it (one backend call at a time).
        self._blocked = True
        waiter: Deferred[None] = Deferred()

        def ended(result: object) -> object:
            if not self._closed:
                self._reply(tag, "OK", "IDLE terminated")
            waiter.callback(None)
            return result

        polling.addBoth(ended)
        waiter.addBoth(self._finished)

    def _stopIdle(self) -> None:
        self._idleTag = None
        poll, self._idlePoll = self._idlePoll, None
        if poll is not None and poll.running:
            poll.stop()
        keepalive, self._idleKeepalive = self._idleKeepalive, None
        if keepalive is not None and keepalive.active():
            keepalive.cancel()

    async def _refresh(self) -> None:
        refresh = getattr(self.mbox, "refresh", None) if self.mbox is not None else None
        if callable(refresh):
            try:
                await self._call(refresh)
            except MailboxGone:
                # Deleted or renamed by another session: as Dovecot does,
                # the client starts again and finds out.
                self.close(MAILBOX_GONE)
                raise _SessionGone() from None
        self._checkExists()

    # Selected

    async def cmd_CHECK(self, tag: bytes, args: list) -> None:
        arguments(args, 0, "CHECK")
        await self._refresh()
        self._reply(tag, "OK", "CHECK completed")

    async def cmd_CLOSE(self, tag: bytes, args: list) -> None:
        arguments(args, 0, "CLOSE")
        if not self.readOnly:
            # RFC 3501 §6.4.2: expunge silently.
            try:
                await self._call(self.mbox.expunge)
            except ReadOnlyMailbox:
                pass
        self._closeMailbox()
        self._reply(tag, "OK", "CLOSE completed")

    async def cmd_UNSELECT(self, tag: bytes, args: list) -> None:
        arguments(args, 0, "UNSELECT")
        self._closeMailbox()
        self._reply(tag, "OK", "UNSELECT completed")  # RFC 3691

    async def cmd_EXPUNGE(self, tag: bytes, args: list) -> None:
        arguments(args, 0, "EXPUNGE")
        self._writable()
        if self._vanishing():
            uids = await self._call(_deletedUIDs, self.mbox, MessageSet(1, None))
            await self._reportExpunge(uids)
            self._reply(tag, "OK", "EXPUNGE completed", await self._highestCode())
            return
        seqs = await self._call(self.mbox.expunge)
        self.messagesExpunged(seqs or [])
        self._reply(tag, "OK", "EXPUNGE completed")

    async def cmd_UID_EXPUNGE(self, tag: bytes, args: list) -> None:
        (raw,) = arguments(args, 1, "UID EXPUNGE uid-set")
        self._writable()
        wanted = parseSequenceSet(raw, True, self._exists)
        uids = await self._call(_deletedUIDs, self.mbox, wanted)
        await self._reportExpunge(uids)
        code = await self._highestCode() if self._vanishing() else ""
        self._reply(tag, "OK", "UID EXPUNGE completed", code)  # RFC 4315 §2.1

    async def _reportExpunge(self, uids: list[int]) -> None:
        """
        Expunge exactly C{uids} and tell the client: VANISHED once QRESYNC
        is enabled (RFC 7162 §3.2.10.2), else EXPUNGE responses.
        """
        if self._vanishing():
            self._vanished(await self._call(_listOf, self.mbox.vanishUIDs, uids) if uids else [])
        else:
            self.messagesExpunged(await self._expungeUIDs(uids))

    async def _highestCode(self) -> str:
        """
        C{HIGHESTMODSEQ n} for the tagged OK of EXPUNGE and UID EXPUNGE
        once QRESYNC is enabled (RFC 7162 §3.2.7).
        """
        return "HIGHESTMODSEQ %d" % (await self._call(self.mbox.getHighestModSeq),)

    def _writable(self) -> None:
        if self.readOnly:
            raise IMAPError(READ_ONLY)

    async def _fetch(self, messages: MessageSet, uid: bool) -> list:
        return await self._call(_listOf, self.mbox.fetch, messages, uid)

    async def _expungeUIDs(self, uids: list[int]) -> list[int]:
        """
        Expunge exactly the messages C{uids}: the backend's C{expungeUIDs}
        if it has one, else C{\\Deleted} is lifted from the others around
        a plain expunge.
        """
        if not uids:
            return []
        mbox = self.mbox
        if callable(getattr(mbox, "expungeUIDs", None)):
            return await self._call(_listOf, mbox.expungeUIDs, uids)
        wanted = set(uids)
        others = [uid for uid in await self._call(_deletedUIDs, mbox, MessageSet(1, None)) if uid not in wanted]
        await self._call(mbox.store, _messageSet(uids), ["\\Deleted"], 1, True)
        if others:
            await self._call(mbox.store, _messageSet(others), ["\\Deleted"], -1, True)
        try:
            return list(await self._call(mbox.expunge) or [])
        finally:
            if others:
                await self._call(mbox.store, _messageSet(others), ["\\Deleted"], 1, True)

    async def cmd_SEARCH(self, tag: bytes, args: list, uid: bool = False) -> None:
        node = S.parseSearch(args)
        if S.usesModSeq(node):
            self._needModSeqs()  # RFC 7162 §3.1.5
        if ISearchableMailbox.providedBy(self.mbox):
            # As in Twisted's server: sequence numbers back, mapped to UIDs
            # (on the worker thread too) for UID SEARCH.
            line = await self._call(_searchLine, self.mbox, node, uid)
        else:
            found, highest = await self._search(node, uid)
            line = b"SEARCH" + b"".join(b" %d" % n for n in found)
            if found and highest is not None:
                line += b" (MODSEQ %d)" % (highest,)  # RFC 7162 §3.1.6
        self._untaggedLine(line)
        self._reply(tag, "OK", "SEARCH completed")

    async def cmd_UID_SEARCH(self, tag: bytes, args: list) -> None:
        await self.cmd_SEARCH(tag, args, uid=True)

    async def _search(self, node: S.Node, uid: bool) -> tuple[list[int], int | None]:
        mbox = self.mbox
        getList = getattr(mbox, "getUIDList", None)
        if callable(getList):
            uids = await self._call(_listOf, getList)
        else:
            uids = await self._call(_uidsBySequence, mbox)
        messages: list = []
        for low, high in S.candidates(node, uids):
            messages.extend(await self._fetch(MessageSet(low, high), False))
        return await self._call(_searchMessages, node, uids, messages, uid)

    async def cmd_FETCH(self, tag: bytes, args: list, uid: bool = False) -> None:
        if len(args) not in (2, 3):
            raise bad("Syntax: FETCH sequence-set items [(modifiers)]")
        messages = parseSequenceSet(args[0], uid, self._exists)
        items = self._fetchItems(args[1], uid)
        changedSince, vanished = self._fetchModifiers(args[2], uid) if len(args) == 3 else (None, False)
        if changedSince is not None or any(kind == "MODSEQ" for kind, _, _, _ in items):
            self._needModSeqs()  # RFC 7162 §3.1.4
            if not any(kind == "MODSEQ" for kind, _, _, _ in items):
                items.append(("MODSEQ", None, False, None))  # RFC 7162 §3.1.4.1
        if vanished:
            # RFC 7162 §3.2.6: the UIDs of the set that are gone, first.
            line = await self._call(_vanishedEarlier, self.mbox, S.parseSequenceSet(str(args[0]), uid=True))
            if line is not None:
                self._write(b"* " + line)
        if changedSince is not None:
            # Only the messages changed since, named by UID from here on.
            messages = await self._call(_changedSinceSet, self.mbox, messages, uid, changedSince)
            uid = True
        setsSeen = not self.readOnly and any(
            kind in ("RFC822", "RFC822.TEXT") or (kind == "BODY[]" and not peek)
            for kind, _, peek, _ in items
        )
        mbox = self.mbox
        step = FETCH_INDEX_BATCH if all(kind in _INDEX_ITEMS for kind, _, _, _ in items) else FETCH_BATCH
        gone: set[int] = set()
        # The backend's iterator is consumed a batch at a time (each on the
        # worker thread), so that a FETCH 1:* of a big mailbox never holds
        # a message object per message at once.
        source = await self._call(_iterate, mbox.fetch, messages, uid)
        more = True
        while more:
            batch = await self._call(_take, source, step)
            # A short batch is the last: the tagged reply then follows the
            # last responses without another trip to the worker thread.
            more = len(batch) == step
            if not batch:
                break
            flags: dict[int, list] | None = None
            seen: set[int] = set()
            if setsSeen:
                # RFC 3501 §6.4.5: BODY[...] sets \Seen; say so in FLAGS.
                flags = await self._call(_flagsOf, batch)
                unseen = [(seq, msg.getUID()) for seq, msg in batch if seq in flags and "\\seen" not in {f.lower() for f in flags[seq]}]
                if unseen:
                    changed = await self._call(mbox.store, _messageSet(u for _, u in unseen), ["\\Seen"], 1, True)
                    for seq, _ in unseen:
                        flags[seq] = list(changed.get(seq, flags[seq] + ["\\Seen"])) if changed else flags[seq] + ["\\Seen"]
                        seen.add(seq)
            done = 0
            while done < len(batch):
                data, count = await self._call(self._renderFetch, batch[done:], items, flags, seen, gone)
                self.transport.write(data)
                done += count
        if gone:
            # RFC 2180 §4.1.3: the others were sent; the client learns of
            # the expunge at its next NOOP (RFC 5530 EXPUNGEISSUED).
            raise IMAPError(EXPUNGE_ISSUED)
        self._reply(tag, "OK", "FETCH completed")

    def _renderFetch(
        self,
        batch: list,
        items: list[tuple[str, Any, bool, Any]],
        flags: dict[int, list] | None,
        seen: set[int],
        gone: set[int],
    ) -> tuple[bytes, int]:
        """
        The FETCH responses of the first messages of C{batch}, until
        L{FETCH_BATCH_OCTETS} are ready (run through C{runBlocking}: this
        reads the files).

        @param flags: the messages' flags, if already known.
        @param seen: sequence numbers whose \\Seen this FETCH set: they get
            FLAGS even if not asked for.
        @param gone: gets the sequence numbers of messages expunged
            elsewhere, which are left out.
        @return: the octets and how many messages they cover.
        """
        out: list[bytes] = []
        size = count = 0
        withFlags = items if any(kind == "FLAGS" for kind, _, _, _ in items) else items + [("FLAGS", None, False, None)]
        if self.condstore and self._hasModSeqs:
            # RFC 7162 §3.1: a FETCH that set \Seen reports UID and MODSEQ.
            for wanted in ("UID", "MODSEQ"):
                if not any(kind == wanted for kind, _, _, _ in withFlags):
                    withFlags = withFlags + [(wanted, None, False, None)]
        for seq, msg in batch:
            try:
                if flags is not None and seq not in flags:
                    raise MessageExpunged()  # see _flagsOf
                messageFlags = flags[seq] if flags is not None else None
                pieces = []
                raw: bytes | None = None
                for kind, section, peek, span in withFlags if seq in seen else items:
                    if kind == "FLAGS" and messageFlags is None:
                        messageFlags = msg.getFlags()
                    elif raw is None and kind in _RAW_ITEMS and not _kept(msg, kind):
                        raw = rawMessage(msg)
                    pieces.append(self._fetchItem(kind, section, span, msg, messageFlags, raw))
            except MessageExpunged:
                gone.add(seq)
                count += 1
                continue
            line = b"* %d FETCH (%b)\r\n" % (seq, b" ".join(pieces))
            out.append(line)
            size += len(line)
            count += 1
            if size >= FETCH_BATCH_OCTETS:
                break
        return b"".join(out), count

    async def cmd_UID_FETCH(self, tag: bytes, args: list) -> None:
        await self.cmd_FETCH(tag, args, uid=True)

    def _fetchItems(self, spec: Any, uid: bool) -> list[tuple[str, Any, bool, Any]]:
        if isinstance(spec, Atom) and spec.upper() in _FETCH_MACROS:
            names: list = [Atom(n) for n in _FETCH_MACROS[spec.upper()]]
        elif isinstance(spec, Atom):
            names = [spec]
        elif isinstance(spec, list) and spec:
            names = spec
        else:
            raise bad("Syntax: FETCH sequence-set items")
        items: list[tuple[str, Any, bool, Any]] = []
        if uid:
            items.append(("UID", None, False, None))  # RFC 3501 §6.4.8
        for name in names:
            if not isinstance(name, Atom):
                raise bad("Invalid fetch item")
            upper = name.upper()
            if upper in _SIMPLE_FETCH:
                if not (upper == "UID" and uid):
                    items.append((upper, None, False, None))
                continue
            match = _BODY.match(name)
            if match is None:
                raise bad("Invalid fetch item")
            section = M.parseSection(match.group(2))
            span = (int(match.group(3)), int(match.group(4))) if match.group(3) else None
            items.append(("BODY[]", section, match.group(1).upper() == "BODY.PEEK", span))
        return items

    def _fetchItem(self, kind: str, section: Any, span: Any, msg: Any, flags: list | None, raw: bytes | None) -> bytes:
        if kind == "FLAGS":
            assert flags is not None
            return b"FLAGS " + flagList(flags)
        if kind == "UID":
            return b"UID %d" % (msg.getUID(),)
        if kind == "MODSEQ":
            return b"MODSEQ (%d)" % (msg.getModSeq(),)  # RFC 7162 §3.1.4.2
        if kind == "INTERNALDATE":
            return b"INTERNALDATE " + formatInternalDate(msg)
        if kind == "RFC822.SIZE":
            return b"RFC822.SIZE %d" % (msg.getSize(),)
        if kind == "ENVELOPE":
            # From the backend's cache when it keeps one (IMessage has no
            # such method: duck-typed), else from the header.
            if raw is None:
                text = getattr(msg, "envelopeText", None)
                return b"ENVELOPE (" + (text() if callable(text) else M.nestedList(msg.envelope())) + b")"
            return b"ENVELOPE (" + M.nestedList(M.envelope(raw)) + b")"
        if kind == "BODYSTRUCTURE" and raw is None:
            return b"BODYSTRUCTURE (" + M.nestedList(msg.bodyStructure()) + b")"
        assert raw is not None
        if kind in ("BODY", "BODYSTRUCTURE"):
            return kind.encode("ascii") + b" (" + M.nestedList(M.bodyStructure(raw, kind == "BODYSTRUCTURE")) + b")"
        if kind == "RFC822":
            data = M.toCRLF(raw)
            return b"RFC822 {%d}\r\n" % len(data) + data
        if kind == "RFC822.HEADER":
            data = M.section(raw, "HEADER")
            return b"RFC822.HEADER {%d}\r\n" % len(data) + data
        if kind == "RFC822.TEXT":
            data = M.section(raw, "TEXT")
            return b"RFC822.TEXT {%d}\r\n" % len(data) + data
        start, length = span if span is not None else (None, None)
        label, data = M.fetchBody(raw, section, start, length)
        return label + b" {%d}\r\n" % len(data) + data

    async def cmd_STORE(self, tag: bytes, args: list, uid: bool = False) -> None:
        if len(args) not in (3, 4):
            raise bad("Syntax: STORE sequence-set [(modifiers)] item flags")
        self._writable()
        messages = parseSequenceSet(args[0], uid, self._exists)
        unchangedSince = None
        if len(args) == 4:
            unchangedSince = self._storeModifiers(args[1])
            args = [args[0], args[2], args[3]]
        item = atom(args[1], "a store item")
        match = re.fullmatch(r"([+-]?)FLAGS(\.SILENT)?", item)
        if match is None:
            raise bad("Invalid store item")
        flags = self._flags(args[2] if isinstance(args[2], list) else [args[2]])
        mode = {"+": 1, "-": -1, "": 0}[match.group(1)]
        if unchangedSince is not None:
            self._needModSeqs()  # RFC 7162 §3.1.3
        condstore = self.condstore and self._hasModSeqs
        lines, modified = await self._call(
            _storeLines, self.mbox, messages, flags, mode, uid, not match.group(2), condstore, unchangedSince
        )
        for line in lines:
            self._untaggedLine(line)
        if modified:
            # RFC 7162 §3.1.3: the messages (UIDs for UID STORE) that
            # failed the UNCHANGEDSINCE test.
            code = "MODIFIED " + uidSet(sorted(modified)).decode("ascii")
            self._reply(tag, "OK", "Conditional STORE failed", code)
        else:
            self._reply(tag, "OK", "STORE completed")

    def _storeModifiers(self, spec: Any) -> int:
        """
        STORE modifiers (RFC 4466 §2.5): C{(UNCHANGEDSINCE n)}, RFC 7162
        §3.1.3.

        @return: the UNCHANGEDSINCE value.
        """
        if not isinstance(spec, list) or len(spec) != 2:
            raise bad("Syntax: STORE sequence-set (UNCHANGEDSINCE mod-sequence) item flags")
        name, value = spec
        if not isinstance(name, Atom) or name.upper() != "UNCHANGEDSINCE":
            raise bad("Unknown STORE modifier")
        return modseqValue(value, "UNCHANGEDSINCE value")

    def _fetchModifiers(self, spec: Any, uid: bool) -> tuple[int, bool]:
        """
        FETCH modifiers (RFC 4466 §2.4): C{CHANGEDSINCE n}, RFC 7162
        §3.1.4.1, and with it C{VANISHED}, §3.2.6 (UID FETCH, QRESYNC
        enabled), in any order.

        @return: the CHANGEDSINCE value, and whether VANISHED was given.
        """
        if not isinstance(spec, list) or not spec:
            raise bad("Syntax: FETCH sequence-set items (CHANGEDSINCE mod-sequence [VANISHED])")
        changedSince = None
        vanished = False
        at = 0
        while at < len(spec):
            name = spec[at]
            upper = name.upper() if isinstance(name, Atom) else ""
            if upper == "CHANGEDSINCE" and changedSince is None and at + 1 < len(spec):
                changedSince = modseqValue(spec[at + 1], "CHANGEDSINCE value")
                at += 2
            elif upper == "VANISHED" and not vanished:
                vanished = True
                at += 1
            else:
                raise bad("Unknown FETCH modifier")
        if changedSince is None:
            raise bad("Syntax: FETCH sequence-set items (CHANGEDSINCE mod-sequence [VANISHED])")
        if vanished and (not uid or not self.qresync):
            raise bad("VANISHED needs UID FETCH and ENABLE QRESYNC")  # RFC 7162 §3.2.3, §3.2.6
        return changedSince, vanished

    async def cmd_UID_STORE(self, tag: bytes, args: list) -> None:
        await self.cmd_STORE(tag, args, uid=True)

    async def cmd_COPY(self, tag: bytes, args: list, uid: bool = False, move: bool = False) -> None:
        verb = "MOVE" if move else "COPY"
        if len(args) != 2:
            raise bad(f"Syntax: {verb} sequence-set mailbox")
        if move:
            self._writable()
        messages = parseSequenceSet(args[0], uid, self._exists)
        name = mailboxName(astring(args[1]))
        target = await self._call(self.account.select, name)
        if target is None:
            raise IMAPError(TRYCREATE)  # RFC 3501 §6.4.7
        try:
            sources, copies = await self._copy(messages, uid, target)
            code = ""
            if copies and all(isinstance(c, int) and not isinstance(c, bool) for c in copies):
                # RFC 4315 §3
                code = f"COPYUID {target.getUIDValidity()} {uidSet(sources).decode()} {uidSet(copies).decode()}"
        finally:
            if target is not self.mbox:
                await self._call(_closeBackend, target)
        if move:
            # RFC 6851 §4.3: COPYUID untagged, then the EXPUNGEs.
            if code:
                self._write(b"* OK [" + code.encode("ascii") + b"] Moved")
            self._holdExpunges = False
            await self._reportExpunge(sources)
            code = ""
        if name == self.mboxName:
            # As for APPEND: the copies' EXISTS now.
            await self._refresh()
        self._checkExists()
        self._reply(tag, "OK", f"{verb} completed", code)

    async def _copy(self, messages: MessageSet, uid: bool, target: Any) -> tuple[list[int], list[Any]]:
        mbox = self.mbox
        if callable(getattr(target, "copyMessages", None)) and type(target) is type(mbox):
            # The whole set in one step (one fsync), on a worker thread.
            pairs = await self._call(_listOf, target.copyMessages, mbox, messages, uid)
            return [s for s, _ in pairs], [c for _, c in pairs]
        copier = IMessageCopier(target, None)
        sources: list[int] = []
        copies: list[Any] = []
        for _, msg in await self._fetch(messages, uid):
            if copier is not None:
                new = await self._call(copier.copy, msg)
            else:
                new = await self._call(_appendCopy, target, msg)
            sources.append(msg.getUID())
            copies.append(new)
        return sources, copies

    async def cmd_UID_COPY(self, tag: bytes, args: list) -> None:
        await self.cmd_COPY(tag, args, uid=True)

    async def cmd_MOVE(self, tag: bytes, args: list) -> None:
        await self.cmd_COPY(tag, args, move=True)

    async def cmd_UID_MOVE(self, tag: bytes, args: list) -> None:
        await self.cmd_COPY(tag, args, uid=True, move=True)


_ANY = frozenset({NOT_AUTHENTICATED, AUTHENTICATED, SELECTED})
_UNAUTH = frozenset({NOT_AUTHENTICATED})
_AUTH = frozenset({AUTHENTICATED, SELECTED})
_SELECTED = frozenset({SELECTED})
_UID_COMMANDS = {"FETCH", "SEARCH", "STORE", "COPY", "MOVE", "EXPUNGE"}

_COMMANDS: dict[str, tuple[Callable[..., Any], frozenset[str]]] = {
    "CAPABILITY": (IMAP4Server.cmd_CAPABILITY, _ANY),
    "NOOP": (IMAP4Server.cmd_NOOP, _ANY),
    "LOGOUT": (IMAP4Server.cmd_LOGOUT, _ANY),
    "ID": (IMAP4Server.cmd_ID, _ANY),
    "STARTTLS": (IMAP4Server.cmd_STARTTLS, _UNAUTH),
    "LOGIN": (IMAP4Server.cmd_LOGIN, _UNAUTH),
    "AUTHENTICATE": (IMAP4Server.cmd_AUTHENTICATE, _UNAUTH),
    "ENABLE": (IMAP4Server.cmd_ENABLE, _AUTH),
    "NAMESPACE": (IMAP4Server.cmd_NAMESPACE, _AUTH),
    "SELECT": (IMAP4Server.cmd_SELECT, _AUTH),
    "EXAMINE": (IMAP4Server.cmd_EXAMINE, _AUTH),
    "CREATE": (IMAP4Server.cmd_CREATE, _AUTH),
    "DELETE": (IMAP4Server.cmd_DELETE, _AUTH),
    "RENAME": (IMAP4Server.cmd_RENAME, _AUTH),
    "SUBSCRIBE": (IMAP4Server.cmd_SUBSCRIBE, _AUTH),
    "UNSUBSCRIBE": (IMAP4Server.cmd_UNSUBSCRIBE, _AUTH),
    "LIST": (IMAP4Server.cmd_LIST, _AUTH),
    "LSUB": (IMAP4Server.cmd_LSUB, _AUTH),
    "STATUS": (IMAP4Server.cmd_STATUS, _AUTH),
    "APPEND": (IMAP4Server.cmd_APPEND, _AUTH),
    "IDLE": (IMAP4Server.cmd_IDLE, _AUTH),
    "CHECK": (IMAP4Server.cmd_CHECK, _SELECTED),
    "CLOSE": (IMAP4Server.cmd_CLOSE, _SELECTED),
    "UNSELECT": (IMAP4Server.cmd_UNSELECT, _SELECTED),
    "EXPUNGE": (IMAP4Server.cmd_EXPUNGE, _SELECTED),
    "SEARCH": (IMAP4Server.cmd_SEARCH, _SELECTED),
    "FETCH": (IMAP4Server.cmd_FETCH, _SELECTED),
    "STORE": (IMAP4Server.cmd_STORE, _SELECTED),
    "COPY": (IMAP4Server.cmd_COPY, _SELECTED),
    "MOVE": (IMAP4Server.cmd_MOVE, _SELECTED),
    "UID FETCH": (IMAP4Server.cmd_UID_FETCH, _SELECTED),
    "UID SEARCH": (IMAP4Server.cmd_UID_SEARCH, _SELECTED),
    "UID STORE": (IMAP4Server.cmd_UID_STORE, _SELECTED),
    "UID COPY": (IMAP4Server.cmd_UID_COPY, _SELECTED),
    "UID MOVE": (IMAP4Server.cmd_UID_MOVE, _SELECTED),
    "UID EXPUNGE": (IMAP4Server.cmd_UID_EXPUNGE, _SELECTED),
}


class IMAPFactory(SessionFactory):
    """
    Builds L{IMAP4Server} sessions for one listener.

    @param portal: logs users in: an L{mailhub.auth.throttle.Authenticator}
        (its C{portalFor(peer)} is used) or a L{Portal}; the realm gives
        L{IAccount} avatars.
    @param clock: the reactor's clock (timeouts, IDLE polling).
    @param hostname: this server's name, for the greeting.
    @param contextFactory: TLS server options, for STARTTLS (or C{None}).
    @param implicitTLS: the listener is TLS from the first byte (993).
    @param idleTimeout: seconds a logged-in client may stay silent.
    @param maxLiteral: the largest message APPEND takes.
    @param lineLength: longest command line, in octets.
    @param maxErrors: client errors one session may make.
    @param connectionsPerPeer: most simultaneous sessions from one address.
    @param connectionsPerUser: most simultaneous sessions of one user.
    @param perUser: the count of sessions per user, to share with the
        other IMAP listeners' factories (so the limit is per user, not per
        listener); a new one by default.
    @param peerLimitExempt: networks the per-peer limit does not apply to.
    @param runBlocking: C{runBlocking(function, *args)} runs blocking work
        off the reactor thread and returns a L{Deferred} of its result (the
        service: the reactor's thread pool).  Every backend call that reads
        the disk or grows with the mailbox goes through it (see the module
        docstring); the default runs it inline.
    """

    log = Logger()
    noisy = False
    protocol = IMAP4Server  # type: ignore[assignment]

    def __init__(
        self,
        *,
        portal: Any,
        clock: IReactorTime,
        hostname: str = "localhost",
        contextFactory: Any = None,
        implicitTLS: bool = False,
        idleTimeout: float = IDLE_TIMEOUT,
        maxLiteral: int = MAX_LITERAL,
        lineLength: int = LINE_LENGTH,
        maxErrors: int = MAX_ERRORS,
        connectionsPerPeer: int = 20,
        connectionsPerUser: int = 20,
        peerLimitExempt: tuple[Any, ...] = (),
        runBlocking: Callable[..., Deferred[Any]] = maybeDeferred,
        perUser: dict[str, int] | None = None,
    ) -> None:
        self.portal = portal
        self.clock = clock
        self.hostname = hostname
        self.contextFactory = contextFactory
        self.implicitTLS = implicitTLS
        self.idleTimeout = idleTimeout
        self.maxLiteral = maxLiteral
        self.lineLength = lineLength
        self.maxErrors = maxErrors
        self.connectionsPerPeer = connectionsPerPeer
        self.connectionsPerUser = connectionsPerUser
        self.peerLimitExempt = peerLimitExempt
        self.runBlocking = runBlocking
        self.perUser: dict[str, int] = perUser if perUser is not None else {}
        #: settle key -> its pending call (see L{settleLater}).
        self._settling: dict[object, Any] = {}
        self.initSessions()

    def settleLater(self, mbox: Any, attempt: int = 1) -> None:
        """
        After a command on C{mbox}: in L{SETTLE_DELAY} seconds, on a worker
        thread, let the mailbox list again what changed (its C{settle}),
        so that the work is done while the folder is quiet, not by the next
        SELECT.  One pending call per folder; again later while the folder
        keeps changing, up to three times in a row (a directory whose mtime
        is ahead of the clock never settles: its listing is left to the
        next refresh).
        """
        settle = getattr(mbox, "settle", None)
        if settle is None:
            return
        key = mbox.settleKey()
        if key in self._settling:
            return

        def run() -> None:
            d = maybeDeferred(self.runBlocking, settle)

            def done(again: object) -> None:
                del self._settling[key]
                if again is True and attempt < 3:
                    self.settleLater(mbox, attempt + 1)

            def failed(reason: Failure) -> None:
                del self._settling[key]
                self.log.failure("settling a mailbox failed", reason)

            d.addCallbacks(done, failed)

        self._settling[key] = self.clock.callLater(SETTLE_DELAY, run)

    def shutDown(self, grace: float = 10.0) -> Deferred[None]:
        for call in list(self._settling.values()):
            if call.active():
                call.cancel()
        self._settling.clear()
        return super().shutDown(grace)

    def userLogin(self, user: str) -> bool:
        """
        Count a session of C{user}; C{False} (and nothing counted) if that
        would be over C{connectionsPerUser}.
        """
        key = user.lower()
        if self.perUser.get(key, 0) >= self.connectionsPerUser:
            return False
        self.perUser[key] = self.perUser.get(key, 0) + 1
        return True

    def userLogout(self, user: str) -> None:
        key = user.lower()
        left = self.perUser.get(key, 1) - 1
        if left > 0:
            self.perUser[key] = left
        else:
            self.perUser.pop(key, None)

    def buildProtocol(self, addr: Any) -> Protocol:
        host = peerHost(addr)
        if self.overLimit(host, self.connectionsPerPeer, self.peerLimitExempt):
            self.log.info("too many IMAP connections peer={peer}", peer=host)
            refuse = Refuse(b"* BYE [UNAVAILABLE] Too many connections from your address\r\n")
            refuse.factory = self
            return refuse
        protocol = self.protocol(self, contextFactory=None if self.implicitTLS else self.contextFactory)
        return protocol
