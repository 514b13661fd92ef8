# -*- test-case-name: tests.imap.test_mailbox -*-
"""
The IMAP backend over Maildir++: L{MaildirAccount} (Twisted's C{IAccount})
over L{MailStore}, and L{MaildirIMAPMailbox} (C{IMailbox},
C{ISearchableMailbox}, C{IMessageCopier}, C{ICloseableMailbox}) over a
L{FolderIndex}.

B{Sessions and sequence numbers.}  Every session that selects a folder gets
its own L{MaildirIMAPMailbox}; sessions of one process share the folder's
L{FolderIndex} (L{sharedIndex}).  A mailbox's view -- the UID list behind its
sequence numbers -- changes only in L{MaildirIMAPMailbox.refresh} (and in its
own L{expunge}), which the protocol calls where RFC 3501 §7.4.1 lets it
send EXPUNGE (NOOP, IDLE, CHECK, after a command other than FETCH, STORE,
SEARCH).  The view is a reference to the index's UID list, which the index
replaces rather than changes: idle sessions share one list.

B{Listeners} (C{IMailboxListener}) hear, from L{refresh}, C{newMessages}
(EXISTS, RECENT) and C{flagsChanged} ({sequence number: flags}) for
changes by other sessions, POP3, delivery or other tools.  Twisted's
interface has no expunge event: a listener that has a
C{messagesExpunged(seqs)} method gets the sequence numbers to send as
EXPUNGE responses, in the order to send them (each valid when sent).  A
listener that has a C{flagsChangedWithModSeq(changes)} method hears flag
changes there instead, as {sequence number: (flags, UID, mod-sequence)}
(RFC 7162 §3.1: a CONDSTORE client is told the mod-sequence too), and one
that has C{messagesExpungedWithUIDs(seqs, uids)} hears expunges there,
with the UIDs (RFC 7162 §3.2.10: VANISHED).
L{refresh} returns the same as a L{ViewChanges}.

B{Mod-sequences} (RFC 7162 §3.1) come from the index (see
L{mailhub.maildir.index}): L{MaildirIMAPMailbox.getHighestModSeq},
L{MaildirIMAPMailbox.getModSeq} and L{MaildirMessage.getModSeq}.
L{MaildirIMAPMailbox.storeWithModSeq} is STORE with the new mod-sequences
and the conditional form (UNCHANGEDSINCE); the messages of one STORE share
one new mod-sequence per L{STORE_BATCH}.

B{\\Recent} is kept simple: a session that selects a folder read-write
moves every message still in C{new/} to C{cur/} (at select and at each
refresh), and the messages it moved are \\Recent to it alone (one session
wins each rename), as with Dovecot's Maildir.  EXAMINE moves nothing; the
messages in C{new/} are \\Recent to it.  Messages APPENDed or COPYed by
IMAP go straight to C{cur/} and are not \\Recent.

B{What reads files.}  Nothing at select but directory listings (and the
index file on the first select in a process).  Flags, UID, size (for names
with C{,W=}), internal date and counts come from the index.  A message's
file is read by C{getHeaders}, C{getBodyFile}, C{isMultipart},
C{getSubPart}, C{open}, L{MaildirMessage.read}; C{getSize} for a file
without C{,W=} in its name (once); L{MaildirMessage.envelope} and
L{MaildirMessage.bodyStructure} on first use only (then the side store);
SEARCH reads the header for header keys (the L{CACHED_HEADERS} fields only
once, then the side store) and the whole file for BODY and TEXT.  All of it
is blocking; the protocol runs it on a worker thread.

B{Threads.}  The protocol calls one session's L{MaildirIMAPMailbox} from
one worker thread at a time (a session's commands run in order), so its
own state (the view, \\Recent) has no lock; what sessions share is the
L{FolderIndex}, which has one (see L{mailhub.maildir.index}).  Listeners
are called from that worker thread (L{refresh}); the protocol queues those
calls and answers from them on the reactor thread.

Dates: internal dates are kept in whole seconds, UTC; C{getInternalDate}
gives an RFC 2822 date in GMT.
"""

from __future__ import annotations

import bisect
from array import array
import datetime
import email.utils
import io
import re
from typing import Any, Callable, Iterable, Iterator, Sequence

from attrs import frozen
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.mail import imap4
from twisted.python.failure import Failure
from zope.interface import implementer

from mailhub.errors import MailhubError
from mailhub.fs import FileSystem
from mailhub.imap.patterns import patternRegexp
from mailhub.imap.message import _Entity, _fields, _parse, bodyText, headerText, headerValues, splitHeader
from mailhub.imap.search import Node, SearchError, needsHeaders, parseSearch, requiredHeaders, search
from mailhub.maildir.folders import SEPARATOR, FolderError, MailStore
from mailhub.maildir.index import (
    CACHED_HEADERS,
    Changes,
    FolderIndex,
    MessageGone,
    ModifiedSince,
    iterUIDs,
    sharedIndex,
)
from mailhub.maildir.keywords import parseFlags

