# -*- test-case-name: tests.relay.test_queue -*-
"""
The durable relay queue, under C{DATA/queue/} (DESIGN.md, "Queue").

One entry per accepted message, two files:

    - C{ID.msg}: the message as it will be sent (CRLF lines, with our
      C{Received:} header, without C{Return-Path:});
    - C{ID.env}: the envelope record: compact JSON (C{"v"}, the format
      version, and every L{QueueEntry} field), then a line with the
      CRC-32 of that JSON in hex, which is also its end marker.

The C{.env} file's existence makes the entry exist.  An add is made
durable with one sync (L{Queue.stage}): the message is written straight to
C{ID.msg} (created exclusively: a message without its record is no entry),
the record in C{tmp/} and renamed into place without replacing one, and
then one C{syncfs} (or, without group sync, each file is fsynced before
the rename and the directory once after) makes all of it durable before
the client hears C{250}.  A crash before that sync may leave the message
without its record, and, with group sync, files whose blocks never
reached the disk.  Such an entry was
never acknowledged, so its record says how to recognise it: the record of
an add carries its message's size (C{"size"}) and CRC-32 (C{"crc32"}),
and its own checksum line.  On reading (L{Queue.get}, L{Queue.scan}) an
entry is I{torn}, and removed with a log line, when:

    - its record is empty, cut short (no end marker: a prefix of a
      version 2 record), or has NUL bytes (blocks that were never written:
      JSON escapes every NUL, so a record we wrote has none); or
    - its record carries C{"crc32"} and its message is missing, or of
      another size, or of another CRC-32 with a block of zeros in it.

What a crash leaves is never anything else, so anything else is damage
after the fact, not a torn add, and may be mail that was acknowledged: a
record that is complete but cannot be used (its own checksum does not
match, an unknown version, a bad field, too large), a record without
C{"crc32"} whose message is missing, a message of the right size whose
CRC-32 does not match though no block of it is zeros.  Then both files are
moved aside to C{corrupt/} with a log line: not deleted, not sent, not
retried forever.

L{Queue.update} replaces a record only once the message is durable (a
sync before the rename), so its records drop C{"crc32"}: an entry that has
been updated once is never checked against its message again, and loading
a big deferred queue reads no messages.  Version 1 records (plain JSON,
written with two syncs, never torn) are still read.

C{ID.lock} marks an entry "in flight": whoever reads, changes and writes
back an entry (the manager during an attempt, C{mailhub queue flush} and
C{delete}) holds it, so that two writers never overwrite each other's
recipient states.  It is taken exclusively, as a hard link to the
process's owner file C{tmp/owner.PID.TOKEN} (which says who holds it),
or as a file of its own where there are no hard links
(L{Queue.markInFlight}).

Every method blocks on the disk: the server runs them on a thread.
"""

from __future__ import annotations

import errno
import itertools
import json
import math
import os
import re
import secrets
import signal
import threading
import zlib
from typing import Any, Iterator

from attrs import evolve, frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mailhub.errors import MailhubError
from mailhub.fs import FileSystem
from mailhub.locks import pidAlive
from mailhub.relay.values import FAILED, PENDING, SENT, QueuedRecipient, QueueEntry

#: The envelope format this code writes (it reads version 1 too).
VERSION = 2

#: How a version 2 record starts (C{"v"} is its first key): a torn record
#: is empty, a prefix of this, or starts with it and has no end marker.
_HEAD = b'{"v":2,'

#: A version 2 record's last line: the CRC-32 of the JSON before it.
_TRAILER = re.compile(rb"\n([0-9a-f]{8})\n\Z")

#: Read a message to check it in pieces of this size (a multiple of any
#: block size, so that no block straddles two pieces).
_CHUNK = 1 << 20

#: A disk block that was never written reads as zeros: a message of the
#: right size with a run of this many zero bytes and the wrong CRC-32 is
#: torn (mail never has one); without it, it is damage (L{Queue.get}).
_ZERO_BLOCK = b"\0" * 512

#: Files this much older than the scan that nothing claims are leftovers
#: of a crash: an orphan C{.msg}, a temporary file, an unreadable marker.
LEFTOVER_AGE = 60.0

#: An envelope larger than this is not read (it cannot be one we wrote
#: for any sane number of recipients).
MAX_ENVELOPE = 16 * 1024 * 1024

#: The pid file the running server writes in the data directory.
PID_FILE = "mailhub.pid"

#: The request C{mailhub queue flush} leaves for the server with its
#: signal (L{Queue.requestFlush}).
FLUSH_REQUEST = "flush.request"

#: How an owner file's name starts (C{tmp/owner.PID.TOKEN}, see
#: L{Queue.markInFlight}).
OWNER_PREFIX = "owner."

#: What link(2) says where a file system has no hard links (or no more
#: for that file): markers are then files of their own.
_NO_LINKS = frozenset((errno.EPERM, errno.EXDEV, errno.EMLINK, errno.EOPNOTSUPP, errno.ENOTSUP))

