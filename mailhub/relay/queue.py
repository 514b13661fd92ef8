# -*- test-case-name: tests.relay.test_queue -*-
"""
The durable relay queue, under C{DATA/queue/} (DESIGN.md, "Queue").

One entry per accepted message, two files:

    - C{ID.msg}: the message as it will be sent (CRLF lines, with our
      C{Received:} header, without C{Return-Path:});
    - C{ID.env}: the envelope, compact JSON: C{"v"} (the format version)
      and every L{QueueEntry} field.

Each is written atomically: a temporary file in C{tmp/}, fsynced, renamed
into place, the directory fsynced.  The C{.env} file's existence makes the
entry exist, and it is renamed into place only after the C{.msg} is
durable there, so a crash leaves a complete entry or an orphan C{.msg}
(removed by L{Queue.scan}), never an envelope without its message.  An
envelope that cannot be read is moved aside to C{corrupt/} with a log line:
not deleted, not retried forever.

C{ID.lock} marks an entry "in flight": whoever reads, changes and writes
back an entry (the manager during an attempt, C{mailhub queue flush} and
C{delete}) holds it, taken with an exclusive create, so that two writers
never overwrite each other's recipient states.

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
from typing import Any, Iterator

from attrs import evolve, frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mailhub.errors import MailhubError
from mailhub.fs import FileSystem
from mailhub.locks import pidAlive
from mailhub.relay.values import FAILED, PENDING, SENT, QueuedRecipient, QueueEntry

#: The envelope format this code writes and reads.
VERSION = 1

#: Files this much older than the scan that nothing claims are leftovers
#: of a crash: an orphan C{.msg}, a temporary file, an unreadable marker.
LEFTOVER_AGE = 60.0

#: An envelope larger than this is not read (it cannot be one we wrote
#: for any sane number of recipients).
MAX_ENVELOPE = 16 * 1024 * 1024

#: The pid file the running server writes in the data directory.
PID_FILE = "mailhub.pid"

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
    An entry on its way in (L{Queue.stage}): its message in place, its
    envelope still in C{tmp/}.

    @ivar entry: the entry (with its size).
    @ivar tmpEnvelope: the envelope's temporary file.
    @ivar claimed: whether its in-flight marker was taken.
    """

    def __init__(self, entry: QueueEntry, tmpEnvelope: str) -> None:
        self.entry = entry
        self.tmpEnvelope = tmpEnvelope
        self.claimed = False


class NoSuchEntry(MailhubError, LookupError):
    """
    There is no queue entry with that id.
    """


class _Unreadable(Exception):
    """
    An envelope record that cannot be parsed; the message says why.
    """


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


