# -*- test-case-name: tests.maildir.test_index,tests.maildir.test_index_folder_gone -*-
"""
A per-folder index of a Maildir: for every UID the message's base name,
its current file name (so its flags), its size and internal date; and a
side store of cached ENVELOPE, BODYSTRUCTURE and a few header fields.

Both files are caches.  The truth is the folder (C{new/}, C{cur/}), the UID
list (L{mailhub.maildir.uidlist}) and the keyword file; a missing, foreign
or corrupt index is rebuilt from them, and the UIDs stay what the UID list
says.

B{Files}, in the folder's directory:

  - C{mailhub-index}: a header line C{MHIX 4 UIDVALIDITY NEWSTAMP
    CURSTAMP COUNT UIDLIST UIDNEXT CACHE HIGHESTMODSEQ CEILING INNEW UIDCRC
    CRC}; then the UIDs in order, four octets each (unsigned,
    little-endian); then one line per column, the messages in UID order,
    numbers as big-endian 64-bit values in hexadecimal, one after the
    other: sizes (C{-1} while unknown), internal dates, the directories as
    one string of C{n} and C{c}, mod-sequences (see "Mod-sequences"
    below), and for each side store kind (C{e}, C{s}, C{h}, C{E}) where
    the message's record is (C{offset << 32 | length}, C{-1} for none);
    then the file names, one per line (a name holding a tab, a line end or
    C{%} percent-encoded).  C{UIDLIST} is the UID list's stat signature
    (C{INO:SIZE:MTIME}) when this index was last in step with it, and
    C{UIDNEXT} its next UID then: while the list still has that signature
    a load does not read it.  C{CACHE} is C{INO:END}, the
    side store and how far its records are known (C{-}: none).  C{INNEW}
    counts the messages in C{new/}; C{UIDCRC} is the CRC-32 of the UIDs,
    C{CRC} that of the columns after them.  A load reads the header and
    the UIDs only (no object per message: about a millisecond at 100,000
    messages), which is all a SELECT of a folder unchanged since needs;
    the columns are read, from the same descriptor, when an entry is first
    needed (a refresh that finds a change, a FETCH) or by
    L{FolderIndex.materialise}, which the IMAP server runs on a worker
    thread as soon as it has answered such a SELECT: a few C{split}s and
    C{bytes.fromhex} in C, and an object per message (about 0.2 s at
    100,000 messages).  A bad column found then is forgotten and rebuilt
    like a bad file at load.  Replaced whole (temporary
    file, rename; no fsync: it is a cache) by L{FolderIndex.save}, which
    L{FolderIndex.refresh} calls when there was a change and
    L{SAVE_INTERVAL} has passed since the last save, and
    L{FolderIndex.close} when it changed (or learnt of
    L{SAVE_CACHE_GROWTH} octets of side store records).  Any other file
    (an older version, a cut or damaged one) is rebuilt.
  - C{mailhub-cache}: append-only lines C{BASE KIND JSON} (tabs), C{KIND}
    C{e} (ENVELOPE), C{E} (ENVELOPE as the IMAP text FETCH sends), C{s}
    (BODYSTRUCTURE) or C{h} (the raw values of L{CACHED_HEADERS}).  IMAP strings are stored as JSON strings holding
    the octets as latin-1, so the side store holds no pickle and no
    executable form.  Only where each record is is kept in memory (and in
    the index file); a record is read with one C{pread} when it is asked
    for.  Lines other processes append are picked up by reading from the
    last known end; a record this index appends is noted as it is written.

B{Refresh} (L{FolderIndex.refresh}) costs, with nothing changed, one
C{stat} of C{new/}, of C{cur/} and of the UID list.  A directory whose
mtime is what it was at the last listing, and was already older than
L{SETTLE_SECONDS} then, is not listed again (Dovecot's rule: a directory
changed within the same clock tick could change again unnoticed).  When
this index's own claim of C{new/} (L{FolderIndex.claimNew}) renamed into a
C{cur/} it knew, C{cur/}'s new mtime is taken as known too, provisionally:
another process's change in that same moment could hide behind it, so
such a directory is listed by the next L{FolderIndex.settle} (which the
IMAP server runs a little over a second after a command) and saved as
unknown.  So N new
deliveries cost a listing of C{new/} and O(N) work here, and the UID list
is handed only the new and gone names (L{UIDList.assign}: O(N), the new
records appended).  Only when the UID list changed on disk in a way this
index did not cause (its stat signature is not the one this index left
it with: another process wrote it, dropped and re-added names, or started
it again with a new UIDVALIDITY), or this index has not synced with it
yet, is it given every name (L{UIDList.sync}: set operations over the
whole folder, 25-45 ms at 100,000 messages), so that UIDs changed behind
this index's back are noticed.  A listing reads names only; a file is
stat'ed only when its name has no leading delivery time (for the internal
date), and read only when its name has no C{,W=} size and its size is asked
for (bare-LF files: RFC822.SIZE counts CRLF line ends).

B{Mod-sequences} (RFC 7162 §3.1).  Every message has one, kept in the
index: a refresh gives the messages it finds new or with changed flags
(however they changed: another session, POP3, another Maildir tool's
rename) one new mod-sequence, and so does a refresh that finds messages
gone (an expunge); a flag change made here (L{setFlags}, L{changeFlags})
gives the message a new one.  L{highestModseq} is the largest given.
Values come from the folder's L{ModseqCounter}, which keeps only a
reserved CEILING durably (C{mailhub-modseq}; see
L{mailhub.maildir.modseq}), so a change costs no fsync.  The index saves
the mod-sequences with the CEILING of the moment and then retires the
counter's block, so the next value raises CEILING first; a loaded index
whose CEILING is still the one in the state file was saved after the last
value was handed out, and its mod-sequences are the truth.  Any other
index (saved before a crash, version 1, foreign) or none at all is
rebuilt with one new mod-sequence, above anything handed out before, for
every message: HIGHESTMODSEQ never goes back, and a client that asks for
changes since a value it knows hears of every message (RFC 7162 §3.1.4.1)
instead of missing one.  Costs: O(changes) per refresh and per STORE,
one durable write per L{mailhub.maildir.modseq.MODSEQ_BLOCK} values or
per save of the index, and O(folder) only when the index is rebuilt, as
before.

B{Sizes} are RFC822.SIZE: C{,W=} from the name, else computed on demand.
B{Internal dates} are the name's leading seconds (UTC) when it has them,
else the file's mtime; L{FolderIndex.append} names a message after its
internal date so that a rebuilt index finds the date again without a stat.

All of this is blocking file-system work, meant for a worker thread.  One
L{FolderIndex} may be shared by every session of a process
(L{sharedIndex}), whose commands run on several worker threads at once.

B{The lock.}  Each L{FolderIndex} has one re-entrant lock,
L{FolderIndex.lock}.  It is held by everything that reads or changes the
in-memory state (entries, the UID list, the change log, the side store's
offsets and descriptor, the keyword letters, the name counter, the
mod-sequence counter) and by
everything that renames or unlinks a message file: L{refresh} (listings
and UID list update included), L{uids}, L{entry}, L{path}, L{flags},
L{claimNew}, L{expunge}, L{setFlags}/L{changeFlags}, the index half of
L{append} and L{copy} (writing the new files into C{tmp/} is not: their
names are unique), L{save}, L{close}, L{open}.  Reading a message's
octets (L{read}, L{readHeader}) and computing ENVELOPE or BODYSTRUCTURE
happen outside it, on a descriptor opened under it.  What L{uids}
returns is never changed afterwards (the index replaces the list), so a
session may read its snapshot without the lock.  An L{IndexEntry} is
changed in place (C{sub} and C{name} on a rename): read both under the
lock.  It is a lock between threads of one process; other processes (delivery,
POP3 in another process, other tools) are coped with as before (renames
followed by L{_relocate}, the UID list's own file lock).  A refresh of a
large folder holds the lock for its whole length (up to a second at
100,000 messages), so the reactor thread must never call into the index:
the IMAP server runs every call on a worker thread.  Two indexes' locks
are never held together (L{copy} releases the source's before taking the
target's), so there is no lock order to get wrong.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import json
import mmap
import operator
import os
import secrets
import socket
import sys
import threading
import weakref
import zlib
from array import array
from collections import OrderedDict, deque
from itertools import accumulate, islice
from typing import Callable, Iterable, Iterator, Sequence
from urllib.parse import quote, unquote

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mailhub.errors import MailboxGone, MailhubError, MessageExpunged
from mailhub.fs import FileSystem
from mailhub.imap.message import _fields, _unfold, bodyStructure, envelope, nestedList, splitHeader, toCRLF
from mailhub.maildir.keywords import Keywords, parseFlags, withFlags
from mailhub.maildir.modseq import ModseqCounter
from mailhub.maildir.names import UniqueNames
from mailhub.maildir.uidlist import UIDList, UIDListLocked, _SystemClock, readFile

#: The index file's name, in the folder's directory.
INDEX_NAME = "mailhub-index"

#: The side store's name, in the folder's directory.
CACHE_NAME = "mailhub-cache"

_MAGIC = "MHIX"
_VERSION = "4"


#: Header fields whose raw values the side store keeps (what SEARCH and
#: clients' header fetches ask for most).
CACHED_HEADERS = ("from", "to", "cc", "bcc", "subject", "date", "message-id", "in-reply-to", "references")

#: The L{CACHED_HEADERS} fields SEARCH asks for most, kept in memory per
#: folder (L{FolderIndex.searchHeaders}) so that a warm SEARCH parses no
#: JSON per message.
SEARCH_HEADERS = ("subject", "from", "to", "cc", "bcc", "date", "message-id")

#: A directory changed less than this many seconds before it was listed is
#: listed again next time, even if its mtime has not changed since (the
#: value Dovecot's Maildir code uses, MAILDIR_SYNC_SECS: well above the
#: timestamp granularity of Linux file systems, a few milliseconds).
SETTLE_SECONDS = 1.0

#: A refresh that finds changes saves the index when this many seconds
#: passed since the last save, or L{SAVE_CHANGES} changes are unsaved; a
#: save rewrites the whole file (0.2 s at 100,000 messages), so it stays
#: off the common path.  L{FolderIndex.close} saves too.
SAVE_INTERVAL = 300.0

#: See L{SAVE_INTERVAL}.
SAVE_CHANGES = 5000

#: L{FolderIndex.close} saves an index that learnt of this many more octets
#: of side store records since its last save, even if nothing else changed.
SAVE_CACHE_GROWTH = 256 * 1024

#: How many change records L{FolderIndex.changesSince} can answer from.
CHANGE_LOG_SIZE = 100_000

#: Attempts at a UID list update another session holds the lock of.
UIDLIST_ATTEMPTS = 200

#: RFC 3501 §2.3.2 system flags and their Maildir letters.
IMAP_TO_MAILDIR = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
MAILDIR_TO_IMAP = {letter: flag for flag, letter in IMAP_TO_MAILDIR.items()}
_IMAP_FLAGS_FOLDED = {flag.casefold(): flag for flag in IMAP_TO_MAILDIR}

_HEADER_READ = 16 * 1024
_MAX_HEADER = 1 << 20


#: The side store's record kinds (see the module docstring).
_KINDS = ("e", "s", "h", "E")

#: The index file's column lines before its names: sizes, dates,
#: directories, mod-sequences, and the side store's places of each kind.
_COLUMNS = 4 + len(_KINDS)

#: The index file's UIDs: four octets each, little-endian, unsigned.
_UID_TYPE = "I" if array("I").itemsize == 4 else "L"
assert array(_UID_TYPE).itemsize == 4

#: Enough octets for the index file's header line.
_HEAD_READ = 4096

#: The attributes a loaded index reads from the file only when first used
#: (see L{FolderIndex._loadHead}).
_LAZY = frozenset({"_entries", "_byBase", "_inNew", "_cacheOffsets"})


@frozen
class _Pending:
    """
    What L{FolderIndex._materialise} needs to read the rest of an index
    file: the file mapped (as it was at the load, however it is replaced
    meanwhile; unmapped once nothing uses it), where the text columns
    start, the message count, their CRC-32, and whether the side store
    places in them are good.
    """

    mapped: mmap.mmap
    offset: int
    count: int
    crc: int
    cacheKnown: bool

#: The length part of a side store record's place (C{offset << 32 | length}).
_LENGTH = (1 << 32) - 1


def _headerEnd(data: bytes) -> int:
    """
    Where the blank line that ends a message's header ends in C{data}
    (CRLF or bare LF line ends), or -1 if C{data} holds none.
    """
    if data.startswith(b"\n"):
        return 1
    if data.startswith(b"\r\n"):
        return 2
    crlf = data.find(b"\n\r\n")
    # A bare-LF blank line counts only if it comes first (searched no
    # further than the CRLF one: a CRLF message holds none).
    lf = data.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else len(data))
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


def _uidArray(uids: Sequence[int] | memoryview) -> "array[int]":
    """
    UIDs as an array: a copy of a mapped index file's UIDs (four octets
    each, little-endian) or of a list; an array as it is.
    """
    if isinstance(uids, memoryview):
        copy = array(_UID_TYPE)
        copy.frombytes(uids.cast("B"))
        if sys.byteorder != "little":
            copy.byteswap()
        return copy
    return uids if isinstance(uids, array) else array(_UID_TYPE, uids)


def _toHex(numbers: Sequence[int]) -> str:
    """
    A column of numbers as the index file writes it: each a big-endian
    64-bit two's complement number, in hexadecimal, one after the other.
    """
    column = array("q", numbers)
    if sys.byteorder == "little":
        column.byteswap()
    return column.tobytes().hex()


def _fromHex(text: str) -> list[int]:
    """
    The numbers of a column L{_toHex} wrote (C code whatever its length).

    @raise ValueError: it is not such a column.
    """
    column = array("q")
    column.frombytes(bytes.fromhex(text))
    if sys.byteorder == "little":
        column.byteswap()
    return column.tolist()


def _stampFrom(text: str) -> tuple[int, ...] | None:
    """
    A stat signature as the index file writes it (C{INO:SIZE:MTIME},
    C{INO:END}, or C{-} for none).
    """
    return None if text == "-" else tuple(int(part) for part in text.split(":"))


def _noOffsets() -> dict[str, dict[str, int]]:
    return {kind: {} for kind in _KINDS}


class MessageGone(MessageExpunged):
    """
    The message was expunged (by this or another session, or POP3): its
    file is in neither C{new/} nor C{cur/}.

    @ivar uid: its UID.
    """

    def __init__(self, uid: int) -> None:
        super().__init__(uid)
        self.uid = uid


class ModifiedSince(MailhubError):
    """
    A conditional flag change (RFC 7162 §3.1.3, UNCHANGEDSINCE) was not
    made: the message's mod-sequence is above the given value.

    @ivar uid: its UID.
    @ivar modseq: its mod-sequence.
    """

    def __init__(self, uid: int, modseq: int) -> None:
        super().__init__(uid, modseq)
        self.uid = uid
        self.modseq = modseq


@frozen
class Changes:
    """
    What changed in a folder between two looks at it.

    @ivar added: UIDs of new messages, ascending.
    @ivar removed: UIDs of messages that are gone, ascending.
    @ivar flagsChanged: UIDs (present ones) whose flags changed, ascending.
    @ivar reset: the UID list was lost and started again (new
        UIDVALIDITY): every UID before is gone.
    """

    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()
    flagsChanged: tuple[int, ...] = ()
    reset: bool = False

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.flagsChanged or self.reset)


class IndexEntry:
    """
    One message in the index.

    @ivar uid: its UID.
    @ivar base: its base name (unique, never changes).
    @ivar sub: C{"new"} or C{"cur"}.
    @ivar name: its file name in C{sub}, flags included.
    @ivar size: RFC822.SIZE, or C{-1} while unknown.
    @ivar date: internal date, seconds since the epoch (UTC).
    @ivar modseq: its mod-sequence (RFC 7162 §3.1): that of the last
        change of its flags, or of its arrival.
    """

    __slots__ = ("uid", "base", "sub", "name", "size", "date", "modseq")

    def __init__(self, uid: int, base: str, sub: str, name: str, size: int, date: int, modseq: int = 0) -> None:
        self.uid = uid
        self.base = base
        self.sub = sub
        self.name = name
        self.size = size
        self.date = date
        self.modseq = modseq

    def __repr__(self) -> str:
        return f"IndexEntry({self.uid}, {self.sub}/{self.name}, size={self.size}, date={self.date}, modseq={self.modseq})"


def sizeFromName(base: str) -> int:
    """
    The C{,W=} size (octets with CRLF line ends) in a base name, or C{-1}.
    """
    at = base.find(",W=")
    if at < 0:
        return -1
    digits = base[at + 3 :].split(",", 1)[0]
    return int(digits) if digits.isdigit() and len(digits) <= 15 else -1


def dateFromName(base: str) -> int | None:
    """
    The leading delivery seconds of a Maildir name, or C{None}.
    """
    head = base.split(".", 1)[0]
    if head.isdigit() and 0 < len(head) <= 12:
        return int(head)
    return None


def _encodeName(name: str) -> str:
    if "\t" in name or "\n" in name or "\r" in name or "%" in name:
        return quote(name, safe="", errors="surrogateescape")
    return name


def _decodeName(text: str) -> str:
    return unquote(text, errors="surrogateescape") if "%" in text else text


def _toJSON(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [_toJSON(v) for v in value]
    return value


def _fromJSON(value: object) -> object:
    if isinstance(value, str):
        return value.encode("latin-1")
    if isinstance(value, list):
        return [_fromJSON(v) for v in value]
    return value


#: The IMAP flags of the info parts (after the C{:}) without keyword
#: letters seen so far: a mailbox has only a few kinds, and FETCH FLAGS
#: asks for every message's.
_systemFlags: dict[str, tuple[str, ...]] = {}


def imapFlags(name: str, keywordFor: Callable[[str], str | None]) -> list[str]:
    """
    The IMAP flags of a Maildir file name: system flags, then keywords.
    """
    info = name.partition(":")[2]
    known = _systemFlags.get(info)
    if known is not None:
        return list(known)
    _, system, letters = parseFlags(name)
    flags = [MAILDIR_TO_IMAP[c] for c in "DFRST" if c in system]
    if not letters:
        if len(_systemFlags) >= 4096:  # odd names from other tools: stay small
            _systemFlags.clear()
        _systemFlags[info] = tuple(flags)
        return flags
    for letter in sorted(letters):
        keyword = keywordFor(letter)
        if keyword is not None:
            flags.append(keyword)
    return flags


def _plain(value: bytes | tuple[bytes, ...]) -> bool:
    """
    Whether a header value decodes to its ASCII self: one value, ASCII, no
    encoded word, no line end (see L{_HeaderColumns.mayContain}).
    """
    return (
        isinstance(value, bytes) and value.isascii() and b"=?" not in value and b"\n" not in value and b"\r" not in value
    )


class _HeaderColumns:
    """
    The L{SEARCH_HEADERS} fields of the messages that have a C{h} record in
    the side store, in memory: a row number per base name and, per field, a
    list indexed by row.  A cell is C{None} (the message lacks the field),
    the raw value's octets, or a tuple of them (the field is repeated).

    @ivar loaded: whether every C{h} record up to the side store's known
        end is in (or in L{pending}).
    @ivar pending: C{(base, offset, length)} of C{h} records read since.
    @ivar complex: per field, the rows whose value a plain lower-case
        substring test cannot judge (see L{mayContain}).
    @ivar version: grows with every change, for L{mayContain}'s cache.
    """

    __slots__ = ("rows", "columns", "loaded", "pending", "complex", "version", "_texts")

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.columns: dict[str, list[bytes | tuple[bytes, ...] | None]] = {name: [] for name in SEARCH_HEADERS}
        self.loaded = False
        self.pending: list[tuple[str, int, int]] = []
        self.complex: dict[str, set[int]] = {name: set() for name in SEARCH_HEADERS}
        self.version = 0
        # field -> (version, the column's lower-cased text, row starts)
        self._texts: dict[str, tuple[int, bytes, array]] = {}

    def add(self, base: str, fields: object) -> None:
        if not isinstance(fields, dict):
            return
        self.version += 1
        row = self.rows.get(base)
        if row is None:
            row = self.rows[base] = len(self.rows)
            for column in self.columns.values():
                column.append(None)
        for name, column in self.columns.items():
            values = fields.get(name)
            if not values or not isinstance(values, list):
                value = None
            elif len(values) == 1:
                value = values[0].encode("latin-1")
            else:
                value = tuple(v.encode("latin-1") for v in values)
            column[row] = value
            if value is None or _plain(value):
                self.complex[name].discard(row)
            else:
                self.complex[name].add(row)

    def mayContain(self, name: str, wanted: bytes) -> set[int]:
        """
        The rows whose field C{name} may contain C{wanted} (lower-case
        ASCII, no line end) once decoded and case-folded as SEARCH does
        (L{mailhub.imap.message.decodeHeader}, C{str.casefold}): those
        whose raw value contains it ignoring ASCII case, found with one
        C{find} over the whole column's text, and the L{complex} ones
        (encoded words, 8-bit octets, a repeated field), which only the
        full test can judge.  A row not returned cannot match.
        """
        cached = self._texts.get(name)
        if cached is None or cached[0] != self.version:
            column = self.columns[name]
            complex = self.complex[name]
            plain = [b"" if v is None or i in complex else v for i, v in enumerate(column)]  # type: ignore[misc]
            starts = array("q", [0])
            starts.extend(accumulate(len(v) + 1 for v in plain))
            cached = (self.version, b"\n".join(plain).lower(), starts)
            self._texts[name] = cached
        _, text, starts = cached
        found = set(self.complex[name])
        at = text.find(wanted)
        while at >= 0:
            row = bisect.bisect_right(starts, at) - 1
            found.add(row)
            at = text.find(wanted, starts[row + 1])  # the next row
        return found

    def values(self, base: str, name: str) -> list[bytes] | None:
        """
        The field's raw values, or C{None} if C{base} has no row.
        """
        row = self.rows.get(base)
        if row is None:
            return None
        value = self.columns[name][row]
        if value is None:
            return []
        if isinstance(value, bytes):
            return [value]
        return list(value)


class FolderIndex:
    """
    The index of one Maildir folder.

    @param folderPath: the folder's Maildir directory (C{cur/ new/ tmp/}).
    @param fs: the file operations (a fault-injecting one in tests).
    @param clock: the time: UIDVALIDITY, locks, save interval, settling.
    @param hostname: this host, for new file names and locks.
    @param pause: waits that many seconds before another attempt at a
        locked UID list (only ever called on a worker thread).

    @ivar generation: grows by one per change record (see L{changesSince}).
    """

    log = Logger()

    def __init__(
        self,
        folderPath: str,
        fs: FileSystem | None = None,
        clock: IReactorTime | None = None,
        *,
        hostname: str | None = None,
        pause: Callable[[float], object] | None = None,
    ) -> None:
        self.folderPath = folderPath
        self._fs = fs if fs is not None else FileSystem()
        self._clock = clock if clock is not None else _SystemClock()
        host = hostname or socket.gethostname() or "localhost"
        self._uidList = UIDList(folderPath, self._fs, self._clock, hostname=host)
        self.keywords = Keywords(folderPath, self._fs, self._clock, hostname=host)
        self._names = UniqueNames(self._clock, host)
        self._pause = pause if pause is not None else threading.Event().wait
        #: See the module docstring ("The lock").
        self._lock = threading.RLock()
        self._indexPath = os.path.join(folderPath, INDEX_NAME)
        self._cachePath = os.path.join(folderPath, CACHE_NAME)

        self.uidValidity: int | None = None
        self._entries: dict[int, IndexEntry] = {}
        self._byBase: dict[str, int] = {}
        self._inNew: set[str] = set()
        #: The UIDs in order (an array: four octets each).
        #: (Until the first change after a load, where the index file is
        #: mapped: see L{_loadHead}.)
        self._uids: Sequence[int] = array(_UID_TYPE)
        #: Directories whose stamp comes of this index's own renames, not
        #: of a listing (see L{claimNew}): listed by the next L{settle}.
        self._unverified: set[str] = set()
        #: sub -> (mtime, names, when) listed by L{settle} for the refresh
        #: it makes (see L{_listing}).
        self._prelisted: dict[str, tuple[int, list[str], float]] = {}
        #: The index file's columns not read yet (see L{_loadHead}).
        self._pending: _Pending | None = None
        self._stamps: dict[str, int] = {"new": 0, "cur": 0}
        self._uidListStamp: tuple[int, ...] | None = None
        #: UIDNEXT as the index file had it, for as long as the UID list,
        #: unchanged since, has not been read.
        self._savedNextUID = 0
        self._loaded = False
        self._dirty = False
        self._lastSave = 0.0
        self.generation = 0
        self._log: deque[tuple[int, str, int, object]] = deque(maxlen=CHANGE_LOG_SIZE)
        self._reported = 0
        self._reportedUids: list[int] = []
        # kind -> base -> where its record's JSON is (offset << 32 | length).
        self._cacheOffsets: dict[str, dict[str, int]] = _noOffsets()
        self._cacheEnd = 0
        self._cacheFd: int | None = None
        self._cacheAppendFd: int | None = None
        self._savedCacheEnd = 0
        self._savedStamps = {"new": 0, "cur": 0}
        self._unsaved = 0
        self._unseen: tuple[int, int] | None = None
        # The side store's SEARCH fields in memory (see searchHeaders).
        self._columns = _HeaderColumns()
        # Mod-sequences (see the module docstring).
        self._modseqs = ModseqCounter(folderPath, self._fs, self._clock, hostname=host, pause=self._pause)
        #: The largest mod-sequence given (RFC 7162 HIGHESTMODSEQ).
        self.highestModseq = 0
        # Every message needs a new mod-sequence: no trusted index was loaded.
        self._modseqFloor = True
        # Inside modseqBatch(): whether, and the mod-sequence its changes share.
        self._batching = False
        self._batchModseq: int | None = None

    @property
    def lock(self) -> "threading.RLock":
        """
        The index's lock (see the module docstring), for callers that must
        read several things consistently (the mailbox's FLAGS list).
        """
        return self._lock  # type: ignore[return-value]

    # -- reading the folder ---------------------------------------------------

    @property
    def nextUID(self) -> int:
        """
        The UID the next new message will get (as last known).
        """
        return max(self._uidList.nextUID, self._savedNextUID)

    def uids(self) -> Sequence[int]:
        """
        The UIDs, ascending: message sequence number C{n} is C{uids()[n-1]}.
        The list is replaced, never changed, when the folder changes, so
        sessions that are up to date share one list.
        """
        with self._lock:
            if not self._loaded:
                self._ensureLoaded()
                self._refresh()
            return self._uids

    def messageCount(self) -> int:
        """
        How many messages the index holds now (without a refresh, without
        the lock: an estimate for memory bounds).
        """
        return len(self._uids)

    def messages(self) -> list[IndexEntry]:
        """
        Every message's entry, ordered by UID (so by sequence number).
        """
        with self._lock:
            return [self._entries[uid] for uid in self.uids()]

    def entry(self, uid: int) -> IndexEntry:
        """
        @raise MessageGone: no message has C{uid} (any more).
        """
        with self._lock:
            found = self._entries.get(uid)
            if found is None:
                raise MessageGone(uid)
            return found

    def path(self, uid: int) -> str:
        """
        The message's file, as last seen (another session may rename it at
        any moment: L{open} copes with that).
        """
        with self._lock:
            found = self.entry(uid)
            return os.path.join(self.folderPath, found.sub, found.name)

    def flags(self, uid: int) -> list[str]:
        """
        The message's IMAP flags (system flags, then keywords).
        """
        with self._lock:
            return imapFlags(self.entry(uid).name, self.keywords.keywordFor)

    def refresh(self) -> Changes:
        """
        Bring the index in line with the folder, reading only what changed.

        @return: what changed since the last refresh of this object.
        @raise OSError: the folder cannot be read or the UID list written.
        """
        with self._lock:
            self._ensureLoaded()
            self._refresh()
            changes = self.changesSince(self._reported)
            if changes is None:
                # More changes than the log keeps: compare the UID lists.
                before, after = set(self._reportedUids), set(self._uids)
                changes = Changes(tuple(sorted(after - before)), tuple(sorted(before - after)), tuple(sorted(after & before)))
            self._reported = self.generation
            self._reportedUids = self._uids
            return changes

    def settle(self) -> bool:
        """
        List again, now, a directory that changed since it was last listed
        settled (this index's own renames change C{cur/}: a claim of new
        mail, a flag change), so that the next refresh, a SELECT after new
        mail say, lists C{new/} only and does not pay for a listing of the
        whole of C{cur/}; and save the index if a refresh would soon (half
        of L{SAVE_CHANGES} changes, or of L{SAVE_INTERVAL}, unsaved), so
        that a command seldom pays for that either.  Meant to run on a
        worker thread a little more than L{SETTLE_SECONDS} after a command,
        while the folder is quiet.

        The directories are listed before the lock is taken (the listing
        of a large C{cur/} is most of the work): a command that comes
        meanwhile does not wait for it.

        @return: whether a directory is still unsettled (changed again
            meanwhile): worth another call later.
        """
        with self._lock:
            if not self._loaded or self._pending is not None or self.uidValidity is None:
                return False
            known = dict(self._stamps)
            unverified = set(self._unverified)
        listed = {}
        fresh = False
        for sub in ("new", "cur"):
            before = self._mtime(sub)
            if not before:
                return False  # the folder is gone: nothing to settle
            if before == known[sub] and sub not in unverified:
                continue
            listedAt = self._clock.seconds()
            if listedAt - before / 1e9 <= SETTLE_SECONDS:
                # Not settled yet: a listing now would have to be made
                # again; later.
                fresh = True
                continue
            try:
                listed[sub] = (before, os.listdir(os.path.join(self.folderPath, sub)), listedAt)
            except FileNotFoundError:
                return False
        with self._lock:
            if listed:
                for sub in self._unverified & set(listed):
                    self._stamps[sub] = 0  # listed now, whatever its mtime
                self._prelisted = listed
                try:
                    self._refresh()
                except MailboxGone:
                    return False
                finally:
                    self._prelisted = {}
            if self._dirty and (
                self._unsaved >= SAVE_CHANGES // 2 or self._clock.seconds() - self._lastSave >= SAVE_INTERVAL / 2
            ):
                self._saveQuietly()
            return fresh or not all(self._stamps.values()) or bool(self._unverified)

    def _ensureLoaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            self._load()

    def _listing(self, sub: str) -> tuple[list[str] | None, int, bool]:
        """
        List C{sub} unless it is unchanged and settled since the last look.

        @return: C{(names or None when not listed, mtime stamp, settled)};
            the names may include dot files, which are no messages.
        """
        directory = os.path.join(self.folderPath, sub)
        try:
            before = os.stat(directory).st_mtime_ns
        except FileNotFoundError:
            return [], 0, False
        if before and before == self._stamps[sub]:
            return None, before, True
        listed = self._prelisted.get(sub)
        if listed is not None and listed[0] == before:
            # Listed by settle() without the lock, and unchanged since: a
            # change after that listing would have moved the mtime, unless
            # it came within the settling time, when it is not trusted.
            _, names, listedAt = listed
            return names, before, listedAt - before / 1e9 > SETTLE_SECONDS
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return [], 0, False
        settled = self._clock.seconds() - before / 1e9 > SETTLE_SECONDS
        return names, before, settled

    def _unchangedSinceLoad(self) -> bool:
        """
        Whether a refresh would find nothing to do: the directories and the
        UID list as the index file has them (three C{stat}s, no listing).
        """
        for sub in ("new", "cur"):
            if not self._stamps[sub] or self._mtime(sub) != self._stamps[sub]:
                return False
        return (
            self._uidList._statStamp() == self._uidListStamp
            and self.uidValidity is not None
            and not self._modseqFloor
        )

    def _refresh(self) -> Changes:
        """
        L{refresh} without the loading and the reporting: what this look
        found (also recorded in the change log).
        """
        if self._pending is not None and not self._unchangedSinceLoad():
            # Something changed since the index was saved: every entry is
            # needed now, before the listings (a bad file is forgotten, and
            # rebuilt here).
            self._materialise()
        newNames, newStamp, newSettled = self._listing("new")
        curNames, curStamp, curSettled = self._listing("cur")
        for sub, names in (("new", newNames), ("cur", curNames)):
            if names is not None:
                self._unverified.discard(sub)
        if not newStamp and not curStamp and not os.path.isdir(self.folderPath):
            # Deleted or renamed under us: the UID list cannot be kept.
            raise MailboxGone(self.folderPath)
        uidListStamp = self._uidList._statStamp()
        if (
            newNames is None
            and curNames is None
            and uidListStamp == self._uidListStamp
            and self.uidValidity is not None
            and not self._modseqFloor
        ):
            return Changes()
        if self._pending is not None:
            # Changed since the look above: read the columns, look again.
            self._materialise()
            return self._refresh()
        if self._modseqFloor:
            try:
                self._giveFloor()
            except FileNotFoundError as e:
                if not self._folderGone(e):
                    raise

        entries = self._entries
        byBase = self._byBase
        # A listed directory is compared with the names the index has there
        # as sets (C code, whatever the folder's size); only the names that
        # differ are looked at one by one.  seen: base -> (sub, name) of the
        # names that appeared (new messages, or old ones renamed or moved);
        # vanished: the bases of the names that are no longer there.
        seen: dict[str, tuple[str, str]] = {}
        vanished: list[str] = []
        for sub, names in (("new", newNames), ("cur", curNames)):
            if names is None:
                continue
            if sub == "new":
                known = {entries[byBase[base]].name for base in self._inNew}
            else:
                known = {found.name for found in entries.values() if found.sub == "cur"}
            listed = set(names)
            for name in listed - known:
                if not name.startswith("."):
                    seen[name.split(":", 1)[0]] = (sub, name)
            vanished.extend(name.split(":", 1)[0] for name in known - listed)
        gone = [base for base in vanished if base not in seen]
        fresh = [base for base in seen if base not in byBase]

        reset = False
        if fresh or gone or uidListStamp != self._uidListStamp or self.uidValidity is None:
            mapping = None
            if uidListStamp == self._uidListStamp and self.uidValidity is not None and not gone:
                # The list is as this index left it and only new names came:
                # hand over just those (see "Refresh" in the module
                # docstring).  Removals take the full sync, whose fresh scan
                # confirms a name is really gone, so that a listing racing a
                # rename never costs a message its UID.
                validity, mapping = self._assignUIDs(fresh, gone)
            if mapping is None:
                names: Iterable[str]
                goneSet = set(gone)
                names = [b for b in byBase if b not in goneSet] + fresh if goneSet else list(byBase) + fresh
                validity, mapping = self._syncUIDs(names)
                # The whole list: another process may have dropped a name
                # and listed it again (a new UID) without its file changing.
                for base, uid in byBase.items():
                    if mapping.get(base, uid) != uid and base not in seen and base not in goneSet:
                        seen[base] = (entries[uid].sub, entries[uid].name)
            # The list as this sync left it (our own write included).
            uidListStamp = self._uidList._stamp
            if self.uidValidity is not None and validity != self.uidValidity:
                reset = True
            self.uidValidity = validity
        else:
            mapping = None

        removed: list[int] = []
        added: list[int] = []
        changed: list[int] = []

        def drop(base: str) -> None:
            uid = byBase.pop(base)
            del entries[uid]
            self._inNew.discard(base)
            removed.append(uid)

        if reset:
            for base in list(byBase):
                drop(base)
            # Everything on disk is new; cur/ and new/ must be listed.
            self._stamps = {"new": 0, "cur": 0}
            rest = self._refreshAfterReset()
            self._finish(rest.added, removed, (), True, newStamp, curStamp, self._uidList._stamp, False, False)
            return Changes(tuple(sorted(rest.added)), tuple(sorted(removed)), (), True)

        for base in gone:
            drop(base)
        for base, (sub, name) in seen.items():
            uid = byBase.get(base)
            if uid is None:
                continue
            if mapping is not None and mapping.get(base, uid) != uid:
                # Dropped from the UID list and back: a new message to IMAP.
                drop(base)
                fresh.append(base)
                continue
            old = entries[uid]
            if old.name != name or old.sub != sub:
                if parseFlags(old.name)[1:] != parseFlags(name)[1:]:
                    changed.append(uid)
                old.name, old.sub = name, sub
                if sub == "new":
                    self._inNew.add(base)
                else:
                    self._inNew.discard(base)
        if fresh:
            assert mapping is not None
            for base in fresh:
                uid = mapping.get(base)
                if uid is None:
                    continue  # appeared after the UID list was written: next time
                sub, name = seen[base]
                added.append(uid)
                entries[uid] = self._newEntry(uid, base, sub, name)
                byBase[base] = uid
                if sub == "new":
                    self._inNew.add(base)
        self._finish(added, removed, changed, False, newStamp, curStamp, uidListStamp, newSettled, curSettled)
        return Changes(tuple(sorted(added)), tuple(sorted(removed)), tuple(sorted(changed)), False)

    def _refreshAfterReset(self) -> Changes:
        newNames, _, _ = self._listing("new")
        curNames, _, _ = self._listing("cur")
        seen: dict[str, tuple[str, str]] = {}
        for sub, names in (("new", newNames or []), ("cur", curNames or [])):
            for name in names:
                if not name.startswith("."):
                    seen[name.split(":", 1)[0]] = (sub, name)
        validity, mapping = self._syncUIDs(list(seen))
        self.uidValidity = validity
        added = []
        for base, (sub, name) in seen.items():
            uid = mapping.get(base)
            if uid is None:
                continue
            self._entries[uid] = self._newEntry(uid, base, sub, name)
            self._byBase[base] = uid
            if sub == "new":
                self._inNew.add(base)
            added.append(uid)
        return Changes(tuple(added))

    def _finish(
        self,
        added: Sequence[int],
        removed: Sequence[int],
        changed: Sequence[int],
        reset: bool,
        newStamp: int,
        curStamp: int,
        uidListStamp: tuple[int, int, int] | None,
        newSettled: bool,
        curSettled: bool,
    ) -> None:
        self._stamps = {"new": newStamp if newSettled else 0, "cur": curStamp if curSettled else 0}
        if self._stamps != self._savedStamps and all(self._stamps.values()):
            # Settled directories the index file does not know of: saved at
            # close, so that the next load does not list them again.
            self._dirty = True
        self._uidListStamp = uidListStamp
        failure = None
        if added or removed or changed or reset:
            # RFC 7162 §3.1: new messages, flag changes and expunges get a
            # new mod-sequence, larger than any before.
            try:
                self._readyModseq()
                modseq = self._takeModseq()
            except Exception as e:
                # Nothing can be handed out: the changes are recorded all
                # the same, and every message gets a new mod-sequence as
                # soon as one can be (a client then resynchronises rather
                # than miss these changes).
                self._modseqFloor = True
                if not self._folderGone(e):
                    failure = e
            else:
                entries = self._entries
                for uid in added:
                    entries[uid].modseq = modseq
                for uid in changed:
                    entries[uid].modseq = modseq
        if added or removed or reset:
            if removed:
                gone = set(removed)
                self._uids = array(_UID_TYPE, sorted([u for u in self._uids if u not in gone] + list(added)) if not reset else sorted(self._entries))
            else:
                # New UIDs are above every UID in use: append.
                self._uids = (
                    _uidArray(self._uids) + array(_UID_TYPE, sorted(added))
                    if self._uids and added and min(added) > self._uids[-1]
                    else array(_UID_TYPE, sorted(self._entries))
                )
        if reset:
            self._record("R", 0)
        for kind, uids in (("-", sorted(removed)), ("+", sorted(added)), ("f", sorted(changed))):
            for uid in uids:
                self._record(kind, uid)
        if added or removed or changed or reset:
            self._dirty = True
            self._unsaved += len(added) + len(removed) + len(changed) + 1
        if self._dirty and (
            self._clock.seconds() - self._lastSave >= SAVE_INTERVAL or self._unsaved >= SAVE_CHANGES or not self._lastSave
        ):
            self._saveQuietly()
        if failure is not None:
            raise failure

    def _record(self, kind: str, uid: int, owner: object = None) -> None:
        self.generation += 1
        self._log.append((self.generation, kind, uid, owner))

    # -- mod-sequences --------------------------------------------------------

    def _readyModseq(self) -> None:
        """
        Make sure L{_takeModseq} will not fail (see L{ModseqCounter.ready}):
        called before a change that needs a mod-sequence, so that a failure
        leaves nothing changed.

        @raise OSError: no mod-sequence can be handed out now.
        """
        if self._batchModseq is None:
            self._modseqs.ready()

    def _takeModseq(self) -> int:
        """
        A new mod-sequence, now L{highestModseq}: inside L{modseqBatch}, the
        one the batch's changes share.
        """
        if self._batchModseq is not None:
            return self._batchModseq
        value = self._modseqs.take()
        self.highestModseq = max(self.highestModseq, value)
        if self._batching:
            self._batchModseq = value
        return value

    def _folderGone(self, error: BaseException) -> bool:
        """
        Whether C{error} comes of the folder itself being gone (deleted or
        renamed by another session): a folder that is gone takes no
        mod-sequence, and its messages are gone.
        """
        return isinstance(error, FileNotFoundError) and not os.path.isdir(self.folderPath)

    def _giveFloor(self) -> None:
        """
        Give every message one new mod-sequence, above any handed out
        before: no trusted index was loaded (see the module docstring).
        Nothing is changed if none can be handed out.
        """
        self._readyModseq()
        modseq = self._takeModseq()
        for found in self._entries.values():
            found.modseq = modseq
        self._modseqFloor = False
        self._dirty = True

    @contextlib.contextmanager
    def modseqBatch(self) -> Iterator[None]:
        """
        Hold the index's lock, and let every change made meanwhile (by this
        thread: L{setFlags}, L{changeFlags}, refreshes) share one new
        mod-sequence: a STORE of many messages then takes one, not one per
        message.  No other session can see the index between those changes,
        so the value is still larger than any it has seen (RFC 7162 §3.1
        asks only that each STORE get a new, larger one).  Batches nest.
        """
        with self._lock:
            if self._batching:
                yield
                return
            self._batching = True
            try:
                yield
            finally:
                self._batching = False
                self._batchModseq = None

    def modseq(self, uid: int) -> int:
        """
        The message's mod-sequence.

        @raise MessageGone: it is gone.
        """
        with self._lock:
            return self.entry(uid).modseq

    def _syncUIDs(self, names: Iterable[str]) -> tuple[int, dict[str, int]]:
        names = list(names)
        self._savedNextUID = 0  # the UID list is read now
        for attempt in range(UIDLIST_ATTEMPTS):
            try:
                return self._uidList.sync(names)
            except UIDListLocked:
                if attempt == UIDLIST_ATTEMPTS - 1:
                    raise
                self._pause(0.01)
        raise AssertionError("unreachable")

    def _assignUIDs(self, fresh: list[str], gone: list[str]) -> tuple[int, dict[str, int] | None]:
        """
        L{UIDList.assign} of what this index found new and gone, for a UID
        list unchanged on disk since this index last synced with it.

        @return: C{(uidvalidity, {base: uid} for C{fresh})}, or C{(0,
            None)} when another process changed the list meanwhile (it
            handed out UIDs this index did not ask for, or started the list
            again): the caller must do a full L{UIDList.sync}.
        """
        self._uidList._load()  # (not read yet when the index file was trusted)
        self._savedNextUID = 0
        before = self._uidList.nextUID
        for attempt in range(UIDLIST_ATTEMPTS):
            try:
                validity, mapping = self._uidList.assign(fresh, gone)
                break
            except UIDListLocked:
                if attempt == UIDLIST_ATTEMPTS - 1:
                    raise
                self._pause(0.01)
        else:  # pragma: no cover
            raise AssertionError("unreachable")
        # Every UID handed out since this index last looked must be one of
        # ours; any other one means another process wrote the list between
        # our stat and the assign, and may have dropped and re-added names.
        ours = sum(1 for uid in mapping.values() if uid >= before)
        if validity != self.uidValidity or self._uidList.nextUID != before + ours:
            return 0, None
        return validity, mapping

    def _newEntry(self, uid: int, base: str, sub: str, name: str) -> IndexEntry:
        date = dateFromName(base)
        if date is None:
            try:
                date = int(os.stat(os.path.join(self.folderPath, sub, name)).st_mtime)
            except FileNotFoundError:
                date = 0
        return IndexEntry(uid, base, sub, name, sizeFromName(base), date)

    def changesSince(self, generation: int, owner: object = None) -> Changes | None:
        """
        What changed after change record C{generation} (see
        L{generation}), for a session that last looked then; C{None} if the
        records are no longer kept (the session compares UID lists instead).
        Does not refresh.

        @param owner: flag changes made with this C{owner} (see
            L{changeFlags}) are left out: a session's own STORE.
        """
        with self._lock:
            if generation == self.generation:
                return Changes()
            if not self._log or self._log[0][0] > generation + 1:
                return None
            added: set[int] = set()
            removed: set[int] = set()
            changed: set[int] = set()
            reset = False
            for gen, kind, uid, by in self._log:
                if gen <= generation:
                    continue
                if kind == "R":
                    reset = True
                elif kind == "+":
                    added.add(uid)
                elif kind == "-":
                    if uid in added:
                        added.discard(uid)
                    else:
                        removed.add(uid)
                    changed.discard(uid)
                elif uid not in added and (owner is None or by is not owner):
                    changed.add(uid)
            return Changes(tuple(sorted(added)), tuple(sorted(removed)), tuple(sorted(changed)), reset)

    # -- persistence ----------------------------------------------------------

    def _load(self) -> None:
        """
        Read the index file's header and UIDs (see "Files" in the module
        docstring); the rest waits for L{_materialise}.  A file that is not
        a whole, current index of this folder is rebuilt.
        """
        try:
            fd = self._fs.openRead(self._indexPath)
        except FileNotFoundError:
            return
        try:
            try:
                mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            finally:
                self._fs.close(fd)
            self._loadHead(mapped)
        except (ValueError, IndexError, KeyError, UnicodeError, OSError) as e:
            # (mmap: ValueError for an empty file.)
            if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
                raise
            self._forget(e)

    def _forget(self, problem: BaseException) -> None:
        """
        Drop what was read of a bad index file: the next refresh rebuilds
        the index from the folder and the UID list.
        """
        self.log.warn("rebuilding {path}: {problem}", path=self._indexPath, problem=str(problem))
        self._pending = None
        self._entries, self._byBase, self._inNew, self._uids = {}, {}, set(), array(_UID_TYPE)
        self._stamps = {"new": 0, "cur": 0}
        self._unverified = set()
        self._uidListStamp = None
        self._savedNextUID = 0
        self._cacheOffsets, self._cacheEnd = _noOffsets(), 0
        self.uidValidity = None
        self._modseqFloor = True
        self._lastSave = 0.0  # saved again at the first refresh

    def _loadHead(self, mapped: mmap.mmap) -> None:
        """
        Read the header and the UIDs: a few hundred octets, and the UIDs
        checked and used where they are mapped (no copy, no object per
        message), so that a SELECT after a restart costs about what one on
        a loaded index does.  The other columns are read from the same
        mapping (the file as it was now, however it is replaced meanwhile)
        by L{_materialise}, when first needed.

        @raise ValueError: it is not a current index of this folder.
        """
        head = mapped[:_HEAD_READ]
        end = head.find(b"\n")
        if end < 0:
            raise ValueError("no header line")
        header = head[:end].decode("ascii").split(" ")
        if len(header) != 14 or header[0] != _MAGIC or header[1] != _VERSION:
            raise ValueError("not a mailhub index")
        validity, newStamp, curStamp, count, nextUID, inNew, uidsCRC, crc = (
            int(header[i]) for i in (2, 3, 4, 5, 7, 11, 12, 13)
        )
        highestModseq, ceiling = int(header[9]), int(header[10])
        if count < 0 or not 0 <= inNew <= count:
            raise ValueError("bad counts")
        block = memoryview(mapped)[end + 1 : end + 1 + count * 4]
        if len(block) != count * 4 or zlib.crc32(block) != uidsCRC:
            raise ValueError("UIDs cut short or damaged")
        uids: Sequence[int]
        if sys.byteorder == "little":
            uids = block.cast(_UID_TYPE)
        else:
            uids = _uidArray(block)
        uidListStamp = _stampFrom(header[6])
        if uidListStamp is not None and uidListStamp == self._uidList._statStamp():
            # The UID list is as it was when this index was in step with it:
            # neither read nor synced now.
            self._uidListStamp = uidListStamp
            self._savedNextUID = nextUID
        else:
            current, _ = self._uidList.mapping()
            if current != validity:
                raise ValueError("UIDVALIDITY changed")
            # Whether the UID list still matches is checked by the first refresh.
            self._uidListStamp = None
        cacheStamp = _stampFrom(header[8])
        try:
            st = os.stat(self._cachePath)
        except FileNotFoundError:
            st = None
        cacheKnown = cacheStamp is not None and st is not None and st.st_ino == cacheStamp[0] and st.st_size >= cacheStamp[1]
        # Read on first use (see __getattr__).
        self._pending = _Pending(mapped, end + 1 + count * 4, count, crc, cacheKnown)
        for name in _LAZY:
            self.__dict__.pop(name, None)
        if not inNew:
            self._inNew = set()
        self._uids = uids
        # See "Mod-sequences" in the module docstring: the saved values are
        # the truth only if no value was handed out after the save, which
        # would have raised the state file's CEILING first.
        self._modseqs.observe(max(highestModseq, ceiling))
        trusted = ceiling > 0 and self._modseqs.read() == ceiling
        self.highestModseq = highestModseq
        self._modseqFloor = not trusted
        self.uidValidity = validity
        self._stamps = {"new": newStamp, "cur": curStamp}
        self._savedStamps = dict(self._stamps)
        if cacheKnown:
            # The side store is the one this index knew: where its records
            # are (read with the columns), up to where it had read; the rest
            # is read when needed.
            assert cacheStamp is not None
            self._cacheEnd = self._savedCacheEnd = cacheStamp[1]
        self._lastSave = self._clock.seconds()  # a good index on disk: no hurry

    def __getattr__(self, name: str) -> object:
        # Only called for attributes not set: the columns L{_loadHead} left
        # on disk.  Reading them may find the file bad, and rebuild.
        if name in _LAZY and self.__dict__.get("_pending") is not None:
            self.materialise()
            return self.__dict__[name]
        raise AttributeError(name)

    @property
    def partlyRead(self) -> bool:
        """
        Whether only the index file's header and UIDs were read so far (see
        L{materialise}).
        """
        return self._pending is not None

    def materialise(self) -> None:
        """
        Read the whole index now if only its header and UIDs were read (a
        SELECT after a restart answers from those): done on a worker thread
        right after such a SELECT, so that the session's next command finds
        it done, not the command itself.
        """
        with self._lock:
            if self._pending is not None and not self._materialise():
                self._refresh()

    def _materialise(self) -> bool:
        """
        Read the columns L{_loadHead} left: every message's entry.  Called
        with the lock held.

        @return: C{False} if the file was found bad: the index is then
            empty and not trusted, for the next refresh to rebuild.
        """
        pending = self._pending
        assert pending is not None
        self._pending = None
        try:
            with memoryview(pending.mapped)[pending.offset :] as columns:
                self._parseColumns(columns, pending)
            # The UIDs of their own: the mapping goes once the sessions'
            # views have moved on to these.
            self._uids = _uidArray(self._uids)
        except (ValueError, IndexError, KeyError, UnicodeError, OSError) as e:
            self._forget(e)
            return False
        try:
            # The UID list, which the index's header let the load skip, is
            # read now too: the first new message would need it.
            self._uidList._load()
        except OSError:
            pass  # read when it is needed, and failed then
        return True

    def _parseColumns(self, data: memoryview, pending: "_Pending") -> None:
        """
        The index file's text columns (see the module docstring): turned
        into numbers and names with one C{split} each, then an entry per
        message.

        @raise ValueError: they are not whole, or do not match the UIDs.
        """
        if zlib.crc32(data) != pending.crc:
            raise ValueError("checksum mismatch")
        count = pending.count
        uids = self._uids
        columns = str(data, "utf-8", "surrogateescape").split("\n", _COLUMNS)
        if len(columns) != _COLUMNS + 1:
            raise ValueError("truncated")
        sizes, dates = _fromHex(columns[0]), _fromHex(columns[1])
        subs = columns[2]
        modseqs = _fromHex(columns[3])
        places = [_fromHex(columns[4 + i]) for i in range(len(_KINDS))]
        names = columns[_COLUMNS].split("\n")
        if names.pop() != "":
            raise ValueError("truncated")
        if len(uids) != count or any(len(column) != count for column in [sizes, dates, subs, modseqs, names, *places]):
            raise ValueError("columns of different lengths")
        if subs.strip("nc") or not all(map(operator.lt, uids, islice(uids, 1, None))) or (uids and uids[0] < 1):
            raise ValueError("bad directory or UIDs out of order")
        if "%" in columns[_COLUMNS]:
            names = [_decodeName(name) for name in names]
        bases = [name.partition(":")[0] for name in names]
        subNames = ["cur"] * count
        inNew = set()
        at = subs.find("n")
        while at >= 0:  # few messages wait in new/
            subNames[at] = "new"
            inNew.add(bases[at])
            at = subs.find("n", at + 1)
        uidList = uids.tolist()
        self._entries = dict(zip(uidList, map(IndexEntry, uidList, bases, subNames, names, sizes, dates, modseqs)))
        self._byBase = dict(zip(bases, uidList))
        if "_inNew" not in self.__dict__:
            self._inNew = inNew
        if pending.cacheKnown:
            self._cacheOffsets = {
                kind: {base: where for base, where in zip(bases, column) if where >= 0}
                for kind, column in zip(_KINDS, places)
            }
        else:
            self._cacheOffsets = _noOffsets()

    def save(self) -> None:
        """
        Write the index (temporary file and rename; no fsync: a lost index
        is rebuilt).

        @raise OSError: it could not be written; the old one stands.
        """
        with self._lock:
            if self.uidValidity is None:
                return
            found = [self._entries[u] for u in self._uids]
            columns = [
                _toHex([e.size for e in found]),
                _toHex([e.date for e in found]),
                "".join(["n" if e.sub == "new" else "c" for e in found]),
                _toHex([e.modseq for e in found]),
            ]
            for kind in _KINDS:
                places = self._cacheOffsets[kind]
                columns.append(_toHex([places.get(e.base, -1) for e in found]))
            columns.append("".join([_encodeName(e.name) + "\n" for e in found]))
            body = "\n".join(columns).encode("utf-8", "surrogateescape")
            uids = _uidArray(self._uids)
            if sys.byteorder != "little":
                uids = array(_UID_TYPE, uids)  # not the one in use
                uids.byteswap()
            block = uids.tobytes()
            cacheStamp = "-"
            if self._cacheEnd:
                try:
                    cacheStamp = f"{os.stat(self._cachePath).st_ino}:{self._cacheEnd}"
                except FileNotFoundError:
                    pass
            uidListStamp = ":".join(map(str, self._uidListStamp)) if self._uidListStamp is not None else "-"
            # A CEILING of 0 makes the saved mod-sequences untrusted (see
            # "Mod-sequences" in the module docstring).
            ceiling = 0 if self._modseqFloor else self._modseqs.ceiling
            # A stamp of the index's own renames is not saved as known: the
            # next process lists that directory.
            stamps = {sub: 0 if sub in self._unverified else stamp for sub, stamp in self._stamps.items()}
            header = (
                f"{_MAGIC} {_VERSION} {self.uidValidity} {stamps['new']} {stamps['cur']} "
                f"{len(found)} {uidListStamp} {self.nextUID} {cacheStamp} {self.highestModseq} {ceiling} "
                f"{len(self._inNew)} {zlib.crc32(block)} {zlib.crc32(body)}\n"
            )
            data = header.encode("ascii") + block + body
            temporary = f"{self._indexPath}.tmp.{secrets.token_hex(6)}"
            fd = self._fs.openExclusive(temporary, 0o600)
            try:
                try:
                    self._fs.write(fd, data)
                finally:
                    self._fs.close(fd)
                self._fs.rename(temporary, self._indexPath)
            except BaseException:
                try:
                    self._fs.unlink(temporary)
                except OSError:
                    pass
                raise
            self._dirty = False
            self._unsaved = 0
            self._lastSave = self._clock.seconds()
            # The next mod-sequence raises CEILING above the one just saved
            # (a batch under way takes a new one too).
            self._modseqs.retire()
            self._batchModseq = None
            self._savedCacheEnd = self._cacheEnd
            self._savedStamps = dict(stamps)

    def _saveQuietly(self) -> None:
        try:
            self.save()
        except OSError as e:
            if isinstance(e, FileNotFoundError) and not os.path.isdir(self.folderPath):
                return  # the folder was deleted or renamed meanwhile: nothing to keep
            self.log.failure("cannot save {path}", path=self._indexPath)

    def close(self) -> None:
        """
        Save the index if it changed since it was last saved, or knows of
        L{SAVE_CACHE_GROWTH} more octets of side store records (so that
        the next process finds them without reading the side store).
        """
        with self._lock:
            if self._dirty or self._cacheEnd - self._savedCacheEnd >= SAVE_CACHE_GROWTH:
                self._saveQuietly()
            if self._cacheFd is not None:
                self._fs.close(self._cacheFd)
                self._cacheFd = None
            if self._cacheAppendFd is not None:
                self._fs.close(self._cacheAppendFd)
                self._cacheAppendFd = None

    # -- message files ---------------------------------------------------------

    def _relocate(self, uid: int) -> IndexEntry:
        """
        The entry's file is not where it was: refresh (cur/ and new/ are
        listed again) and return the entry as it is now.

        @raise MessageGone: it is gone.
        """
        self._stamps = {"new": 0, "cur": 0}
        self._refresh()
        return self.entry(uid)

    def open(self, uid: int) -> int:
        """
        Open the message's file for reading (following a rename by another
        session); the caller closes the descriptor with C{os.close}.

        @raise MessageGone: it is gone.
        """
        with self._lock:
            found = self.entry(uid)
            for attempt in range(3):
                try:
                    return self._fs.openRead(os.path.join(self.folderPath, found.sub, found.name))
                except FileNotFoundError:
                    found = self._relocate(uid)
            raise MessageGone(uid)

    def read(self, uid: int) -> bytes:
        """
        The whole message, with CRLF line ends.

        @raise MessageGone: it is gone.
        """
        fd = self.open(uid)
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            self._fs.close(fd)
        data = toCRLF(b"".join(chunks))
        with self._lock:
            found = self._entries.get(uid)
            if found is not None and found.size < 0:
                found.size = len(data)
                self._dirty = True
        return data

    def readHeader(self, uid: int) -> bytes:
        """
        The message's header block (blank line included), CRLF line ends;
        reads only as far as the blank line (or L{_MAX_HEADER} octets).

        @raise MessageGone: it is gone.
        """
        fd = self.open(uid)
        try:
            data = b""
            end = -1
            while len(data) < _MAX_HEADER:
                chunk = os.read(fd, _HEADER_READ)
                if not chunk:
                    break
                data += chunk
                end = _headerEnd(data)
                if end >= 0:
                    break
        finally:
            self._fs.close(fd)
        # Only the header's octets are turned into CRLF form and split.
        return splitHeader(data[:end] if end >= 0 else data)[0]

    def size(self, uid: int) -> int:
        """
        RFC822.SIZE: from the name's C{,W=}, else from reading the file once.
        """
        found = self.entry(uid)
        if found.size >= 0:
            return found.size
        return len(self.read(uid))

    # -- flags --------------------------------------------------------------------

    def _imapToMaildir(self, flags: Iterable[str], keywords: Iterable[str]) -> tuple[set[str], set[str]]:
        # The lock: a new keyword rewrites the keyword file (its dot-lock
        # would refuse a second thread of this process).
        with self._lock:
            return self._imapToMaildirLocked(flags, keywords)

    def _imapToMaildirLocked(self, flags: Iterable[str], keywords: Iterable[str]) -> tuple[set[str], set[str]]:
        system = set()
        for flag in flags:
            letter = IMAP_TO_MAILDIR.get(_IMAP_FLAGS_FOLDED.get(flag.casefold(), ""))
            if letter:
                system.add(letter)
        letters = set()
        for keyword in keywords:
            letter = self.keywords.letterFor(keyword)
            if letter is not None:
                letters.add(letter)
        return system, letters

    def setFlags(
        self,
        uid: int,
        flags: Iterable[str],
        keywords: Iterable[str],
        owner: object = None,
        unchangedSince: int | None = None,
    ) -> list[str]:
        """
        Give a message exactly these IMAP system flags (C{"\\\\Seen"}...;
        C{\\\\Recent} and unknown ones ignored) and keywords (a keyword
        beyond the folder's 26 is dropped, as Dovecot does).  Maildir flags
        with no IMAP meaning (C{P}) are kept.  The file is renamed into
        C{cur/} as C{BASE:2,FLAGS}; if the flags changed, the message gets a
        new mod-sequence.

        @param unchangedSince: change nothing if the message's mod-sequence
            is above this (RFC 7162 §3.1.3).
        @return: the flags the message now has.
        @raise MessageGone: it is gone.
        @raise ModifiedSince: the message changed after C{unchangedSince}.
        """
        system, letters = self._imapToMaildir(flags, keywords)
        return self._rename(uid, lambda s, l: ((s - set("DFRST")) | system, letters), owner, unchangedSince)

    def changeFlags(
        self,
        uid: int,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        owner: object = None,
        unchangedSince: int | None = None,
    ) -> list[str]:
        """
        Add and remove IMAP flags and keywords (mixed: a name starting with
        a backslash is a system flag), applied to the flags the file has
        when it is renamed, so a flag another session set meanwhile stays.
        The change is recorded with C{owner} (see L{changesSince}) and gives
        the message a new mod-sequence.

        @param unchangedSince: as for L{setFlags}.
        @return: the flags the message now has.
        @raise MessageGone: it is gone.
        @raise ModifiedSince: as for L{setFlags}.
        """
        add, remove = list(add), list(remove)
        addSystem, addLetters = self._imapToMaildir(add, [k for k in add if not k.startswith("\\")])
        removeSystem, _ = self._imapToMaildir(remove, ())
        with self._lock:
            removeLetters = {
                letter
                for letter in (self.keywords.letterFor(k, create=False) for k in remove if not k.startswith("\\"))
                if letter is not None
            }
        return self._rename(
            uid, lambda s, l: ((s | addSystem) - removeSystem, (l | addLetters) - removeLetters), owner, unchangedSince
        )

    def _rename(
        self,
        uid: int,
        compute: Callable[[set[str], set[str]], tuple[set[str], set[str]]],
        owner: object = None,
        unchangedSince: int | None = None,
    ) -> list[str]:
        with self._lock:
            found = self.entry(uid)
            for attempt in range(3):
                if unchangedSince is not None and found.modseq > unchangedSince:
                    # RFC 7162 §3.1.3: the operation is not performed.
                    raise ModifiedSince(uid, found.modseq)
                _, system, letters = parseFlags(found.name)
                newSystem, newLetters = compute(set(system), set(letters))
                target = withFlags(found.base, newSystem, newLetters)
                if found.sub == "cur" and target == found.name:
                    return imapFlags(target, self.keywords.keywordFor)
                flagsChange = parseFlags(target)[1:] != (system, letters)
                if flagsChange:
                    try:
                        self._readyModseq()  # before the rename: a failure changes nothing
                    except FileNotFoundError as e:
                        if not self._folderGone(e):
                            raise
                        found = self._relocate(uid)
                        continue
                source = os.path.join(self.folderPath, found.sub, found.name)
                try:
                    self._fs.rename(source, os.path.join(self.folderPath, "cur", target))
                except FileNotFoundError:
                    found = self._relocate(uid)
                    continue
                if found.sub == "new":
                    self._inNew.discard(found.base)
                found.sub, found.name = "cur", target
                self._dirty = True
                if flagsChange:
                    # RFC 7162 §3.1: a flag change gets a new mod-sequence.
                    found.modseq = self._takeModseq()
                    self._record("f", uid, owner)
                return imapFlags(target, self.keywords.keywordFor)
            raise MessageGone(uid)

    def newUIDs(self) -> list[int]:
        """
        The UIDs of the messages in C{new/}, as last seen.
        """
        with self._lock:
            return sorted(self._byBase[b] for b in self._inNew)

    def claimNew(self) -> list[int]:
        """
        Move every message still in C{new/} to C{cur/}, flags unchanged.

        @return: the UIDs this call moved (not those another session moved
            first): the messages that are C{\\\\Recent} to the caller.
        """
        with self._lock:
            claimed: list[int] = []
            if not self._inNew:
                return claimed
            curBefore = self._mtime("cur")
            for base in sorted(self._inNew, key=lambda b: self._byBase[b]):
                found = self._entries[self._byBase[base]]
                _, system, letters = parseFlags(found.name)
                target = withFlags(found.base, system, letters)
                try:
                    self._fs.rename(os.path.join(self.folderPath, "new", found.name), os.path.join(self.folderPath, "cur", target))
                except FileNotFoundError:
                    continue  # another session (or POP3) took it
                found.sub, found.name = "cur", target
                self._dirty = True
                claimed.append(found.uid)
            self._inNew.difference_update(self._entries[u].base for u in claimed)
            if claimed and curBefore and curBefore == self._stamps["cur"]:
                # C{cur/} was as the index knew it, and changed by these
                # renames: the next refresh need not list it (a large
                # folder's C{cur/} is most of a refresh), but a change by
                # another process in the same moment cannot be ruled out,
                # so it is listed by the next settle() and not saved as
                # known (see "Refresh" in the module docstring).
                after = self._mtime("cur")
                if after:
                    self._stamps["cur"] = after
                    self._unverified.add("cur")
            return claimed

    def _mtime(self, sub: str) -> int:
        """
        The directory's mtime (nanoseconds), 0 if it is gone.
        """
        try:
            return os.stat(os.path.join(self.folderPath, sub)).st_mtime_ns
        except FileNotFoundError:
            return 0

    # -- changes ------------------------------------------------------------------

    def expunge(self, uids: Iterable[int]) -> list[int]:
        """
        Remove messages: unlink their files, fsync the directories.

        @return: the UIDs removed by this call (one already gone is left
            out; it is dropped from the index all the same).
        @raise OSError: a file could not be removed; those before it are.
        """
        with self._lock:
            removed = []
            directories = set()
            try:
                for uid in sorted(set(uids)):
                    found = self._entries.get(uid)
                    if found is None:
                        continue
                    for attempt in range(2):
                        try:
                            self._fs.unlink(os.path.join(self.folderPath, found.sub, found.name))
                            removed.append(uid)
                            directories.add(found.sub)
                            break
                        except FileNotFoundError:
                            try:
                                found = self._relocate(uid)
                            except MessageGone:
                                break
            finally:
                for sub in sorted(directories):
                    self._fs.fsyncDirectory(os.path.join(self.folderPath, sub))
                self._refresh()
            return removed

    def append(self, content: bytes, flags: Iterable[str] = (), internalDate: float | None = None, keywords: Iterable[str] = ()) -> int:
        """
        Add a message (APPEND): write C{tmp/}, fsync, rename into C{cur/}
        with its flags, fsync C{cur/}, give it a UID; the file's mtime is
        set to the internal date.

        @param content: the message; bare LF line ends become CRLF.
        @param flags: IMAP system flags.
        @param internalDate: seconds since the epoch, or C{None} for now.
        @param keywords: IMAP keywords.
        @return: its UID.
        @raise OSError: it could not be stored; nothing of it is left.
        """
        content = toCRLF(content)
        system, letters = self._imapToMaildir(flags, keywords)
        when = self._clock.seconds() if internalDate is None else internalDate
        with self._lock:  # the name counter
            base = self._names.make(len(content))
        # The leading seconds are the internal date (see the module docstring).
        base = f"{int(when)}" + base[base.index(".") :]
        return self._place([(content, None, base, system, letters, when)])[0]

    def _place(self, items: list[tuple[bytes | None, str | None, str, set[str], set[str], float]]) -> list[int]:
        """
        Put messages into C{cur/}: each item is C{(content or None, source
        path to link or None, base, system flags, keyword letters, mtime)}.
        """
        placed: list[str] = []
        fs = self._fs
        try:
            for content, source, base, system, letters, when in items:
                temporary = os.path.join(self.folderPath, "tmp", base)
                if source is not None:
                    try:
                        fs.link(source, temporary)
                    except OSError as e:
                        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                            raise
                        content = readFile(fs, source)
                if content is not None and not os.path.exists(temporary):
                    fd = fs.openExclusive(temporary, 0o600)
                    try:
                        try:
                            fs.write(fd, content)
                            fs.fsync(fd)
                        finally:
                            fs.close(fd)
                    except BaseException:
                        try:
                            fs.unlink(temporary)
                        except OSError:
                            pass
                        raise
                if source is None:
                    os.utime(temporary, (when, when))
                target = os.path.join(self.folderPath, "cur", withFlags(base, system, letters))
                try:
                    fs.rename(temporary, target)
                except BaseException:
                    try:
                        fs.unlink(temporary)
                    except OSError:
                        pass
                    raise
                placed.append(target)
            fs.fsyncDirectory(os.path.join(self.folderPath, "cur"))
        except BaseException:
            for target in placed:
                try:
                    fs.unlink(target)
                except OSError:
                    pass
            raise
        with self._lock:
            self._stamps["cur"] = 0
            self._refresh()
            return [self._byBase[os.path.basename(t).split(":", 1)[0]] for t in placed]

    def copy(self, uids: Iterable[int], target: "FolderIndex") -> list[int]:
        """
        Copy messages into another folder's index (hard links where the
        file system allows, else copies), flags and internal dates kept.

        @return: the new UIDs in C{target}, in the order of C{uids}.
        @raise MessageGone: a message is gone; nothing was copied.
        @raise OSError: nothing was copied.
        """
        items = []
        for uid in uids:
            with self._lock:
                flags = self.flags(uid)
                fd = self.open(uid)  # follows a rename; proves it is there
                self._fs.close(fd)
                found = self.entry(uid)
                name, sub, size, date = found.name, found.sub, found.size, found.date
            # Our lock is released before the target's is taken (see "The lock").
            system, letters = target._imapToMaildir(flags, [f for f in flags if not f.startswith("\\")])
            _, oldSystem, _ = parseFlags(name)
            system |= oldSystem - set("DFRST")
            with target._lock:  # the name counter
                base = target._names.make(size if size >= 0 else 0)
            if size < 0:
                base = base.split(",", 1)[0]
            base = f"{date}" + base[base.index(".") :]
            source = os.path.join(self.folderPath, sub, name)
            items.append((None, source, base, system, letters, float(date)))
        if not items:
            return []
        return target._place(items)

    # -- the side store -------------------------------------------------------------

    def _cacheDescriptor(self) -> int | None:
        """
        A descriptor on the side store, kept open; reopened when the file
        was replaced.
        """
        try:
            st = os.stat(self._cachePath) if self._cacheFd is None else None
        except FileNotFoundError:
            return None
        if self._cacheFd is None and st is not None:
            try:
                self._cacheFd = self._fs.openRead(self._cachePath)
            except FileNotFoundError:
                return None
        return self._cacheFd

    def _readCacheTail(self) -> None:
        fd = self._cacheDescriptor()
        if fd is None:
            self._cacheOffsets, self._cacheEnd = _noOffsets(), 0
            return
        end = os.fstat(fd).st_size
        if end < self._cacheEnd:  # replaced: start again
            self._cacheOffsets, self._cacheEnd = _noOffsets(), 0
            self._columns = _HeaderColumns()
        if end == self._cacheEnd:
            return
        data = os.pread(fd, end - self._cacheEnd, self._cacheEnd)
        offset = self._cacheEnd
        complete = data.rfind(b"\n") + 1
        pending = self._columns.pending if self._columns.loaded else None
        offsets = self._cacheOffsets
        for line in data[:complete].split(b"\n")[:-1]:
            first = line.find(b"\t")
            if first > 0 and line[first + 2 : first + 3] == b"\t":
                column = offsets.get(line[first + 1 : first + 2].decode("latin-1"))
                if column is not None:
                    base = line[:first].decode("utf-8", "surrogateescape")
                    start = offset + first + 3
                    where = start << 32 | (len(line) - first - 3)
                    if pending is not None and column is offsets["h"] and column.get(base) != where:
                        # (One this index stored itself is in the columns.)
                        pending.append((base, start, len(line) - first - 3))
                    column[base] = where
            offset += len(line) + 1
        self._cacheEnd += complete

    def _cached(self, base: str, kind: str) -> object | None:
        where = self._cacheOffsets[kind].get(base)
        if where is None:
            self._readCacheTail()
            where = self._cacheOffsets[kind].get(base)
            if where is None:
                return None
        fd = self._cacheDescriptor()
        if fd is None:
            return None
        try:
            return json.loads(os.pread(fd, where & _LENGTH, where >> 32))
        except ValueError:
            return None

    def _store(self, base: str, kind: str, value: object) -> None:
        """
        Append a record to the side store (through a descriptor kept open
        until L{close}) and note where it went, so that no read finds it
        again; a C{h} record goes into the in-memory columns at once.
        Called with the lock held.
        """
        data = json.dumps(value, separators=(",", ":")).encode("ascii")
        head = base.encode("utf-8", "surrogateescape") + b"\t" + kind.encode("ascii") + b"\t"
        if "\t" in base or "\n" in base:
            return
        fd = self._cacheAppendFd
        if fd is None:
            try:
                fd = os.open(self._cachePath, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                self.log.failure("cannot open {path}", path=self._cachePath)
                return
            self._cacheAppendFd = fd
        line = head + data + b"\n"
        try:
            self._fs.write(fd, line)
            end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: just after our line
        except OSError:
            self.log.failure("cannot write {path}", path=self._cachePath)
            self._cacheAppendFd = None
            self._fs.close(fd)
            return
        if len(data) <= _LENGTH:
            self._cacheOffsets[kind][base] = (end - len(data) - 1) << 32 | len(data)
            if kind == "h" and self._columns.loaded:
                self._columns.add(base, value)
            if end - len(line) == self._cacheEnd:
                self._cacheEnd = end  # nobody else wrote since: nothing to read back

    def _cachedOrCompute(self, uid: int, kind: str, compute: Callable[[], object]) -> object:
        base = self.entry(uid).base
        with self._lock:
            value = self._cached(base, kind)
        if value is not None:
            return value
        value = compute()
        with self._lock:
            self._store(base, kind, value)
        return value

    def cachedEnvelope(self, uid: int) -> list:
        """
        The message's ENVELOPE (L{mailhub.imap.message.envelope}), computed
        from its header on first use and kept in the side store.
        """
        value = self._cachedOrCompute(uid, "e", lambda: _toJSON(envelope(self.readHeader(uid))))
        return _fromJSON(value)  # type: ignore[return-value]

    def cachedEnvelopeText(self, uid: int) -> bytes:
        """
        The message's ENVELOPE as IMAP text, without the outer parentheses
        (L{mailhub.imap.message.nestedList} of L{cachedEnvelope}), kept in
        the side store as it is sent: a FETCH reads it with one C{pread}
        and writes it out as it is.
        """

        def compute() -> str:
            with self._lock:
                value = self._cached(self.entry(uid).base, "e")
            found = _fromJSON(value) if value is not None else envelope(self.readHeader(uid))
            return nestedList(found).decode("latin-1")  # type: ignore[arg-type]

        value = self._cachedOrCompute(uid, "E", compute)
        return value.encode("latin-1") if isinstance(value, str) else nestedList(envelope(self.readHeader(uid)))

    def cachedBodyStructure(self, uid: int) -> list:
        """
        The message's BODYSTRUCTURE (extensible form), computed from the
        whole message on first use and kept in the side store.
        """
        value = self._cachedOrCompute(uid, "s", lambda: _toJSON(bodyStructure(self.read(uid))))
        return _fromJSON(value)  # type: ignore[return-value]

    def _headerFields(self, uid: int) -> dict[str, list[str]]:
        def compute() -> object:
            found: dict[str, list[str]] = {}
            for name, raw in _fields(self.readHeader(uid)):
                if name in CACHED_HEADERS:
                    found.setdefault(name, []).append(_unfold(raw).decode("latin-1"))
            return found

        value = self._cachedOrCompute(uid, "h", compute)
        assert isinstance(value, dict)
        return value

    def cachedHeaders(self, uid: int) -> dict[str, list[bytes]]:
        """
        The raw, unfolded values of the L{CACHED_HEADERS} fields present in
        the message (a field it lacks is absent from the result), from the
        header on first use and the side store after.
        """
        return {name: [v.encode("latin-1") for v in values] for name, values in self._headerFields(uid).items()}

    def cachedHeader(self, uid: int, name: str) -> list[bytes]:
        """
        The raw values of one of the L{CACHED_HEADERS} fields (see
        L{cachedHeaders}); the L{SEARCH_HEADERS} ones from memory once
        L{searchHeaders} loaded them.
        """
        if name in SEARCH_HEADERS:
            with self._lock:
                base = self.entry(uid).base
                values = self._columns.values(base, name) if self._columns.loaded else None
            if values is not None:
                return values
        return [v.encode("latin-1") for v in self._headerFields(uid).get(name, ())]

    def _syncColumns(self) -> None:
        """
        Bring L{_columns} up to date with the side store: every C{h} record
        the first time (one read, one JSON parse of them all), the appended
        ones after.  Called with the lock held.
        """
        columns = self._columns
        self._readCacheTail()
        if self._columns is not columns or not columns.loaded:
            columns = self._columns
            columns.loaded = True
            columns.pending = [(base, where >> 32, where & _LENGTH) for base, where in self._cacheOffsets["h"].items()]
        pending, columns.pending = columns.pending, []
        if not pending:
            return
        fd = self._cacheDescriptor()
        if fd is None:
            return
        low = min(offset for _, offset, _ in pending)
        high = max(offset + length for _, offset, length in pending)
        if high - low <= max(64 << 20, 64 * len(pending)):
            data, at = os.pread(fd, high - low, low), low
        else:
            data, at = None, 0
        slices = [
            data[offset - at : offset - at + length] if data is not None else os.pread(fd, length, offset)
            for _, offset, length in pending
        ]
        try:
            values = json.loads(b"[" + b",".join(slices) + b"]")
        except ValueError:
            values = []
            for piece in slices:
                try:
                    values.append(json.loads(piece))
                except ValueError:
                    values.append(None)
        for (base, _, _), fields in zip(pending, values):
            columns.add(base, fields)

    def searchHeaders(self) -> Callable[[int, str], list[bytes] | None]:
        """
        For a SEARCH: bring the in-memory L{SEARCH_HEADERS} columns up to
        date with the side store (loaded once per index, then only what
        was appended) and return C{lookup(uid, name)}: the field's raw
        values from memory, or C{None} when the field is not kept there or
        the message has no record yet (ask L{cachedHeader}, which computes
        and stores it).
        """
        with self._lock:
            self._syncColumns()
        lock = self._lock

        def lookup(uid: int, name: str) -> list[bytes] | None:
            if name not in SEARCH_HEADERS:
                return None
            with lock:
                found = self._entries.get(uid)
                return None if found is None else self._columns.values(found.base, name)

        return lookup

    def headerCandidates(self, name: str, value: str) -> set[int] | None:
        """
        For a SEARCH key C{HEADER name value} (C{SUBJECT}, C{FROM}...): the
        UIDs of the messages that may match, or C{None} when this cannot
        narrow it (a field not kept in memory, an empty or non-ASCII
        value).  Messages whose fields are not in the side store yet are
        among the candidates.  Call L{searchHeaders} first.
        """
        wanted = value.casefold()
        if name not in SEARCH_HEADERS or not wanted or not wanted.isascii() or "\n" in wanted or "\r" in wanted:
            return None
        with self._lock:
            columns = self._columns
            if not columns.loaded:
                return None
            rows = columns.rows
            hits = columns.mayContain(name, wanted.encode("ascii"))
            out = set()
            for uid, found in self._entries.items():
                row = rows.get(found.base)
                if row is None or row in hits:
                    out.add(uid)
            return out

    def unseenCount(self) -> int:
        """
        How many messages lack C{\\Seen}; counted from the names once per
        change (L{generation}).
        """
        with self._lock:
            if self._unseen is None or self._unseen[0] != self.generation:
                count = 0
                for found in self._entries.values():
                    if "S" not in found.name.partition(":2,")[2]:
                        count += 1
                self._unseen = (self.generation, count)
            return self._unseen[1]


#: A folder's index stays in memory after its last session let go of it,
#: so that the next session (clients log in again and again, and open a
#: session per folder) finds it loaded instead of reading the index, the
#: UID list and the side store again: for up to this many seconds after
#: it was last asked for (L{sharedIndex})...
LINGER_SECONDS = 900.0

#: ...while the lingering indexes hold no more than this many messages in
#: all; the least recently used go first.  A folder larger than this never
#: lingers: it stays only while a session holds it.
LINGER_MESSAGES = 300_000

_shared: "weakref.WeakValueDictionary[str, FolderIndex]" = weakref.WeakValueDictionary()
#: key -> (when last asked for, index), least recently asked for first.
_lingering: "OrderedDict[str, tuple[float, FolderIndex]]" = OrderedDict()
_sharedLock = threading.Lock()


def sharedIndex(folderPath: str, fs: FileSystem | None = None, clock: IReactorTime | None = None) -> FolderIndex:
    """
    The process's one L{FolderIndex} of a folder, made on first use and
    kept while a session holds it, and after that for a while (see
    L{LINGER_SECONDS} and L{LINGER_MESSAGES}): sessions share the index
    (its memory is per folder, not per session) and see each other's
    changes at once.  Lingering indexes past their time or over the
    message bound are let go here, at the next call (judged by their sizes
    then): no timer runs for them.
    """
    key = os.path.realpath(folderPath)
    with _sharedLock:
        index = _shared.get(key)
        if index is None:
            index = FolderIndex(folderPath, fs, clock)
            _shared[key] = index
        now = index._clock.seconds()
        _lingering.pop(key, None)
        _lingering[key] = (now, index)
        _pruneLingering(now)
        return index


def _pruneLingering(now: float) -> None:
    """
    Let go of the lingering indexes that are too old, then of the least
    recently used ones while they hold too many messages.  Called with
    C{_sharedLock} held.
    """
    # Every entry is looked at (there are few): entries do not have to be
    # in time order (indexes of different clocks, as in tests).
    for key in [k for k, (when, _) in _lingering.items() if now - when > LINGER_SECONDS]:
        del _lingering[key]
    total = sum(index.messageCount() for _, index in _lingering.values())
    while _lingering and total > LINGER_MESSAGES:
        _, (_, index) = _lingering.popitem(last=False)
        total -= index.messageCount()


def iterUIDs(uids: Sequence[int], ranges: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """
    C{(sequence number, UID)} of the UIDs in C{ranges} (inclusive UID
    ranges, sorted), found by bisection in the ascending list C{uids};
    each UID once.
    """
    done = 0
    for low, high in ranges:
        start = max(bisect.bisect_left(uids, low), done)
        end = bisect.bisect_right(uids, high)
        for i in range(start, end):
            yield i + 1, uids[i]
        done = max(done, end)


__all__ = [
    "CACHED_HEADERS",
    "CACHE_NAME",
    "Changes",
    "FolderIndex",
    "INDEX_NAME",
    "IndexEntry",
    "MessageGone",
    "ModifiedSince",
    "SEARCH_HEADERS",
    "imapFlags",
    "iterUIDs",
    "sharedIndex",
]