_STATES = frozenset((PENDING, SENT, FAILED))
_ID = re.compile(r"[0-9A-Za-z]{1,64}")

#: This process, in temporary file names and in-flight markers: tells our
#: own live files from a crashed process's (whose pid may be ours again).
_TOKEN = secrets.token_hex(8)
_counter = itertools.count()
#: Ids this process is adding right now: their C{.msg} is not an orphan.
_adding: set[str] = set()


class GroupSync:
    """
    Group commit for queue writes from many threads: L{sync} makes durable
    everything written on the file system before it was called, with one
    C{syncfs(2)} shared by every thread that asks while one is running
    (the Maildir committer's grouping, for the queue's thread-pool
    callers).

    A caller waits for a C{syncfs} that started after it called, so the
    order of its own steps holds: what it wrote before L{sync} returns is
    on disk before anything it does next.

    @param fs: the file operations; must offer C{syncfs}.
    @param directory: a directory on the file system to sync.
    """

    def __init__(self, fs: FileSystem, directory: str) -> None:
        self._fs = fs
        self._directory = directory
        self._fd: int | None = None
        self._condition = threading.Condition()
        self._started = 0
        self._done = 0
        self._running = False
        self._errors: dict[int, OSError] = {}
        self.syncs = 0

    def sync(self) -> None:
        """
        Block until a C{syncfs} that started after this call has finished.

        @raise OSError: that C{syncfs} failed (a write-back error).
        """
        with self._condition:
            target = self._started + 1
            while True:
                if self._done >= target:
                    error = self._errors.get(target)
                    if error is not None:
                        raise error
                    return
                if not self._running:
                    self._running = True
                    self._started += 1
                    generation = self._started
                    break
                self._condition.wait()
        error = None
        try:
            if self._fd is None:
                self._fd = self._fs.openDirectory(self._directory)
            self._fs.syncfs(self._fd)
        except OSError as e:
            error = e
        with self._condition:
            self.syncs += 1
            self._running = False
            self._done = generation
            if error is not None:
                self._errors[generation] = error
            for old in [g for g in self._errors if g < generation - 1000]:
                del self._errors[old]
            self._condition.notify_all()
        if error is not None:
            raise error

    def close(self) -> None:
        """
        Close the descriptor it syncs through.
        """
        with self._condition:
            fd, self._fd = self._fd, None
        if fd is not None:
            self._fs.close(fd)


class StagedEntry:
    """
    An entry on its way in (L{Queue.stage}): both files in place, not yet
    known to be durable.

    @ivar entry: the entry (with its size).
    @ivar claimed: whether its in-flight marker was taken.
    """

    def __init__(self, entry: QueueEntry) -> None:
        self.entry = entry
        self.claimed = False


class NoSuchEntry(MailhubError, LookupError):
    """
    There is no queue entry with that id.
    """


class _Unreadable(Exception):
    """
    An envelope record that cannot be parsed, or an entry that cannot be
    sent, though nothing says a crash cut it short: damage, moved aside to
    C{corrupt/}.  The message says why.
    """


class _Torn(Exception):
    """
    An entry that an add was writing when the system crashed, before the
    sync that would have made it durable (so it was never acknowledged):
    removed.  The message says why.
    """


def _staleOwner(name: str) -> bool:
    """
    Whether the owner file C{name} (C{owner.PID.TOKEN}) belongs to a
    process that is gone: not this one (by its token), and its pid dead or
    ours (a crashed earlier server with our pid).  Markers linked to it
    are stale by the same test (L{Queue._staleMarker}); removing it does
    not remove them.
    """
    _, _, rest = name.partition(OWNER_PREFIX)
    pid, _, token = rest.partition(".")
    if token == _TOKEN:
        return False
    if not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return True
    return not pidAlive(int(pid))


def checkId(queueId: object) -> str:
    """
    A queue id, checked to be safe as a file name.

    @raise ValueError: anything but 1 to 64 ASCII letters and digits (no
        path separators, dots or NULs can reach the file system).
    """
    if not isinstance(queueId, str) or not _ID.fullmatch(queueId):
        raise ValueError(f"not a queue id: {queueId!r}")
    return queueId


@frozen
class Flushed:
    """
    What L{Queue.requestFlush} did.

    @ivar ids: entries now due (rewritten to C{nextAttempt = 0}, or due
        already).
    @ivar busy: entries being tried right now, left alone.
    """

    ids: tuple[str, ...]
    busy: tuple[str, ...]