def encode(entry: QueueEntry) -> bytes:
    """
    The C{.env} record of C{entry}: compact JSON, ASCII.
    """
    document = {
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
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("ascii")


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
    Parse a C{.env} record, checking every field.

    @raise _Unreadable: it is not a record of entry C{queueId}.
    """
    try:
        document = json.loads(data, parse_constant=_rejectConstant)
    except (ValueError, RecursionError) as e:
        raise _Unreadable(f"not JSON: {e}") from None
    if not isinstance(document, dict):
        raise _Unreadable("not a JSON object")
    if document.get("v") != VERSION:
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
    return QueueEntry(
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

    def _writeTemporary(self, path: str, content: bytes | None, spoolPath: str | None, size: int) -> None:
        """
        Write, fsync and close a new temporary file; on failure nothing of
        it is left.
        """
        fs = self._fs
        fd = fs.openExclusive(path)
        try:
            try:
                if content is not None:
                    fs.write(fd, content)
                else:
                    assert spoolPath is not None
                    source = fs.openRead(spoolPath)
                    try:
                        fs.copy(source, fd, size)
                    finally:
                        fs.close(source)
                if self._group is None:
                    fs.fsync(fd)
            finally:
                fs.close(fd)
        except BaseException:
            self._unlinkQuietly(path)
            raise

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
        (a crash at any point leaves it complete or invisible).

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
        queueId, entry, size = self._begin(entry, content, spoolPath, spoolSize, claim)
        tmpMessage = self._tmpPath(queueId, "msg")
        tmpEnvelope = self._tmpPath(queueId, "env")
        try:
            if self._group is not None:
                self._addGrouped(queueId, entry, content, spoolPath, size, tmpMessage, tmpEnvelope)
            else:
                self._addFsynced(queueId, entry, content, spoolPath, size, tmpMessage, tmpEnvelope)
        except BaseException:
            if claim:
                self.clearInFlight(queueId)
            raise
        finally:
            _adding.discard(queueId)

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
        envelope = self._path(queueId, "env")
        if os.path.lexists(envelope) or os.path.lexists(self._path(queueId, "msg")):
            raise FileExistsError(errno.EEXIST, "queue entry exists", envelope)
        if claim and not self.markInFlight(queueId):
            raise FileExistsError(errno.EEXIST, "queue entry is claimed", self._path(queueId, "lock"))
        _adding.add(queueId)
        return queueId, entry, size

    def _addFsynced(
        self,
        queueId: str,
        entry: QueueEntry,
        content: bytes | None,
        spoolPath: str | None,
        size: int,
        tmpMessage: str,
        tmpEnvelope: str,
    ) -> None:
        """
        L{add} with an fsync of each file and of the directory.
        """
        fs = self._fs
        message, envelope = self._path(queueId, "msg"), self._path(queueId, "env")
        self._writeTemporary(tmpMessage, content, spoolPath, size)
        try:
            self._writeTemporary(tmpEnvelope, encode(entry), None, 0)
        except BaseException:
            self._unlinkQuietly(tmpMessage)
            raise
        try:
            fs.rename(tmpMessage, message)
        except BaseException:
            self._unlinkQuietly(tmpMessage)
            self._unlinkQuietly(tmpEnvelope)
            raise
        try:
            # The message must be durable in place before the envelope
            # can name it: a crash may keep one rename and not the other.
            fs.fsyncDirectory(self.directory)
            fs.rename(tmpEnvelope, envelope)
        except BaseException:
            self._unlinkQuietly(tmpEnvelope)
            self._unlinkQuietly(message)
            raise
        try:
            fs.fsyncDirectory(self.directory)
        except BaseException:
            # Not known to be durable: take it back, so that the client
            # hears 451 and sends again without our sending it twice.
            self._unlinkQuietly(envelope)
            self._unlinkQuietly(message)
            raise

    def _addGrouped(
        self,
        queueId: str,
        entry: QueueEntry,
        content: bytes | None,
        spoolPath: str | None,
        size: int,
        tmpMessage: str,
        tmpEnvelope: str,
    ) -> None:
        """
        L{add} with group sync: L{stage}; one shared sync (both files'
        data and the message's name durable); L{publish}; one more shared
        sync.  A crash before the envelope's rename leaves at most an
        orphan C{.msg}, which L{scan} removes.
        """
        staged = self._stage(queueId, entry, content, spoolPath, size, tmpMessage, tmpEnvelope)
        published = False
        try:
            # The message must be durable in place before the envelope
            # can name it.
            self._syncDirectory()
            self.publish(staged)
            published = True
            self._syncDirectory()
        except BaseException:
            # Not known to be durable: take it back (the client hears 451).
            self._takeBack(staged, published)
            raise

    # The steps of a grouped add, for a writer that runs many adds at once
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
        C{claim}), both files written (not synced), the message renamed
        into place; the entry does not exist yet.  Then a sync, L{publish},
        a sync, and L{finish}; or L{abandon}.  Needs group sync.

        @raise FileExistsError: an entry with this id exists, or its
            marker is held.
        @raise OSError: the disk said no; nothing of it is left.
        """
        assert self._group is not None, "staged adds need group sync"
        queueId, entry, size = self._begin(entry, content, spoolPath, spoolSize, claim)
        try:
            staged = self._stage(
                queueId, entry, content, spoolPath, size,
                self._tmpPath(queueId, "msg"), self._tmpPath(queueId, "env"),
            )
        except BaseException:
            _adding.discard(queueId)
            if claim:
                self.clearInFlight(queueId)
            raise
        staged.claimed = claim
        return staged

    def _stage(
        self,
        queueId: str,
        entry: QueueEntry,
        content: bytes | None,
        spoolPath: str | None,
        size: int,
        tmpMessage: str,
        tmpEnvelope: str,
    ) -> StagedEntry:
        fs = self._fs
        message = self._path(queueId, "msg")
        self._writeTemporary(tmpMessage, content, spoolPath, size)
        try:
            self._writeTemporary(tmpEnvelope, encode(entry), None, 0)
        except BaseException:
            self._unlinkQuietly(tmpMessage)
            raise
        try:
            fs.rename(tmpMessage, message)
        except BaseException:
            self._unlinkQuietly(tmpMessage)
            self._unlinkQuietly(tmpEnvelope)
            raise
        return StagedEntry(entry, tmpEnvelope)

    def publish(self, staged: StagedEntry) -> None:
        """
        Rename a staged entry's envelope into place, once a sync has made
        its files durable: the entry exists (durably after the next sync).
        """
        self._fs.rename(staged.tmpEnvelope, self._path(staged.entry.id, "env"))

    def finish(self, staged: StagedEntry) -> None:
        """
        A published entry is durable: the add is over (its marker, if
        claimed, stays held).
        """
        _adding.discard(staged.entry.id)

    def abandon(self, staged: StagedEntry, published: bool) -> None:
        """
        Take back a staged (or published but not known durable) entry:
        its files and its marker removed.
        """
        try:
            self._takeBack(staged, published)
        finally:
            _adding.discard(staged.entry.id)
            if staged.claimed:
                self.clearInFlight(staged.entry.id)

    def sync(self) -> None:
        """
        Make everything written to the queue so far durable (a shared
        sync with group sync, else a directory fsync).
        """
        self._syncDirectory()

    def _takeBack(self, staged: StagedEntry, published: bool) -> None:
        queueId = staged.entry.id
        if published:
            self._unlinkQuietly(self._path(queueId, "env"))
        self._unlinkQuietly(staged.tmpEnvelope)
        self._unlinkQuietly(self._path(queueId, "msg"))

    def update(self, entry: QueueEntry) -> None:
        """
        Replace an entry's envelope atomically (temporary file, fsync,
        rename, directory fsync).  Hold the entry's in-flight marker
        around the read and the update.

        @raise NoSuchEntry: the entry is gone (no C{.env} or C{.msg}).
        """
        queueId = checkId(entry.id)
        envelope = self._path(queueId, "env")
        if not (os.path.exists(envelope) and os.path.exists(self._path(queueId, "msg"))):
            raise NoSuchEntry(f"no queue entry {queueId}")
        self._prepare()
        tmp = self._tmpPath(queueId, "env")
        self._writeTemporary(tmp, encode(entry), None, 0)
        if self._group is not None:
            try:
                # The new record's data durable before it replaces the old.
                self._group.sync()
            except BaseException:
                self._unlinkQuietly(tmp)
                raise
        try:
            self._fs.rename(tmp, envelope)
        except BaseException:
            self._unlinkQuietly(tmp)
            raise
        self._syncDirectory()

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
        Read one entry.

        @return: the entry, or C{None} if there is none, or if its record
            is unreadable or its message missing: then both are moved aside
            to C{corrupt/} and a line is logged.
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
            entry = decode(data, queueId)
            if not os.path.exists(self._path(queueId, "msg")):
                raise _Unreadable("its message file is missing")
        except _Unreadable as e:
            self._moveAside(queueId, str(e))
            return None
        return entry

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
        reading one envelope at a time.  On the way, clean up what a crash
        left: unreadable envelopes and envelopes without a message are
        moved aside to C{corrupt/} (logged); orphan C{.msg} files,
        temporary files and in-flight markers of dead processes are
        removed.  Safe to call while the server runs: files of an add or
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
                if _TOKEN not in dirent.name and _age(dirent, now) > LEFTOVER_AGE:
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
        Take C{queueId}'s marker (C{ID.lock}, created exclusively).

        @return: C{True} if taken; C{False} if someone else holds it: then
            leave the entry alone and try again later.
        """
        path = self._path(queueId, "lock")
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
        return Flushed(tuple(due), tuple(busy))


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