#: The system flags a client may set (RFC 3501 §2.3.2), as FLAGS lists them.
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")

_RECENT = "\\Recent"

#: A STORE changes this many messages under one hold of the index's lock,
#: and they share one new mod-sequence (see L{FolderIndex.modseqBatch}).
STORE_BATCH = 500

_APPEND_DATE = re.compile(r"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4})\s+(\d\d:\d\d:\d\d)\s+([+-]\d{4})\s*\Z")


class InvalidSearch(imap4.IllegalQueryError, MailhubError):
    """
    SEARCH keys are malformed (C{code} C{None}: answer BAD) or name an
    unsupported charset (C{code} C{"BADCHARSET"}: answer NO).
    """

    def __init__(self, reason: str, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def _name(name: str | bytes) -> str:
    if isinstance(name, bytes):
        return name.decode("imap4-utf-7")
    return name


def parseInternalDate(date: object, default: float) -> float:
    """
    An APPEND date (RFC 3501 C{date-time}, C{"17-Jul-1996 02:44:25
    -0700"}), an RFC 2822 date (what C{getInternalDate} gives, so what
    Twisted's COPY passes), a C{datetime} or seconds, as seconds since
    the epoch; C{default} when C{date} is C{None} or empty.

    @raise ValueError: it is none of these.
    """
    if date is None or date == b"" or date == "":
        return default
    if isinstance(date, (int, float)):
        return float(date)
    if isinstance(date, datetime.datetime):
        return date.timestamp()
    text = date.decode("ascii", "replace") if isinstance(date, bytes) else str(date)
    match = _APPEND_DATE.match(text)
    if match:
        day, month, year, clock, zone = match.groups()
        text = f"{day} {month} {year} {clock} {zone}"
    parsed = email.utils.parsedate_tz(text)
    if parsed is None:
        raise ValueError(f"bad date {text[:40]!r}")
    return float(email.utils.mktime_tz(parsed))


# -- messages ------------------------------------------------------------------------


def _headerDict(header: bytes, negate: bool, names: Sequence[str | bytes]) -> dict[str, str]:
    wanted = {(n.decode("latin-1") if isinstance(n, bytes) else n).lower() for n in names}
    out: dict[str, str] = {}
    for name, raw in _fields(header):
        if name is None or (name in wanted) == negate:
            continue
        value = raw.split(b":", 1)[1].strip(b" \t").rstrip(b"\r\n") if b":" in raw else b""
        if name in out:
            continue  # a dict holds one value per name: the first
        out[name] = value.decode("latin-1")
    return out


@implementer(imap4.IMessagePart)
class MessagePart:
    """
    A MIME part of a message (C{getSubPart}), over bytes already read.
    """

    def __init__(self, entity: _Entity) -> None:
        self._entity = entity

    def getHeaders(self, negate: bool, *names: str | bytes) -> dict[str, str]:
        return _headerDict(self._entity.header, negate, names)

    def getBodyFile(self) -> io.BytesIO:
        return io.BytesIO(self._entity.body)

    def getSize(self) -> int:
        return len(self._entity.body)

    def isMultipart(self) -> bool:
        return bool(self._entity.children)

    def getSubPart(self, part: int) -> "MessagePart":
        if not self._entity.children:
            if self._entity.message is not None:
                return MessagePart(self._entity.message).getSubPart(part)
            raise TypeError("not a multipart")
        return MessagePart(self._entity.children[part])


@implementer(imap4.IMessage, imap4.IMessageFile)
class MaildirMessage:
    """
    One message as a FETCH sees it: index data at once, the file only when
    asked (see the module docstring).

    @ivar seq: its sequence number in the session that fetched it.
    """

    __slots__ = ("_mailbox", "_index", "seq", "uid")

    def __init__(self, mailbox: "MaildirIMAPMailbox", seq: int, uid: int) -> None:
        self._mailbox = mailbox
        self._index = mailbox.index
        self.seq = seq
        self.uid = uid

    def __repr__(self) -> str:
        return f"<MaildirMessage seq={self.seq} uid={self.uid}>"

    # IMessage

    def getUID(self) -> int:
        return self.uid

    def getFlags(self) -> list[str]:
        """
        @raise MessageGone: the message was expunged by another session.
        """
        flags = self._index.flags(self.uid)
        if self.uid in self._mailbox._recent:
            flags.append(_RECENT)
        return flags

    def getInternalDate(self) -> str:
        return email.utils.formatdate(self._index.entry(self.uid).date, usegmt=True)

    def internalDate(self) -> datetime.datetime:
        """
        The internal date as an aware C{datetime} in UTC.
        """
        return datetime.datetime.fromtimestamp(self._index.entry(self.uid).date, datetime.timezone.utc)

    def getSize(self) -> int:
        return self._index.size(self.uid)

    def getModSeq(self) -> int:
        """
        The message's mod-sequence (RFC 7162 §3.1.4.2, FETCH MODSEQ).

        @raise MessageGone: the message was expunged by another session.
        """
        return self._index.modseq(self.uid)

    # IMessagePart (reads the file)

    def getHeaders(self, negate: bool, *names: str | bytes) -> dict[str, str]:
        return _headerDict(self._index.readHeader(self.uid), negate, names)

    def getBodyFile(self) -> io.BytesIO:
        return io.BytesIO(splitHeader(self._index.read(self.uid))[1])

    def isMultipart(self) -> bool:
        return _parse(self._index.readHeader(self.uid)).maintype == "multipart"

    def getSubPart(self, part: int) -> MessagePart:
        return MessagePart(_parse(self._index.read(self.uid))).getSubPart(part)

    # IMessageFile

    def open(self) -> io.BytesIO:
        return io.BytesIO(self._index.read(self.uid))

    # For the protocol: mailhub.imap.message works on these.

    def read(self) -> bytes:
        """
        The whole message, CRLF line ends (what C{BODY[]} sends).
        """
        return self._index.read(self.uid)

    def headerBlock(self) -> bytes:
        """
        The header block, blank line included (reads only the header).
        """
        return self._index.readHeader(self.uid)

    def envelope(self) -> list:
        """
        ENVELOPE, from the side store after the first time.
        """
        return self._index.cachedEnvelope(self.uid)

    def envelopeText(self) -> bytes:
        """
        ENVELOPE as IMAP text (what FETCH sends, without the outer
        parentheses), from the side store after the first time.
        """
        return self._index.cachedEnvelopeText(self.uid)

    def bodyStructure(self) -> list:
        """
        BODYSTRUCTURE (extensible form), from the side store after the first
        time.
        """
        return self._index.cachedBodyStructure(self.uid)


class _SearchView:
    """
    A L{mailhub.imap.search.MessageView} over the index: header fields in
    L{CACHED_HEADERS} come from the side store, the L{SEARCH_HEADERS} ones
    from the index's memory (C{headers}, from L{FolderIndex.searchHeaders}).
    """

    __slots__ = ("seq", "uid", "_mailbox", "_header", "_body", "_flags", "_headers")

    def __init__(
        self,
        mailbox: "MaildirIMAPMailbox",
        seq: int,
        uid: int,
        headers: Callable[[int, str], Sequence[bytes] | None] | None = None,
    ) -> None:
        self.seq = seq
        self.uid = uid
        self._mailbox = mailbox
        self._headers = headers
        self._header: bytes | None = None
        self._body: str | None = None
        self._flags: frozenset | None = None

    @property
    def flags(self) -> frozenset:
        if self._flags is None:
            flags = self._mailbox.index.flags(self.uid)
            if self.uid in self._mailbox._recent:
                flags.append(_RECENT)
            self._flags = frozenset(flags)
        return self._flags

    @property
    def internalDate(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._mailbox.index.entry(self.uid).date, datetime.timezone.utc)

    @property
    def modseq(self) -> int:
        return self._mailbox.index.modseq(self.uid)

    @property
    def size(self) -> int:
        return self._mailbox.index.size(self.uid)

    def _headerBlock(self) -> bytes:
        if self._header is None:
            self._header = self._mailbox.index.readHeader(self.uid)
        return self._header

    def headerValues(self, name: str) -> Sequence[bytes]:
        name = name.lower()
        if name in CACHED_HEADERS and self._header is None:
            if self._headers is not None:
                values = self._headers(self.uid, name)
                if values is not None:
                    return values
            return self._mailbox.index.cachedHeader(self.uid, name)
        return headerValues(self._headerBlock(), name)

    def headerText(self) -> str:
        return headerText(self._headerBlock())

    def bodyText(self) -> str:
        if self._body is None:
            self._body = bodyText(self._mailbox.index.read(self.uid))
        return self._body


# -- the mailbox -----------------------------------------------------------------------


@frozen
class ViewChanges:
    """
    What a session must tell its client after L{MaildirIMAPMailbox.refresh}.

    @ivar expunged: sequence numbers for EXPUNGE responses, in the order to
        send them (each valid at the moment it is sent).
    @ivar exists: the new message count, or C{None} if unchanged.
    @ivar recent: the new \\Recent count, or C{None} if unchanged.
    @ivar flags: {sequence number (after the expunges): flags} for
        messages whose flags another session changed.
    @ivar uidValidityChanged: the UID list was lost and rebuilt: the
        client must resynchronise (the protocol should close the mailbox).
    @ivar modseqs: {sequence number: (UID, mod-sequence)} for the messages
        of C{flags}.
    @ivar vanished: the UIDs of the messages of C{expunged}, ascending.
    """

    expunged: tuple[int, ...] = ()
    exists: int | None = None
    recent: int | None = None
    flags: dict = {}
    uidValidityChanged: bool = False
    modseqs: dict = {}
    vanished: tuple[int, ...] = ()


@frozen
class StoreResult:
    """
    What L{MaildirIMAPMailbox.storeWithModSeq} did.

    @ivar flags: {sequence number: flags now} for each message the STORE
        applied to (changed or not), as C{store} returns.
    @ivar modseqs: {sequence number: mod-sequence now} for the same.
    @ivar modified: sequence numbers of the messages that failed the
        UNCHANGEDSINCE test (RFC 7162 §3.1.3), ascending.
    """

    flags: dict
    modseqs: dict
    modified: tuple[int, ...] = ()


def _expungeOrder(positions: Iterable[int]) -> tuple[int, ...]:
    """
    Sequence numbers (1-based, before any expunge) as EXPUNGE responses
    numbering them after the earlier ones were sent (RFC 3501 §7.4.1).
    """
    return tuple(seq - i for i, seq in enumerate(sorted(positions)))


@implementer(imap4.IMailbox, imap4.ISearchableMailbox, imap4.IMessageCopier, imap4.ICloseableMailbox)
class MaildirIMAPMailbox:
    """
    One session's view of one folder.

    @param index: the folder's index (shared between sessions).
    @param name: the folder's IMAP name.
    @param readWrite: C{False} for EXAMINE: STORE, EXPUNGE, APPEND and COPY
        into it are refused with C{ReadOnlyMailbox}, and nothing on disk
        changes (not even C{new/} to C{cur/}).
    @param specialUse: the RFC 6154 attribute, if any.
    @param clock: the time (APPEND without a date).
    """

    log = Logger()

    def __init__(
        self,
        index: FolderIndex,
        name: str,
        readWrite: bool = True,
        specialUse: str | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self.index = index
        self.name = name
        self.readWrite = readWrite
        self.specialUse = specialUse
        self._clock = clock
        self._listeners: list[Any] = []
        self._recent: set[int] = set()
        index.refresh()
        self._uids: Sequence[int] = index.uids()
        self._generation = index.generation
        self._uidValidity = index.uidValidity
        # \Recent is taken when the session first looks at its view
        # (SELECT asks for the count), not here: APPEND and COPY open their
        # target too, and must leave \Recent to the next SELECT.
        self._claimPending = True

    def _claimRecent(self) -> bool:
        """
        Take the messages still in C{new/} as \\Recent (see the module
        docstring).

        @return: whether the \\Recent set changed.
        """
        self._claimPending = False
        before = len(self._recent)
        if self.readWrite:
            self._recent.update(self.index.claimNew())
        else:
            self._recent.update(self.index.newUIDs())
        return len(self._recent) != before

    # IMailboxInfo

    def getFlags(self) -> list[str]:
        """
        The system flags and the folder's keywords (FLAGS).
        """
        with self.index.lock:  # the keyword file may be re-read meanwhile
            return list(SYSTEM_FLAGS) + sorted(self.index.keywords.keywords())

    def getHierarchicalDelimiter(self) -> str:
        return SEPARATOR

    # IMailbox

    def getUIDValidity(self) -> int:
        assert self._uidValidity is not None
        return self._uidValidity

    def getUIDNext(self) -> int:
        return self.index.nextUID

    def getHighestModSeq(self) -> int:
        """
        HIGHESTMODSEQ (RFC 7162 §3.1.2.1, §3.1.7): the largest mod-sequence
        of the folder, as last seen by the index.
        """
        return self.index.highestModseq

    def getModSeq(self, message: int) -> int:
        """
        The mod-sequence of sequence number C{message} in this session's
        view.

        @raise IndexError: no such message.
        @raise MessageGone: it was expunged by another session.
        """
        return self.index.modseq(self.getUID(message))

    def getUID(self, message: int) -> int:
        """
        The UID of sequence number C{message} in this session's view.

        @raise IndexError: no such message.
        """
        if not 1 <= message <= len(self._uids):
            raise IndexError(message)
        return self._uids[message - 1]

    def getMessageCount(self) -> int:
        return len(self._uids)

    def _view(self) -> None:
        """
        Take \\Recent now if the session has not looked at its view yet.
        """
        if self._claimPending:
            self._claimRecent()

    def needsWarming(self) -> bool:
        """
        Whether the folder's index was only partly read (a SELECT after a
        restart): L{warm} should follow, on a worker thread.
        """
        return self.index.partlyRead

    def warm(self) -> None:
        """
        Read the rest of the folder's index now (blocking), so that the
        session's next command does not wait for it.
        """
        self.index.materialise()

    def settleKey(self) -> object:
        """
        What L{settle} works on (the folder's index, shared by sessions):
        one L{settle} at a time per key is enough.
        """
        return self.index

    def settle(self) -> bool:
        """
        Blocking: see L{FolderIndex.settle}.
        """
        return self.index.settle()

    def getRecentCount(self) -> int:
        self._view()
        return len(self._recent)

    def getUnseenCount(self) -> int:
        """
        Messages without \\Seen (from the file names in the index; counted
        once per change when this session is up to date).
        """
        if self._uids is self.index.uids():
            return self.index.unseenCount()
        unseen = 0
        for uid in self._uids:
            try:
                name = self.index.entry(uid).name
            except MessageGone:
                continue
            if "S" not in parseFlags(name)[1]:
                unseen += 1
        return unseen

    def firstUnseen(self) -> int | None:
        """
        The sequence number of the first message without \\Seen (the
        UNSEEN response code of SELECT), or C{None}.
        """
        for seq, uid in enumerate(self._uids, 1):
            try:
                name = self.index.entry(uid).name
            except MessageGone:
                continue
            if "S" not in parseFlags(name)[1]:
                return seq
        return None

    def isWriteable(self) -> bool:
        return self.readWrite

    def destroy(self) -> None:
        """
        Nothing to do: L{MaildirAccount.delete} removes the folder.
        """

    def requestStatus(self, names: Iterable[str]) -> dict:
        return imap4.statusRequestHelper(self, names)

    def addListener(self, listener: Any) -> None:
        self._listeners.append(listener)

    def removeListener(self, listener: Any) -> None:
        self._listeners.remove(listener)

    # Refresh and notifications

    def refresh(self) -> ViewChanges:
        """
        Look at the folder again and bring this session's view up to date
        (see the module docstring): listeners are told, and the same is
        returned.
        """
        self._view()
        self.index.refresh()
        changes = self.index.changesSince(self._generation, owner=self)
        newUids = self.index.uids()
        if changes is None:
            old, new = set(self._uids), set(newUids)
            changes = Changes(tuple(sorted(new - old)), tuple(sorted(old - new)), tuple(sorted(new & old)))
        self._generation = self.index.generation
        oldUids = self._uids
        reset = changes.reset or self.index.uidValidity != self._uidValidity
        if reset:
            self._uidValidity = self.index.uidValidity
        expunged: tuple[int, ...] = ()
        vanished: tuple[int, ...] = ()
        gone = set(changes.removed)
        if gone or reset:
            positions = []
            for uid in (oldUids if reset else sorted(gone)):
                at = bisect.bisect_left(oldUids, uid)
                if at < len(oldUids) and oldUids[at] == uid:
                    positions.append(at + 1)
            expunged = _expungeOrder(positions)
            vanished = tuple(oldUids[p - 1] for p in positions)
            self._recent.difference_update(gone)
        self._uids = newUids
        recentBefore = len(self._recent)
        self._claimRecent()
        flags: dict[int, list[str]] = {}
        modseqs: dict[int, tuple[int, int]] = {}
        if changes.flagsChanged:
            for uid in changes.flagsChanged:
                at = bisect.bisect_left(newUids, uid)
                if at < len(newUids) and newUids[at] == uid:
                    try:
                        with self.index.lock:  # flags and mod-sequence of one moment
                            flags[at + 1] = MaildirMessage(self, at + 1, uid).getFlags()
                            modseqs[at + 1] = (uid, self.index.modseq(uid))
                    except MessageGone:
                        pass
        exists = len(newUids) if (changes.added or expunged or len(newUids) != len(oldUids)) else None
        recent = len(self._recent) if (exists is not None or len(self._recent) != recentBefore) else None
        result = ViewChanges(expunged, exists, recent, flags, reset, modseqs, vanished)
        self._notify(result)
        return result

    def _notify(self, changes: ViewChanges) -> None:
        for listener in list(self._listeners):
            try:
                if changes.expunged:
                    withUIDs = getattr(listener, "messagesExpungedWithUIDs", None)
                    expunged = getattr(listener, "messagesExpunged", None)
                    if withUIDs is not None:
                        withUIDs(list(changes.expunged), list(changes.vanished))
                    elif expunged is not None:
                        expunged(list(changes.expunged))
                if changes.exists is not None or changes.recent is not None:
                    listener.newMessages(changes.exists, changes.recent)
                if changes.flags:
                    withModSeq = getattr(listener, "flagsChangedWithModSeq", None)
                    if withModSeq is not None:
                        withModSeq({seq: (flags, *changes.modseqs[seq]) for seq, flags in changes.flags.items()})
                    else:
                        listener.flagsChanged(dict(changes.flags))
            except Exception:
                self.log.failure("listener {listener!r} failed", listener=listener)

    # Messages

    def _resolve(self, messages: imap4.MessageSet, uid: bool) -> Iterator[tuple[int, int]]:
        """
        C{(seq, uid)} for a message set, C{*} being the last message (RFC
        3501 §6.4.8: C{UID n:*} includes the last message even when n is
        above its UID).
        """
        uids = self._uids
        if not uids:
            return
        last = uids[-1] if uid else len(uids)
        ranges = []
        for low, high in messages.ranges:
            low = last if low is None else low
            high = last if high is None else high
            if low > high:
                low, high = high, low
            ranges.append((int(low), int(min(high, 2**32))))
        ranges.sort()
        if uid:
            yield from iterUIDs(uids, ranges)
            return
        done = 0
        for low, high in ranges:
            for seq in range(max(low, done + 1, 1), min(high, len(uids)) + 1):
                yield seq, uids[seq - 1]
                done = seq

    def fetch(self, messages: imap4.MessageSet, uid: bool) -> Iterator[tuple[int, MaildirMessage]]:
        """
        C{(sequence number, message)} for each message of the set, in
        ascending order, made from the index (no file is read here).
        """
        self._view()
        view = self  # bind now: the iterator may run later
        return ((seq, MaildirMessage(view, seq, u)) for seq, u in list(self._resolve(messages, uid)))

    def _writeable(self) -> None:
        if not self.readWrite:
            raise imap4.ReadOnlyMailbox()

    def store(self, messages: imap4.MessageSet, flags: Iterable[str | bytes], mode: int, uid: bool) -> dict[int, list[str]]:
        """
        Set (C{mode} 0), add (1) or remove (-1) flags; keywords are flags
        without a backslash.  A message another session expunged meanwhile
        is left out of the result.

        @return: {sequence number: flags now}.
        @raise ReadOnlyMailbox: the mailbox was EXAMINEd.
        """
        return self.storeWithModSeq(messages, flags, mode, uid).flags

    def storeWithModSeq(
        self,
        messages: imap4.MessageSet,
        flags: Iterable[str | bytes],
        mode: int,
        uid: bool,
        unchangedSince: int | None = None,
    ) -> StoreResult:
        """
        L{store}, telling the mod-sequences too; with C{unchangedSince},
        the conditional STORE of RFC 7162 §3.1.3: a message whose
        mod-sequence is above it is left unchanged and listed in
        C{modified}.  The test and the change are one step for each message
        (under the index's lock), so no other session's change slips
        between them.

        @return: a L{StoreResult}.
        @raise ReadOnlyMailbox: the mailbox was EXAMINEd.
        """
        self._writeable()
        self._view()
        names = [f.decode("ascii") if isinstance(f, bytes) else f for f in flags]
        keywords = [f for f in names if not f.startswith("\\")]
        result: dict[int, list[str]] = {}
        modseqs: dict[int, int] = {}
        modified: list[int] = []
        pairs = list(self._resolve(messages, uid))
        index = self.index
        if unchangedSince is not None:
            # The test is against the folder as it is: see what other
            # processes and tools changed.
            index.refresh()
        for start in range(0, len(pairs), STORE_BATCH):
            with index.modseqBatch():
                for seq, u in pairs[start : start + STORE_BATCH]:
                    try:
                        if mode == 0:
                            now = index.setFlags(u, names, keywords, owner=self, unchangedSince=unchangedSince)
                        elif mode > 0:
                            now = index.changeFlags(u, add=names, owner=self, unchangedSince=unchangedSince)
                        else:
                            now = index.changeFlags(u, remove=names, owner=self, unchangedSince=unchangedSince)
                        modseqs[seq] = index.modseq(u)
                    except MessageGone:
                        continue
                    except ModifiedSince:
                        modified.append(seq)
                        continue
                    if u in self._recent:
                        now.append(_RECENT)
                    result[seq] = now
        return StoreResult(result, modseqs, tuple(modified))

    def expunge(self) -> list[int]:
        """
        Remove the messages flagged \\Deleted (in this session's view).

        @return: sequence numbers for EXPUNGE responses, in the order to
            send them.
        @raise ReadOnlyMailbox: the mailbox was EXAMINEd.
        """
        self._writeable()
        deleted = []
        for uid in self._uids:
            try:
                name = self.index.entry(uid).name
            except MessageGone:
                continue
            if "T" in parseFlags(name)[1]:
                deleted.append(uid)
        return self.expungeUIDs(deleted)

    def expungeUIDs(self, uids: Iterable[int]) -> list[int]:
        """
        UID EXPUNGE (RFC 4315): remove those of C{uids} that are flagged
        \\Deleted... or, as called by L{expunge}, exactly these.

        @return: as L{expunge}.
        """
        return self._expungeUIDs(uids)[0]

    def vanishUIDs(self, uids: Iterable[int]) -> list[int]:
        """
        L{expungeUIDs}, answering the UIDs removed from this session's
        view, ascending (RFC 7162 §3.2.10: VANISHED).
        """
        return self._expungeUIDs(uids)[1]

    def getUIDList(self) -> list[int]:
        """
        Every UID of this session's view, ascending.
        """
        return self._uids.tolist() if isinstance(self._uids, (array, memoryview)) else list(self._uids)

    def _expungeUIDs(self, uids: Iterable[int]) -> tuple[list[int], list[int]]:
        self._writeable()
        wanted = set(uids)
        self.index.expunge(wanted)
        # Our own expunges are answered now, as the command's responses;
        # other changes wait for refresh().
        old = self._uids
        positions = []
        for uid in sorted(wanted):
            at = bisect.bisect_left(old, uid)
            if at < len(old) and old[at] == uid:
                positions.append(at + 1)
        removed = set(old[p - 1] for p in positions)
        self._uids = [u for u in old if u not in removed]
        self._recent.difference_update(removed)
        return list(_expungeOrder(positions)), [old[p - 1] for p in positions]

    def addMessage(self, message: Any, flags: Iterable[str | bytes] = (), date: object = None) -> Deferred[int]:
        """
        APPEND: store C{message} (a file or bytes) with C{flags} and
        internal date C{date} (see L{parseInternalDate}).  Works
        synchronously; the result is a L{Deferred} because Twisted's server
        expects one.

        @return: a Deferred firing with the new UID.
        """
        try:
            return succeed(self.append(message, flags, date))
        except Exception:
            return fail(Failure())

    def append(self, message: Any, flags: Iterable[str | bytes] = (), date: object = None) -> int:
        """
        L{addMessage} without the Deferred.

        @raise ReadOnlyMailbox: the mailbox was EXAMINEd.
        @raise ValueError: a bad date.
        """
        self._writeable()
        if hasattr(message, "read"):
            data = message.read()
        else:
            data = bytes(message)
        names = [f.decode("ascii") if isinstance(f, bytes) else f for f in flags]
        when = None if date in (None, b"", "") else parseInternalDate(date, 0.0)
        return self.index.append(data, [f for f in names if f.startswith("\\")], when, [f for f in names if not f.startswith("\\")])

    def copy(self, messageObject: Any) -> int:
        """
        IMessageCopier: copy a message (a L{MaildirMessage} from any
        folder: hard-linked; another kind: its bytes) into this folder.

        @return: its UID here.
        """
        self._writeable()
        if isinstance(messageObject, MaildirMessage):
            return messageObject._index.copy([messageObject.uid], self.index)[0]
        source = imap4.IMessageFile(messageObject, None)
        data = source.open().read() if source is not None else b""
        return self.append(data, list(messageObject.getFlags()), messageObject.getInternalDate())

    def copyMessages(self, source: "MaildirIMAPMailbox", messages: imap4.MessageSet, uid: bool) -> list[tuple[int, int]]:
        """
        COPY in one step (for COPYUID, RFC 4315): every message of the set
        in C{source} (this session's view of it) into this folder.

        @return: C{(source UID, new UID)} pairs.
        """
        self._writeable()
        uids = [u for _, u in source._resolve(messages, uid)]
        return list(zip(uids, source.index.copy(uids, self.index)))

    # SEARCH

    def search(self, query: Any, uid: bool = False) -> list[int]:
        """
        SEARCH: C{query} is Twisted's token list (what IMAP4Server passes:
        nested lists of C{bytes}; C{CHARSET} already taken off, or still on)
        or a parsed L{Node}.

        @return: matching I{sequence numbers}, ascending, whatever C{uid}
            says: Twisted's server maps them to UIDs itself for UID SEARCH
            (with L{getUID}).
        @raise InvalidSearch: the keys are malformed or the charset unknown.
        """
        if isinstance(query, Node):
            node = query
        else:
            try:
                node = parseSearch(query)
            except SearchError as e:
                raise InvalidSearch(e.reason, e.code) from e
        self._view()
        uids = self._uids
        headers = self.index.searchHeaders() if needsHeaders(node) else None
        within = None
        if headers is not None:
            # Ask the in-memory header columns which messages may match a
            # header key the search requires (SUBJECT x...): only those are
            # looked at one by one.
            possible = None
            for key in requiredHeaders(node):
                found = self.index.headerCandidates(key.name, key.value)
                if found is not None:
                    possible = found if possible is None else possible & found
            if possible is not None:
                within = []
                for uid in sorted(possible):
                    at = bisect.bisect_left(uids, uid)
                    if at < len(uids) and uids[at] == uid:
                        within.append(at + 1)
        return search(node, uids, lambda seq: _SearchView(self, seq, uids[seq - 1], headers), within)

    def searchUIDs(self, query: Any) -> list[int]:
        """
        L{search}, answering UIDs.
        """
        return [self._uids[seq - 1] for seq in self.search(query)]

    # ICloseableMailbox

    def close(self) -> None:
        """
        Forget the listeners and save the index if it changed.
        """
        self._listeners = []
        self.index.close()


# -- the account -------------------------------------------------------------------------------


@implementer(imap4.IMailboxInfo)
class MailboxInfo:
    """
    What LIST says of a folder: its attributes.
    """

    def __init__(self, attributes: Iterable[str]) -> None:
        self._attributes = sorted(attributes)

    def getFlags(self) -> list[str]:
        return list(self._attributes)

    def getHierarchicalDelimiter(self) -> str:
        return SEPARATOR


@implementer(imap4.IAccount, imap4.INamespacePresenter)
class MaildirAccount:
    """
    One user's folders, for IMAP.  The first login makes INBOX and the
    special-use folders (L{MailStore.ensureDefaults}).

    Folder errors are raised as Twisted's C{MailboxException} (whose text
    is the reason, safe to send) or C{MailboxCollision}.

    @param root: the user's Maildir.
    @param fs: the file operations.
    @param clock: the time.
    @param indexFor: makes a folder's index; the default shares one per
        folder in the process.
    """

    log = Logger()

    def __init__(
        self,
        root: str,
        *,
        fs: FileSystem | None = None,
        clock: IReactorTime | None = None,
        indexFor: Any = None,
    ) -> None:
        self.store = MailStore(root, fs)
        self._fs = fs
        self._clock = clock
        self._indexFor = indexFor if indexFor is not None else (lambda path: sharedIndex(path, fs, clock))
        self.store.ensureDefaults()

    def _fail(self, error: FolderError) -> imap4.MailboxException:
        if error.reason == "folder exists":
            return imap4.MailboxCollision(error.name)
        if error.reason == "no such folder":
            return imap4.NoSuchMailbox(error.name)
        return imap4.MailboxException(f"{error.name}: {error.reason}")

    def addMailbox(self, name: str | bytes, mbox: Any = None) -> bool:
        """
        Create folder C{name}; a given C{mbox} is not supported.
        """
        if mbox is not None:
            raise imap4.MailboxException("cannot add a foreign mailbox")
        try:
            self.store.create(_name(name))
        except FolderError as e:
            raise self._fail(e) from None
        return True

    def create(self, pathspec: str | bytes) -> bool:
        """
        CREATE (RFC 3501 §6.3.3): a trailing separator is dropped; parents
        are not created (Maildir++ needs none: they list as \\Noselect).
        """
        name = _name(pathspec)
        if name.endswith(SEPARATOR):
            name = name.rstrip(SEPARATOR)
        return self.addMailbox(name)

    def select(self, name: str | bytes, rw: bool = True) -> MaildirIMAPMailbox | None:
        """
        SELECT (C{rw}) or EXAMINE: the folder's mailbox, or C{None} if it
        does not exist or the name is refused.
        """
        try:
            name = _name(name)
            if not self.store.exists(name):
                return None
            path = self.store.path(name)
        except (FolderError, UnicodeError):
            return None
        canonical = SEPARATOR.join(["INBOX"] + name.split(SEPARATOR)[1:]) if name.split(SEPARATOR)[0].upper() == "INBOX" else name
        return MaildirIMAPMailbox(
            self._indexFor(path), canonical, bool(rw), self.store.specialUse(canonical), self._clock
        )

    def delete(self, name: str | bytes) -> bool:
        try:
            self.store.delete(_name(name))
        except FolderError as e:
            raise self._fail(e) from None
        return True

    def rename(self, oldname: str | bytes, newname: str | bytes) -> bool:
        try:
            self.store.rename(_name(oldname), _name(newname))
        except FolderError as e:
            raise self._fail(e) from None
        return True

    def isSubscribed(self, name: str | bytes) -> bool:
        try:
            wanted = SEPARATOR.join(self._components(name))
        except FolderError:
            return False
        return wanted in self.store.subscribed()

    def _components(self, name: str | bytes) -> list[str]:
        from mailhub.maildir.folders import validateName

        return validateName(_name(name))

    def subscribe(self, name: str | bytes) -> bool:
        try:
            self.store.subscribe(_name(name))
        except FolderError as e:
            raise self._fail(e) from None
        return True

    def unsubscribe(self, name: str | bytes) -> bool:
        try:
            self.store.unsubscribe(_name(name))
        except FolderError as e:
            raise self._fail(e) from None
        return True

    def subscriptions(self) -> list[str]:
        """
        Every subscribed name, whether or not the folder exists (LIST
        (SUBSCRIBED), RFC 5258 §3).
        """
        return list(self.store.subscribed())

    def listMailboxes(self, ref: str | bytes, wildcard: str | bytes) -> list[tuple[str, MailboxInfo]]:
        """
        LIST (RFC 3501 §6.3.8): folders matching C{ref} + C{wildcard}
        (C{*} any characters, C{%} any but the separator; INBOX in any
        case), with C{\\HasChildren}/C{\\HasNoChildren}, C{\\Noselect}
        and SPECIAL-USE attributes.
        """
        pattern = _name(ref) + _name(wildcard)
        regexp = _wildcard(pattern)
        inboxRegexp = _wildcard(_upperInbox(pattern))
        found = []
        for name, attributes in self.store.list():
            isInbox = name == "INBOX" or name.startswith("INBOX" + SEPARATOR)
            if regexp.fullmatch(name) or (isInbox and inboxRegexp.fullmatch(name)):
                found.append((name, MailboxInfo(attributes)))
        return found

    # INamespacePresenter (RFC 2342)

    def getPersonalNamespaces(self) -> list[list[str]]:
        return [["", SEPARATOR]]

    def getSharedNamespaces(self) -> None:
        return None

    def getOtherNamespaces(self) -> None:
        return None

    def getUserNamespaces(self) -> None:
        return None


def _wildcard(pattern: str) -> "re.Pattern[str]":
    """
    A LIST pattern over our folder names (L{patternRegexp} with our separator).
    """
    return patternRegexp(pattern, SEPARATOR)


def _upperInbox(pattern: str) -> str:
    head, sep, rest = pattern.partition(SEPARATOR)
    if head.upper() == "INBOX":
        return "INBOX" + sep + rest
    return pattern


__all__ = [
    "InvalidSearch",
    "MailboxInfo",
    "MaildirAccount",
    "MaildirIMAPMailbox",
    "MaildirMessage",
    "MessagePart",
    "STORE_BATCH",
    "SYSTEM_FLAGS",
    "StoreResult",
    "ViewChanges",
    "parseInternalDate",
]