def encode(entry: QueueEntry, crc32: int | None = None) -> bytes:
    """
    The C{.env} record of C{entry}: compact JSON, ASCII, then the line
    with its CRC-32.

    @param crc32: the CRC-32 of the message, for the record an add writes
        (checked on reading, see the module's description); C{None} for
        a record that replaces another.
    """
    document: dict[str, Any] = {
        "v": VERSION,
        "id": entry.id,
        "sender": entry.sender,
        "recipients": [
            {
                "address": r.address,
                "state": r.state,
                "response": r.response,
                "remoteMTA": r.remoteMTA,
            }
            for r in entry.recipients
        ],
        "created": entry.created,
        "nextAttempt": entry.nextAttempt,
        "attempts": entry.attempts,
        "lastError": entry.lastError,
        "warned": entry.warned,
        "size": entry.size,
    }
    if crc32 is not None:
        document["crc32"] = crc32
    body = json.dumps(document, separators=(",", ":"), allow_nan=False).encode("ascii")
    return body + b"\n%08x\n" % zlib.crc32(body)


def _rejectConstant(name: str) -> Any:
    raise _Unreadable(f"{name} is not a number")


def _field(document: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    if key not in document:
        if default is None:
            raise _Unreadable(f"{key} is missing")
        return default
    value = document[key]
    # bool is an int: never accept one for the other.
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise _Unreadable(f"{key} has the wrong type")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Unreadable(f"{key} is not finite")
    return value


def decode(data: bytes, queueId: str) -> QueueEntry:
    """
    Parse a C{.env} record (version 2, or version 1), checking every field.

    @raise _Torn: it is what a crash leaves of a record being written.
    @raise _Unreadable: it is not a record of entry C{queueId}.
    """
    return _decode(data, queueId)[0]


def _decode(data: bytes, queueId: str) -> tuple[QueueEntry, int | None]:
    """
    L{decode}, and the CRC-32 of the message the record carries, if any.
    """
    if b"\0" in data:
        raise _Torn("the record has blocks that were never written")
    trailer = _TRAILER.search(data)
    if trailer is not None:
        body = data[: trailer.start()]
        if zlib.crc32(body) != int(trailer.group(1), 16):
            raise _Unreadable("the record's checksum does not match")
        version = VERSION
    elif _HEAD.startswith(data) or data.startswith(_HEAD):
        raise _Torn("the record is cut short")
    else:
        body, version = data, 1
    try:
        document = json.loads(body, parse_constant=_rejectConstant)
    except (ValueError, RecursionError) as e:
        raise _Unreadable(f"not JSON: {e}") from None
    if not isinstance(document, dict):
        raise _Unreadable("not a JSON object")
    if document.get("v") != version:
        raise _Unreadable(f"unknown version {document.get('v')!r}")
    if document.get("id") != queueId:
        raise _Unreadable("the id does not match the file name")
    number = (int, float)
    recipients = []
    rawRecipients = _field(document, "recipients", list)
    if not rawRecipients:
        raise _Unreadable("no recipients")
    for raw in rawRecipients:
        if not isinstance(raw, dict):
            raise _Unreadable("a recipient is not an object")
        state = _field(raw, "state", str)
        if state not in _STATES:
            raise _Unreadable(f"unknown recipient state {state!r}")
        recipients.append(
            QueuedRecipient(
                address=_field(raw, "address", str),
                state=state,
                response=_field(raw, "response", str, ""),
                remoteMTA=_field(raw, "remoteMTA", str, ""),
            )
        )
    attempts = _field(document, "attempts", int, 0)
    size = _field(document, "size", int, 0)
    if attempts < 0 or size < 0:
        raise _Unreadable("a count is negative")
    crc32 = None
    if version > 1 and "crc32" in document:
        crc32 = _field(document, "crc32", int)
        if not 0 <= crc32 <= 0xFFFFFFFF:
            raise _Unreadable("crc32 is out of range")
    entry = QueueEntry(
        id=queueId,
        sender=_field(document, "sender", str),
        recipients=tuple(recipients),
        created=float(_field(document, "created", number)),
        nextAttempt=float(_field(document, "nextAttempt", number)),
        attempts=attempts,
        lastError=_field(document, "lastError", str, ""),
        warned=_field(document, "warned", bool, False),
        size=size,
    )
    return entry, crc32


def _checksum(fd: int, size: int) -> int:
    """
    The CRC-32 of the first C{size} bytes of the file open on C{fd}.

    @raise OSError: it has fewer.
    """
    crc, offset = 0, 0
    while offset < size:
        chunk = os.pread(fd, min(_CHUNK, size - offset), offset)
        if not chunk:
            raise OSError(errno.EIO, "short read: the file is shorter than its size")
        crc = zlib.crc32(chunk, crc)
        offset += len(chunk)
    return crc


class Queue:
    """
    The relay queue in one directory.

    @param directory: C{DATA/queue}; made (with C{tmp/}) on the first
        L{add}.
    @param fs: the file operations (a seam for tests).
    @param clock: tells the age of leftovers in L{scan}; the global
        reactor when C{None}.
    @param groupSync: make writes durable with this shared L{GroupSync}
        (one C{syncfs} for all the threads writing at once) instead of an
        fsync per file and directory; C{None} (the default) fsyncs each.
    """

    log = Logger()

    def __init__(
        self,
        directory: str,
        fs: FileSystem | None = None,
        *,
        clock: IReactorTime | None = None,
        groupSync: GroupSync | None = None,
    ) -> None:
        self.directory = directory
        self._fs = fs or FileSystem()
        self._group = groupSync
        self._clock = clock
        self._tmp = os.path.join(directory, "tmp")
        self._corrupt = os.path.join(directory, "corrupt")
        self._ready = False
        #: This process's owner file (L{markInFlight}): its pid and path.
        self._owner: tuple[int, str] | None = None
        #: Whether markers are hard links (until the file system says no).
        self._linkMarkers = True

    def _now(self) -> float:
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor  # type: ignore[assignment]
        assert self._clock is not None
        return self._clock.seconds()

    # Paths

    def _path(self, queueId: str, extension: str) -> str:
        return os.path.join(self.directory, f"{checkId(queueId)}.{extension}")

    def messagePath(self, queueId: str) -> str:
        """
        The message file of entry C{queueId} (open it to send it).
        """
        return self._path(queueId, "msg")

    def _tmpPath(self, queueId: str, extension: str) -> str:
        return os.path.join(self._tmp, f"{queueId}.{extension}.{_TOKEN}.{next(_counter)}")

    def _prepare(self) -> None:
        """
        Make C{DATA/queue/tmp/}, once; new directories are made durable.
        """
        if self._ready:
            return
        existed = os.path.isdir(self.directory)
        self._fs.makedirs(self._tmp)
        if not existed:
            self._fs.fsyncDirectory(self.directory)
            self._fs.fsyncDirectory(os.path.dirname(os.path.abspath(self.directory)))
        self._ready = True

    # Writing

    def _writeTemporary(
        self, path: str, content: bytes | None, spoolPath: str | None, size: int, checksum: bool = False
    ) -> int | None:
        """
        Write, fsync (without group sync) and close a new temporary file;
        on failure nothing of it is left.

        @param checksum: compute the CRC-32 of what is written.
        @return: that CRC-32, or C{None} when not asked.
        """
        fs = self._fs
        crc = None
        fd = fs.openExclusive(path)
        try:
            try:
                if content is not None:
                    fs.write(fd, content)
                    if checksum:
                        crc = zlib.crc32(content)
                else:
                    assert spoolPath is not None
                    source = fs.openRead(spoolPath)
                    try:
                        fs.copy(source, fd, size)
                        if checksum:
                            # Read back from the page cache; the copy
                            # itself stays in the kernel.
                            crc = _checksum(source, size)
                    finally:
                        fs.close(source)
                if self._group is None:
                    fs.fsync(fd)
            finally:
                fs.close(fd)
        except BaseException:
            self._unlinkQuietly(path)
            raise
        return crc

    def _syncDirectory(self) -> None:
        """
        Make the directory's entries (and, with group sync, every file
        written before) durable.
        """
        if self._group is not None:
            self._group.sync()
        else:
            self._fs.fsyncDirectory(self.directory)

    def _unlinkQuietly(self, path: str) -> None:
        try:
            self._fs.unlink(path)
        except OSError:
            pass

    def add(
        self,
        entry: QueueEntry,
        content: bytes | None = None,
        spoolPath: str | None = None,
        spoolSize: int = 0,
        *,
        claim: bool = False,
    ) -> None:
        """
        Store a new entry durably: when this returns, both files and their
        directory entries are on disk.  On failure the entry is not there
        (a crash at any point leaves it complete, or torn and removed on
        the next read, see the module's description).

        @param entry: the envelope; its C{size} is recorded as the
            message's.
        @param content: the message, when it is in memory.
        @param spoolPath: otherwise the spool file holding it, of which the
            first C{spoolSize} bytes are copied.
        @param claim: take the entry's in-flight marker before it becomes
            visible (for the relay manager's first attempt); the caller
            gives it back with L{clearInFlight}.
        @raise FileExistsError: an entry with this id exists.
        @raise OSError: the disk said no; nothing was added.
        """
        staged = self._stageChecked(entry, content, spoolPath, spoolSize, claim)
        try:
            self._syncDirectory()
        except BaseException:
            # Not known to be durable: take it back, so that the client
            # hears 451 and sends again without our sending it twice.
            self.abandon(staged)
            raise
        self.finish(staged)

    def _begin(
        self, entry: QueueEntry, content: bytes | None, spoolPath: str | None, spoolSize: int, claim: bool
    ) -> tuple[str, QueueEntry, int]:
        """
        The checks before an add, the marker taken (with C{claim}) and the
        id marked as being added.

        @return: the id, the entry with its size, the size.
        """
        queueId = checkId(entry.id)
        if (content is None) == (spoolPath is None):
            raise TypeError("give either content or spoolPath")
        size = len(content) if content is not None else spoolSize
        entry = evolve(entry, size=size)
        self._prepare()
        # That no entry has this id is checked by the steps themselves:
        # the message is created exclusively, the record renamed in
        # without replacing (L{_stage}).
        if claim and not self.markInFlight(queueId):
            raise FileExistsError(errno.EEXIST, "queue entry is claimed", self._path(queueId, "lock"))
        _adding.add(queueId)
        return queueId, entry, size

    # The steps of an add, for a writer that runs many adds at once
    # around shared syncs (L{mailhub.relay.writer}).

    def stage(
        self,
        entry: QueueEntry,
        content: bytes | None = None,
        spoolPath: str | None = None,
        spoolSize: int = 0,
        *,
        claim: bool = False,
    ) -> StagedEntry:
        """
        The first step of an add: the in-flight marker taken (with
        C{claim}), both files written (not synced) and renamed into place;
        the entry exists but is not durable.  Then L{sync} and L{finish},
        or L{abandon}.  Needs group sync.

        @raise FileExistsError: an entry with this id exists, or its
            marker is held.
        @raise OSError: the disk said no; nothing of it is left.
        """
        assert self._group is not None, "staged adds need group sync"
        return self._stageChecked(entry, content, spoolPath, spoolSize, claim)

    def _stageChecked(
        self, entry: QueueEntry, content: bytes | None, spoolPath: str | None, spoolSize: int, claim: bool
    ) -> StagedEntry:
        queueId, entry, size = self._begin(entry, content, spoolPath, spoolSize, claim)
        try:
            staged = self._stage(queueId, entry, content, spoolPath, size)
        except BaseException:
            _adding.discard(queueId)
            if claim:
                self.clearInFlight(queueId)
            raise
        staged.claimed = claim
        return staged

    def _stage(
        self, queueId: str, entry: QueueEntry, content: bytes | None, spoolPath: str | None, size: int
    ) -> StagedEntry:
        """
        Write the message straight to C{ID.msg} (created exclusively), and
        the record, carrying the message's CRC-32, in C{tmp/}; each is
        fsynced without group sync.  Then rename the record into place
        without replacing one: the entry now exists, with its message
        whole (crashes aside).  A message file without its record is no
        entry (an orphan, see L{scan}), so it needs no rename of its own.

        @raise FileExistsError: an entry with this id exists (or its
            message or its record alone); nothing of it was changed.
        """
        fs = self._fs
        message, envelope = self._path(queueId, "msg"), self._path(queueId, "env")
        tmpEnvelope = self._tmpPath(queueId, "env")
        crc = self._writeTemporary(message, content, spoolPath, size, checksum=True)
        try:
            self._writeTemporary(tmpEnvelope, encode(entry, crc), None, 0)
        except BaseException:
            self._unlinkQuietly(message)
            raise
        try:
            fs.renameNoReplace(tmpEnvelope, envelope)
        except BaseException:
            self._unlinkQuietly(tmpEnvelope)
            self._unlinkQuietly(message)
            raise
        return StagedEntry(entry)

    def finish(self, staged: StagedEntry) -> None:
        """
        A staged entry is durable (a sync after L{stage} succeeded): the
        add is over (its marker, if claimed, stays held).
        """
        _adding.discard(staged.entry.id)

    def abandon(self, staged: StagedEntry) -> None:
        """
        Take back a staged entry not known to be durable: its files and
        its marker removed.
        """
        queueId = staged.entry.id
        try:
            # The record first: the entry no longer exists.
            self._unlinkQuietly(self._path(queueId, "env"))
            self._unlinkQuietly(self._path(queueId, "msg"))
        finally:
            _adding.discard(queueId)
            if staged.claimed:
                self.clearInFlight(queueId)

    def sync(self) -> None:
        """
        Make everything written to the queue so far durable (a shared
        sync with group sync, else a directory fsync).
        """
        self._syncDirectory()

    def update(self, entry: QueueEntry) -> None:
        """
        Replace an entry's envelope atomically (temporary file, sync,
        rename, sync).  Hold the entry's in-flight marker around the read
        and the update.

        The message is made durable before the new record replaces the
        old (the shared sync does it; without group sync the message is
        fsynced), since the new record does not carry the message's CRC-32
        (see the module's description): an add that another process has
        not yet synced can be updated (C{mailhub queue flush}) without
        making its entry one that a crash could tear unnoticed.

        @raise NoSuchEntry: the entry is gone (no C{.env} or C{.msg}).
        """
        queueId = checkId(entry.id)
        envelope, message = self._path(queueId, "env"), self._path(queueId, "msg")
        if not (os.path.exists(envelope) and os.path.exists(message)):
            raise NoSuchEntry(f"no queue entry {queueId}")
        self._prepare()
        tmp = self._tmpPath(queueId, "env")
        self._writeTemporary(tmp, encode(entry), None, 0)
        try:
            if self._group is not None:
                # The new record's data (and the message) durable before
                # it replaces the old.
                self._group.sync()
            else:
                self._fsyncFile(message)
        except BaseException:
            self._unlinkQuietly(tmp)
            raise
        try:
            self._fs.rename(tmp, envelope)
        except BaseException:
            self._unlinkQuietly(tmp)
            raise
        self._syncDirectory()

    def _fsyncFile(self, path: str) -> None:
        fs = self._fs
        fd = fs.openRead(path)
        try:
            fs.fsync(fd)
        finally:
            fs.close(fd)

    def remove(self, queueId: str, *, durable: bool = True) -> None:
        """
        Remove an entry: its envelope first (so it no longer exists), then
        its message, then the directory is fsynced.

        @param durable: wait until the removal is on disk.  C{False} for
            an entry delivered to everyone: the next sync of the queue (or
            the kernel's write-back, within seconds) makes it durable, and
            only an operating-system crash before that brings the entry
            back, to be sent twice (never lost).
        @raise NoSuchEntry: there is no such entry.
        """
        try:
            self._fs.unlink(self._path(queueId, "env"))
        except FileNotFoundError:
            raise NoSuchEntry(f"no queue entry {queueId}") from None
        try:
            self._fs.unlink(self._path(queueId, "msg"))
        except FileNotFoundError:
            pass
        if durable:
            self._syncDirectory()

    # Reading

    def get(self, queueId: str) -> QueueEntry | None:
        """
        Read one entry; an entry an add wrote and nothing updated since is
        checked against its message (its size and CRC-32).

        @return: the entry, or C{None} if there is none; or if it is torn
            (a crash before its add's sync): then both files are removed
            and a line is logged; or if its record is unreadable or its
            message missing: then both are moved aside to C{corrupt/} and
            a line is logged.  (See the module's description.)
        """
        envelope = self._path(queueId, "env")
        try:
            with open(envelope, "rb") as f:
                data = f.read(MAX_ENVELOPE + 1)
        except FileNotFoundError:
            return None
        try:
            if len(data) > MAX_ENVELOPE:
                raise _Unreadable("too large")
            entry, crc = _decode(data, queueId)
            if crc is not None:
                self._checkMessage(entry, crc)
            elif not os.path.exists(self._path(queueId, "msg")):
                raise _Unreadable("its message file is missing")
        except _Torn as e:
            if queueId not in _adding:
                self._removeTorn(queueId, str(e))
            return None
        except _Unreadable as e:
            self._moveAside(queueId, str(e))
            return None
        return entry

    def _checkMessage(self, entry: QueueEntry, crc: int) -> None:
        """
        @raise _Torn: the message is missing, cut short or too long, or of
            the right size but with a block of zeros and the wrong CRC-32.
        @raise _Unreadable: it is of the right size, has no block of zeros,
            and has the wrong CRC-32: damage after it was written, not
            something a crash leaves.
        """
        fs = self._fs
        try:
            fd = fs.openRead(self._path(entry.id, "msg"))
        except FileNotFoundError:
            raise _Torn("its message file is missing") from None
        try:
            size = os.fstat(fd).st_size
            if size != entry.size:
                raise _Torn(f"its message file has {size} bytes, not {entry.size}")
            actual, offset, zeros = 0, 0, False
            while offset < size:
                chunk = os.pread(fd, min(_CHUNK, size - offset), offset)
                if not chunk:
                    raise _Torn("its message file is cut short")
                actual = zlib.crc32(chunk, actual)
                zeros = zeros or _ZERO_BLOCK in chunk
                offset += len(chunk)
        finally:
            fs.close(fd)
        if actual != crc:
            if zeros:
                raise _Torn("its message file has blocks that were never written")
            raise _Unreadable("its message file's checksum does not match")

    def _removeTorn(self, queueId: str, reason: str) -> None:
        """
        Remove a torn entry (the record first) and log it.  Not made
        durable: should another crash bring it back, it is torn again.
        """
        removed = False
        for extension in ("env", "msg"):
            try:
                self._fs.unlink(self._path(queueId, extension))
            except FileNotFoundError:
                continue
            removed = True
        if removed:
            self.log.warn(
                "queue: removed torn entry id={id} ({reason}): a crash came before it was"
                " durable, so it was never acknowledged",
                id=queueId,
                reason=reason,
            )

    def _names(self) -> Iterator[tuple[str, str, os.DirEntry[str]]]:
        """
        C{(id, extension, entry)} for each queue file, streamed.
        """
        try:
            entries = os.scandir(self.directory)
        except FileNotFoundError:
            return
        with entries:
            for dirent in entries:
                stem, dot, extension = dirent.name.partition(".")
                if dot and extension in ("env", "msg", "lock") and _ID.fullmatch(stem):
                    yield stem, extension, dirent

    def ids(self) -> list[str]:
        """
        The id of every entry (every C{.env}), sorted; nothing is parsed.
        """
        return sorted(stem for stem, extension, _ in self._names() if extension == "env")

    def scan(self) -> list[tuple[float, str]]:
        """
        Load the queue: C{(nextAttempt, id)} of every valid entry, sorted,
        reading one envelope at a time (and the message of an entry not
        updated since its add, to check it).  On the way, clean up what a
        crash left: torn entries (L{get}) are removed (logged); unreadable
        envelopes and updated envelopes without a message are moved aside
        to C{corrupt/} (logged); orphan C{.msg} files, temporary files and
        in-flight markers of dead processes are removed.  Safe to call while the server runs: files of an add or
        an attempt in progress are left alone.
        """
        now = self._now()
        pairs: list[tuple[float, str]] = []
        for queueId, extension, dirent in self._names():
            if extension == "env":
                entry = self.get(queueId)
                if entry is not None:
                    pairs.append((entry.nextAttempt, queueId))
            elif extension == "msg":
                if (
                    queueId not in _adding
                    and not os.path.lexists(self._path(queueId, "env"))
                    and _age(dirent, now) > LEFTOVER_AGE
                ):
                    self._removeLeftover(dirent.path, "orphan message file")
            elif self._staleMarker(dirent, now):
                self._removeLeftover(dirent.path, "stale in-flight marker")
        self._cleanTemporary(now)
        pairs.sort()
        return pairs

    def _removeLeftover(self, path: str, what: str) -> None:
        try:
            self._fs.unlink(path)
        except FileNotFoundError:
            return
        except OSError as e:
            self.log.warn("queue: cannot remove {what} {path}: {error}", what=what, path=path, error=e)
            return
        self.log.info("queue: removed {what} {path}", what=what, path=path)

    def _cleanTemporary(self, now: float) -> None:
        try:
            entries = os.scandir(self._tmp)
        except FileNotFoundError:
            return
        with entries:
            for dirent in entries:
                if dirent.name.startswith(OWNER_PREFIX):
                    if _staleOwner(dirent.name):
                        self._removeLeftover(dirent.path, "owner file of a process that is gone")
                elif _TOKEN not in dirent.name and _age(dirent, now) > LEFTOVER_AGE:
                    self._removeLeftover(dirent.path, "temporary file")

    def _moveAside(self, queueId: str, reason: str) -> None:
        """
        Move an entry's files to C{corrupt/} (the message first: a crash
        in between leaves an envelope without a message, which the next
        scan moves too) and log it.
        """
        fs = self._fs
        fs.makedirs(self._corrupt)
        moved = []
        for extension in ("msg", "env"):
            source = self._path(queueId, extension)
            target = _freeName(os.path.join(self._corrupt, f"{queueId}.{extension}"))
            try:
                fs.rename(source, target)
            except FileNotFoundError:
                continue
            moved.append(target)
        if not moved:
            return
        fs.fsyncDirectory(self.directory)
        self.log.error(
            "queue: unreadable entry id={id} ({reason}); moved to {corrupt}",
            id=queueId,
            reason=reason,
            corrupt=self._corrupt,
        )

    # In flight

    def inFlight(self, queueId: str) -> bool:
        """
        Whether someone holds C{queueId}'s marker (an attempt, or a
        command changing it).
        """
        return os.path.lexists(self._path(queueId, "lock"))

    def markInFlight(self, queueId: str) -> bool:
        """
        Take C{queueId}'s marker, C{ID.lock}: a hard link to this
        process's owner file (C{tmp/owner.PID.TOKEN}, holding C{"PID
        TOKEN"}), which makes the name without a new inode, so it costs
        the file system less than a new file, and unlinking it frees no
        inode.  Where the file system has no hard links, a new file with
        the same text, created exclusively.  Either way, whoever reads a
        marker reads who holds it.

        @return: C{True} if taken; C{False} if someone else holds it: then
            leave the entry alone and try again later.
        """
        path = self._path(queueId, "lock")
        if self._linkMarkers:
            for _ in range(2):
                try:
                    self._fs.link(self._ownerFile(), path)
                    return True
                except FileExistsError:
                    return False
                except FileNotFoundError:
                    # Our owner file was removed (by hand): make it again.
                    if not os.path.isdir(self._tmp):
                        raise
                    self._owner = None
                except OSError as e:
                    if e.errno not in _NO_LINKS:
                        raise
                    self._linkMarkers = False
                    break
        return self._createHolderFile(path)

    def _createHolderFile(self, path: str) -> bool:
        """
        Create C{path} exclusively, holding C{"PID TOKEN"} of this process
        (who holds a marker).

        @return: C{False} if it exists.  On a failure nothing of it is
            left.
        """
        try:
            fd = self._fs.openExclusive(path)
        except FileExistsError:
            return False
        try:
            try:
                self._fs.write(fd, f"{os.getpid()} {_TOKEN}\n".encode("ascii"))
            finally:
                self._fs.close(fd)
        except BaseException:
            self._unlinkQuietly(path)
            raise
        return True

    def _ownerFile(self) -> str:
        """
        This process's owner file, made (exclusively) the first time.
        """
        pid = os.getpid()
        if self._owner is not None and self._owner[0] == pid:
            return self._owner[1]
        self._prepare()
        path = os.path.join(self._tmp, f"{OWNER_PREFIX}{pid}.{_TOKEN}")
        # Made already if another Queue object of this process made it.
        self._createHolderFile(path)
        self._owner = (pid, path)
        return path

    def close(self) -> None:
        """
        Remove this process's owner file, if it made one (the markers it
        still holds keep their text; they are stale once it is gone).
        """
        owner, self._owner = self._owner, None
        if owner is not None and owner[0] == os.getpid():
            self._unlinkQuietly(owner[1])

    def clearInFlight(self, queueId: str) -> None:
        """
        Give back C{queueId}'s marker (no error if it is not there).
        """
        try:
            self._fs.unlink(self._path(queueId, "lock"))
        except FileNotFoundError:
            pass

    def _staleMarker(self, dirent: os.DirEntry[str], now: float) -> bool:
        """
        A marker is stale when its process is gone: not this process (by
        its token), and its pid is dead or is ours (a crashed earlier
        server with our pid).  One that cannot be read (a crash while it
        was written) is stale once old.
        """
        try:
            with open(dirent.path, "rb") as f:
                parts = f.read(128).split()
        except FileNotFoundError:
            return False
        if len(parts) != 2 or not parts[0].isdigit():
            return _age(dirent, now) > LEFTOVER_AGE
        pid, token = int(parts[0]), parts[1].decode("ascii", "replace")
        if token == _TOKEN:
            return False
        if pid == os.getpid():
            return True
        return not pidAlive(pid)

    # Flush

    def requestFlush(self, queueId: str | None = None) -> Flushed:
        """
        Make entries due now: rewrite C{nextAttempt} to C{0} for C{queueId},
        or for every entry with recipients pending.  Each is changed under
        its in-flight marker; entries being tried now are left alone.  The
        running server learns of it from L{signalServer}.

        @raise NoSuchEntry: C{queueId} is not in the queue.
        """
        if queueId is not None:
            checkId(queueId)
            if self.get(queueId) is None:
                raise NoSuchEntry(f"no queue entry {queueId}")
            candidates: list[str] = [queueId]
        else:
            candidates = self.ids()
        due: list[str] = []
        busy: list[str] = []
        for candidate in candidates:
            entry = self.get(candidate)
            if entry is None or entry.done:
                continue
            if entry.nextAttempt == 0:
                due.append(candidate)
                continue
            if not self.markInFlight(candidate):
                busy.append(candidate)
                continue
            try:
                # Read again under the marker: it may have changed.
                entry = self.get(candidate)
                if entry is None or entry.done:
                    continue
                self.update(evolve(entry, nextAttempt=0.0))
                due.append(candidate)
            finally:
                self.clearInFlight(candidate)
        self._leaveFlushRequest()
        return Flushed(tuple(due), tuple(busy))

    def _leaveFlushRequest(self) -> None:
        """
        Tell the server that the next attempts on disk say what to flush
        (C{DATA/queue/flush.request}; L{takeFlushRequest}), so that its
        C{SIGUSR1} makes only those entries due.
        """
        self._prepare()
        with open(os.path.join(self.directory, FLUSH_REQUEST), "w") as f:
            f.write("due at the recorded next attempt\n")

    def takeFlushRequest(self) -> bool:
        """
        Take (remove) the request L{requestFlush} leaves.

        @return: whether there was one.
        """
        try:
            self._fs.unlink(os.path.join(self.directory, FLUSH_REQUEST))
        except FileNotFoundError:
            return False
        return True


def _age(dirent: os.DirEntry[str], now: float) -> float:
    try:
        return now - dirent.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return 0.0


def _freeName(path: str) -> str:
    candidate, n = path, 0
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{path}.{n}"
    return candidate


def _commandLine(pid: int) -> bytes | None:
    """
    The command line of process C{pid} (Linux C{/proc}), or C{None} where
    it cannot be read.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read(4096)
    except OSError:
        return None


def readPid(dataDir: str) -> int | None:
    """
    The pid in C{DATA/mailhub.pid}, or C{None} if there is no usable one.
    """
    try:
        with open(os.path.join(dataDir, PID_FILE), "rb") as f:
            text = f.read(64).strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    # 0 and negative pids would signal process groups.
    return pid if pid > 0 else None


def signalServer(dataDir: str) -> bool:
    """
    Ask the running server to look at its queue again: C{SIGUSR1} to the
    pid in C{DATA/mailhub.pid}.

    A stale pid file may name an unrelated process now (whom C{SIGUSR1}
    would kill): where C{/proc} shows its command line, it must mention
    C{mailhub} or C{twistd}.

    @return: whether a server was signalled.
    """
    pid = readPid(dataDir)
    if pid is None:
        return False
    commandLine = _commandLine(pid)
    if commandLine is not None and b"mailhub" not in commandLine and b"twistd" not in commandLine:
        return False
    try:
        os.kill(pid, signal.SIGUSR1)
    except (ProcessLookupError, PermissionError):
        return False
    return True
