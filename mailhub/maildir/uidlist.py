# -*- test-case-name: tests.maildir.test_uidlist -*-
"""
Persistent IMAP UIDs for one Maildir folder, in Dovecot's C{dovecot-uidlist}
format (version 3), so that Dovecot and mailhub can serve the same tree.

The file::

    3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1
    25020 :1275660100.M1P2Q3.host,S=10,W=10
    25021 W1234 :1275660200.M4P5Q6.host,S=1200,W=1234

The header holds the format version (C{3}), UIDVALIDITY (C{V}), the next UID
to give (C{N}) and the folder's 128-bit GUID in hex (C{G}); other header
fields are kept as they are.  Each record is a UID, optional extension
fields (Dovecot's C{W<vsize>}, C{S<size>}, ...; kept as they are), and the
message's base name (the part before C{:2,}) after a C{:}.  Records are in
ascending UID order.  Version 1 files (Courier's C{courierimapuiddb} form,
C{1 UIDVALIDITY NEXTUID} then C{UID NAME}) are read and rewritten as
version 3.

Rules kept here (DESIGN.md, "Maildir"):

  - A UID is never reused: C{N} only grows, and a name that comes back
    after it was dropped gets a new UID.
  - UIDVALIDITY is set once, when the file is created, from the clock; it
    changes only if the file is lost (or unreadable), and then it is made
    greater than any value this object has seen.
  - Every update takes C{dovecot-uidlist.lock} (created with C{O_EXCL},
    holding C{PID:HOST:TIME}) and re-reads the list first.  A live lock
    makes L{UIDList.sync} raise L{UIDListLocked} at once (the caller
    retries: no sleeping here); a stale one (older than
    L{STALE_LOCK_AGE}, unreadable and old, or naming a dead pid on this
    host) is broken.  No lock is left behind.
  - New messages are appended, as Dovecot appends them: their records
    are written at the end of the file, C{N} is set in place in the header
    (same number of digits) and the file is fsynced.  A failure cuts the
    file back to what it was; a crash can leave at most a partial last
    line, which readers (ours and Dovecot's) ignore and the next writer
    removes with a whole rewrite.  Readers take C{N} as at least one above
    the highest record (Dovecot appends without touching C{N}).
  - The whole file is rewritten (temporary file, fsync, rename, directory
    fsync; a failure leaves the old list) only now and then: when it is
    created, when C{N} needs another digit, when it is a version 1 file or
    ends in a partial line, or when more than L{STALE_SHARE} of its records
    are of messages that are gone.  A dropped message's record otherwise
    stays in the file: dropping writes nothing.  (A new reader takes such a
    record as live until its own sync, under the lock, confirms the
    message is gone; a name that comes back is appended again with a new
    UID, and readers take the later record, as Dovecot does.)
  - Nothing is written when nothing changed, and the parsed list is kept
    keyed by the file's stat signature (inode, size, mtime): an unchanged
    file is not read again, a file that grew is read from where the last
    read stopped.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from typing import Callable, Iterable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.runtime import seconds as _wallSeconds

from mailhub.errors import MailhubError
from mailhub.fs import FileSystem, stampOf, statStamp
from mailhub.locks import breakStaleLock, pidAlive
from mailhub.maildir.names import deliveryOrder

#: The list's file name, in the folder's Maildir (Dovecot's name).
UIDLIST_NAME = "dovecot-uidlist"

#: A lock older than this (seconds) is stale.  An update holds the lock for
#: the time it takes to write one file.  (Dovecot breaks its own uidlist
#: dotlock after two minutes, judged by the file's mtime.)
STALE_LOCK_AGE = 30.0

_READ_SIZE = 1 << 20

#: The whole list is rewritten (its stale records left out) when more than
#: this share of its records are of messages that are gone; until then a
#: dropped message's record stays in the file (as in Dovecot, which
#: rewrites at 25 %).
STALE_SHARE = 0.5

#: The C{N} field of a version 3 header.
_N_FIELD = re.compile(rb" N([0-9]+)(?= |$)")


class LockBusy(MailhubError):
    """
    Another session holds a folder file's lock; try again shortly.
    """


class UIDListLocked(LockBusy):
    """
    Another session is updating the folder's UID list; try again shortly.
    """


class _SystemClock:
    """
    The time source the reactor itself uses; the default when no
    L{IReactorTime} is given.
    """

    def seconds(self) -> float:
        return _wallSeconds()


def readFile(fs: FileSystem, path: str) -> bytes:
    """
    The whole content of C{path}, read through C{fs}.

    @raise FileNotFoundError: there is no such file.
    """
    fd = fs.openRead(path)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, _READ_SIZE)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        fs.close(fd)
    return b"".join(chunks)


def writeAtomically(fs: FileSystem, path: str, data: bytes, mode: int = 0o600) -> None:
    """
    Replace C{path} with C{data}: a temporary file beside it, fsynced,
    renamed over it, the directory fsynced.  On a failure before the rename
    the old file is untouched and the temporary file is removed; a failure
    of the directory fsync leaves the new content in place (it may not be
    durable) and raises.

    @raise OSError: the file could not be replaced (durably).
    """
    temporary = f"{path}.tmp.{secrets.token_hex(6)}"
    fd = fs.openExclusive(temporary, mode)
    try:
        try:
            fs.write(fd, data)
            fs.fsync(fd)
        finally:
            fs.close(fd)
        fs.rename(temporary, path)
    except BaseException:
        try:
            fs.unlink(temporary)
        except OSError:
            pass
        raise
    fs.fsyncDirectory(os.path.dirname(path) or ".")


class DotLock:
    """
    A lock file made with C{O_EXCL} beside the file it guards
    (C{NAME.lock}), as Dovecot's dotlocks are (C{dotlock_use_excl}).

    It holds C{PID:HOST:TIME}.  Dovecot writes C{PID:HOST} and judges age
    by the file's mtime; both forms are understood.

    @param path: the lock file's path.
    @param fs: the file operations.
    @param clock: the time, for the lock's content and its age.
    @param staleAfter: seconds after which a lock is stale.
    @param hostname: this host, as written in the lock.
    @param pid: this process, as written in the lock.
    @param busy: the exception class raised for a live lock.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        fs: FileSystem,
        clock: IReactorTime,
        *,
        staleAfter: float = STALE_LOCK_AGE,
        hostname: str | None = None,
        pid: int | None = None,
        busy: type[LockBusy] = LockBusy,
    ) -> None:
        self.path = path
        self._fs = fs
        self._clock = clock
        self._staleAfter = staleAfter
        host = hostname or socket.gethostname() or "localhost"
        self._host = host.replace(":", "_").replace("\n", "_").replace(" ", "_")
        self._pid = os.getpid() if pid is None else pid
        self._busy = busy
        self._content: bytes | None = None

    def acquire(self) -> None:
        """
        Take the lock, breaking a stale one.

        @raise LockBusy: (the C{busy} class) someone else holds it.
        @raise OSError: the lock file could not be made; nothing is held.
        """
        now = self._clock.seconds()
        content = f"{self._pid}:{self._host}:{int(now)}\n".encode("utf-8", "replace")
        for attempt in range(2):
            try:
                fd = self._fs.openExclusive(self.path, 0o600)
            except FileExistsError:
                if attempt or not self._breakIfStale(now):
                    raise self._busy(self.path) from None
                continue
            try:
                try:
                    self._fs.write(fd, content)
                finally:
                    self._fs.close(fd)
            except BaseException:
                self._unlinkQuietly(self.path)
                raise
            self._content = content
            return

    def release(self) -> None:
        """
        Remove the lock if it is still ours (idempotent; never raises).
        """
        content, self._content = self._content, None
        if content is None:
            return
        try:
            if self._read(self.path) == content:
                self._fs.unlink(self.path)
            else:
                self.log.warn("lock {path} was taken over", path=self.path)
        except FileNotFoundError:
            self.log.warn("lock {path} was already gone", path=self.path)
        except OSError:
            self.log.failure("cannot remove lock {path}", path=self.path)

    def __enter__(self) -> "DotLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _read(self, path: str) -> bytes:
        fd = self._fs.openRead(path)
        try:
            return os.read(fd, 512)
        finally:
            self._fs.close(fd)

    def isStale(self, content: bytes, mtime: float, now: float) -> bool:
        """
        Whether a lock holding C{content}, last modified at C{mtime}, is
        stale at C{now}.
        """
        parts = content.decode("utf-8", "replace").strip().split(":")
        when = mtime
        if len(parts) >= 3 and parts[2].isdigit():
            when = float(parts[2])
        if abs(now - when) > self._staleAfter:
            return True
        if len(parts) < 2 or not parts[0].isdigit():
            # Being written right now, or not a lock: only age breaks it.
            return False
        pid, host = int(parts[0]), parts[1]
        # Our own pid is not stale: another thread of this process may be
        # inside an update.
        return host == self._host and pid != self._pid and not pidAlive(pid)

    def _breakIfStale(self, now: float) -> bool:
        """
        Remove the lock if it is stale.

        @return: whether it is gone (try again).
        """

        def stale(content: bytes) -> bool:
            try:
                mtime = os.stat(self.path).st_mtime
            except FileNotFoundError:
                return True
            return self.isStale(content, mtime, now)

        return breakStaleLock(self._fs, self.path, self._read, stale)

    def _unlinkQuietly(self, path: str) -> None:
        try:
            self._fs.unlink(path)
        except OSError:
            pass


def baseName(filename: str) -> str:
    """
    A Maildir file name without its info part (C{:2,FLAGS}).
    """
    return filename.split(":", 1)[0]


def scanFolder(folderPath: str) -> list[str]:
    """
    The base names of the messages in a Maildir folder.

    C{new/} is read before C{cur/}: a message moved from one to the other
    while we read is then seen at least once (Dovecot reads in the same
    order for the same reason).
    """
    names: list[str] = []
    for sub in ("new", "cur"):
        try:
            with os.scandir(os.path.join(folderPath, sub)) as entries:
                for entry in entries:
                    if not entry.name.startswith("."):
                        names.append(baseName(entry.name))
        except FileNotFoundError:
            continue
    return names


class UIDList:
    """
    The C{dovecot-uidlist} of one Maildir folder.

    The parsed list is kept in memory, keyed by the file's stat signature
    (inode, size, mtime): an unchanged file is not read again, and a file
    that only grew (another session appended records) is read from where
    the last read stopped.  New messages are appended to the file (see the
    module docstring), so giving UIDs to N new messages costs O(N) with
    L{assign}; L{sync}, which is handed the whole folder, adds set
    operations over its names (C speed) but no rewrite.

    @param folderPath: the folder's Maildir directory.
    @param fs: the file operations (a fault-injecting one in tests).
    @param clock: the time, for UIDVALIDITY and the lock.
    @param staleAfter: seconds after which a lock is stale.
    @param hostname: this host, as written in the lock (for tests).
    @param pid: this process, as written in the lock (for tests).
    @param scan: lists the folder's base names, used under the lock to
        confirm that names missing from a L{sync} are really gone.
    @param append: append new records (the default); C{False} rewrites the
        whole file on every change (the behaviour before appending).

    @ivar uidValidity: the UIDVALIDITY last read or written, or C{None}.
    @ivar nextUID: the UID the next new message gets, as last known.
    @ivar guid: the folder's GUID (32 hex digits), as last known.
    """

    log = Logger()

    def __init__(
        self,
        folderPath: str,
        fs: FileSystem | None = None,
        clock: IReactorTime | None = None,
        *,
        staleAfter: float = STALE_LOCK_AGE,
        hostname: str | None = None,
        pid: int | None = None,
        scan: Callable[[str], Iterable[str]] = scanFolder,
        append: bool = True,
    ) -> None:
        self.path = os.path.join(folderPath, UIDLIST_NAME)
        self._folder = folderPath
        self._fs = fs if fs is not None else FileSystem()
        self._clock = clock if clock is not None else _SystemClock()
        self._scan = scan
        self._append = append
        self._lock = DotLock(
            self.path + ".lock",
            self._fs,
            self._clock,
            staleAfter=staleAfter,
            hostname=hostname,
            pid=pid,
            busy=UIDListLocked,
        )
        self._highestValidity = 0
        self._reset()

    def _reset(self) -> None:
        """
        Forget the list (the next L{_load} reads the whole file).
        """
        self.uidValidity: int | None = None
        self.nextUID = 1
        self.guid = ""
        self._headerExtra: list[str] = []
        #: Listed messages, in UID order: base name -> UID.
        self._uids: dict[str, int] = {}
        self._extensions: dict[str, str] = {}
        self._stamp: tuple[int, int, int] | None = None
        # What the file holds, as far as it was read or written here.
        #: Record lines in the file, live or stale (of messages dropped
        #: since: see L{STALE_SHARE}).
        self._records = 0
        #: The highest UID of any record in the file.
        self._highest = 0
        #: The header line (without its line end), and where the digits of
        #: its C{N} field are in it (C{None}: not a version 3 header).
        self._header = b""
        self._nSpan: tuple[int, int] | None = None
        #: Offset just after the last complete line read.
        self._readEnd = 0
        #: C{(offset, bytes)} of the last complete line read, to recognise
        #: the same file when it has grown.
        self._lastLine: tuple[int, bytes] = (0, b"")
        #: The file ended in a partial line (a crash in the middle of an
        #: append, or an append being written right now).
        self._partial = False
        #: The file must be rewritten whole at the next change (version 1).
        self._rewrite = False

    # Reading

    def _statStamp(self) -> tuple[int, int, int] | None:
        return statStamp(self.path)

    def _load(self) -> bool:
        """
        Bring the in-memory list up to date with the file: nothing to do
        when its stat signature is unchanged, the appended part only when
        it grew, else the whole file.

        @return: whether there is a usable file.
        """
        stamp = self._statStamp()
        if stamp is not None and stamp == self._stamp:
            return True
        if (
            stamp is not None
            and self._stamp is not None
            and stamp[0] == self._stamp[0]
            and stamp[1] >= self._readEnd
            and self.uidValidity is not None
            and self._readTail()
        ):
            return True
        self._reset()
        if stamp is None:
            return False
        try:
            fd = self._fs.openRead(self.path)
        except FileNotFoundError:
            return False
        try:
            st = os.fstat(fd)
            data = _readAll(fd)
        finally:
            self._fs.close(fd)
        try:
            self._parse(data)
        except ValueError as e:
            self.log.error("unreadable {path}: {problem}; starting a new list", path=self.path, problem=str(e))
            self._reset()
            return False
        self._stamp = stampOf(st)
        return True

    def _readTail(self) -> bool:
        """
        Read the records appended since the last read, if the file is the
        one read then (same inode, same header but for the digits of C{N},
        same last line at the same offset).

        @return: whether it was; if not, the whole file must be read.
        """
        try:
            fd = self._fs.openRead(self.path)
        except FileNotFoundError:
            return False
        try:
            st = os.fstat(fd)
            assert self._stamp is not None
            if st.st_ino != self._stamp[0] or st.st_size < self._readEnd:
                return False
            header = os.pread(fd, len(self._header) + 1, 0)
            if header[-1:] != b"\n" or not self._sameHeader(header[:-1]):
                return False
            offset, line = self._lastLine
            if offset and os.pread(fd, len(line), offset) != line:
                return False
            data = os.pread(fd, st.st_size - self._readEnd, self._readEnd)
        finally:
            self._fs.close(fd)
        complete = data.rfind(b"\n") + 1
        uids, extensions, highest = self._uids, self._extensions, self._highest
        parsed = []
        for line in data[:complete].split(b"\n")[:-1]:
            if not line:
                continue
            record = self._parseRecord(line.decode("utf-8", "surrogateescape"))
            if record is None or record[0] <= highest:
                return False  # not what an append makes: read it all
            highest = record[0]
            parsed.append(record)
        for uid, ext, name in parsed:
            if uids.pop(name, None) is not None:
                extensions.pop(name, None)  # appended again: the later record holds
            uids[name] = uid
            if ext:
                extensions[name] = ext
        self._records += len(parsed)
        self._highest = highest
        self.nextUID = max(self.nextUID, highest + 1, self._headerNext())
        if complete:
            start = data.rfind(b"\n", 0, complete - 1) + 1
            self._lastLine = (self._readEnd + start, data[start : complete - 1])
        self._readEnd += complete
        self._partial = complete < len(data)
        self._stamp = stampOf(st)
        return True

    def _sameHeader(self, header: bytes) -> bool:
        """
        Whether C{header} is the header read before, but for the digits of
        C{N} (rewritten in place after an append); adopts it if so.
        """
        if header == self._header:
            return True
        if self._nSpan is None or len(header) != len(self._header):
            return False
        start, end = self._nSpan
        old = self._header
        if header[:start] != old[:start] or header[end:] != old[end:] or not header[start:end].isdigit():
            return False
        self._header = header
        return True

    def _headerNext(self) -> int:
        if self._nSpan is None:
            return 0
        start, end = self._nSpan
        return int(self._header[start:end])

    def _parseRecord(self, line: str) -> tuple[int, str, str] | None:
        """
        C{(uid, extension fields, base name)} of a record line, or C{None}.
        """
        uidText, _, rest = line.partition(" ")
        if rest.startswith(":"):
            ext, name = "", rest[1:]
        else:
            at = rest.find(" :")
            if at < 0:
                ext, name = "", rest  # version 1: no extension fields
            else:
                ext, name = rest[:at], rest[at + 2 :]
        name = baseName(name)
        if not uidText.isdigit() or not name:
            return None
        return int(uidText), ext, name

    def _parse(self, data: bytes) -> None:
        end = data.rfind(b"\n") + 1
        if end == 0:
            headerBytes, body = data, b""
        else:
            first = data.find(b"\n")
            headerBytes, body = data[:first], data[first + 1 : end]
        # A last line without its line end is an append cut short (or
        # being written): ignored, as Dovecot ignores it.
        partial = 0 < end < len(data)
        header = headerBytes.decode("utf-8", "surrogateescape").split()
        if not header:
            raise ValueError("empty header")
        version = header[0]
        uids: dict[str, int] = {}
        extensions: dict[str, str] = {}
        extra: list[str] = []
        guid = ""
        nSpan = None
        if version == "3":
            validity = nextUID = None
            for field in header[1:]:
                key, value = field[:1], field[1:]
                if key == "V":
                    validity = int(value)
                elif key == "N":
                    nextUID = int(value)
                elif key == "G":
                    guid = value
                else:
                    extra.append(field)
            if validity is None or nextUID is None:
                raise ValueError("header without V or N")
            match = _N_FIELD.search(headerBytes)
            if match is not None and int(match.group(1)) == nextUID:
                nSpan = match.span(1)
        elif version == "1" and len(header) >= 3:
            validity, nextUID = int(header[1]), int(header[2])
        else:
            raise ValueError(f"unknown version {version!r}")
        if validity <= 0:
            raise ValueError("UIDVALIDITY is not positive")
        highest = 0
        records = 0
        for line in body.decode("utf-8", "surrogateescape").split("\n"):
            if not line:
                continue
            records += 1
            # Most records are "UID :BASENAME": taken apart here, the others
            # by _parseRecord.
            uidText, sep, name = line.partition(" :")
            if sep and name and uidText.isdigit() and ":" not in name and "/" not in name:
                uid = int(uidText)
                if uid > highest:
                    highest = uid
                    if name in uids:
                        del uids[name]
                        extensions.pop(name, None)
                    uids[name] = uid
                    continue
            record = self._parseRecord(line)
            if record is None or record[0] <= highest:
                # Not a record, or out of order: skipped (Dovecot would
                # drop the whole file).
                self.log.warn("skipping bad line in {path}: {line!r}", path=self.path, line=line[:200])
                continue
            uid, ext, name = record
            highest = uid
            if uids.pop(name, None) is not None:
                # Listed again after it was dropped (and came back): the
                # later record holds, as in Dovecot.
                extensions.pop(name, None)
            uids[name] = uid
            if ext:
                extensions[name] = ext
        self.uidValidity = validity
        self._highestValidity = max(self._highestValidity, validity)
        self.nextUID = max(nextUID, highest + 1)
        self.guid = guid
        self._headerExtra = extra
        self._uids = uids
        self._extensions = extensions
        self._records = records
        self._highest = highest
        self._header = headerBytes
        self._nSpan = nSpan
        self._readEnd = end
        self._partial = partial
        self._rewrite = version != "3" or nSpan is None
        if end > len(headerBytes) + 1:
            start = data.rfind(b"\n", 0, end - 1) + 1
            self._lastLine = (start, data[start : end - 1])
        else:
            self._lastLine = (0, headerBytes)

    def _record(self, name: str, uid: int) -> str:
        ext = self._extensions.get(name)
        return f"{uid} {ext} :{name}\n" if ext else f"{uid} :{name}\n"

    def _render(self) -> bytes:
        header = ["3", f"V{self.uidValidity}", f"N{self.nextUID}", f"G{self.guid}"]
        header.extend(self._headerExtra)
        extensions = self._extensions
        lines = [" ".join(header)]
        if extensions:
            for name, uid in self._uids.items():
                ext = extensions.get(name)
                lines.append(f"{uid} {ext} :{name}" if ext else f"{uid} :{name}")
        else:
            lines.extend([f"{uid} :{name}" for name, uid in self._uids.items()])
        lines.append("")
        return "\n".join(lines).encode("utf-8", "surrogateescape")

    # Public

    def mapping(self) -> tuple[int | None, dict[str, int]]:
        """
        The list as last read or written, brought up to date with the file
        (without changing it).  Messages this object dropped are left out
        even while their records are still in the file (see
        L{STALE_SHARE}).

        @return: C{(uidvalidity, {basename: uid})}; C{(None, {})} if there
            is no list yet.
        """
        self._load()
        return self.uidValidity, dict(self._uids)

    def sync(self, names: Iterable[str]) -> tuple[int, dict[str, int]]:
        """
        Bring the list in line with the folder's messages.

        Names not yet listed get new UIDs, in delivery order (the leading
        seconds of the name, then the name).  Listed names missing from
        C{names} are dropped only once a fresh listing of the folder, made
        under the lock, confirms they are gone: C{names} may be older than
        another session's update.  UIDs are never reused.

        @param names: the base names of the folder's messages (C{new/} and
            C{cur/}, without C{:2,...}); full names are cut at the C{:}.
        @return: C{(uidvalidity, {basename: uid})} for every listed
            message, in UID order.
        @raise UIDListLocked: another session is updating the list; try
            again shortly.
        @raise OSError: the list could not be written; the old one stands.
        """
        # Full names (with C{:2,...}) are never listed, so they show up
        # among the unlisted ones, where L{_update} cuts them.
        wanted = names if isinstance(names, (set, frozenset)) else set(names)
        if self._load() and self._consistent(wanted):
            assert self.uidValidity is not None
            return self.uidValidity, dict(self._uids)
        with self._lock:
            return self._update(wanted)

    def assign(self, fresh: Iterable[str], gone: Iterable[str] = ()) -> tuple[int, dict[str, int]]:
        """
        Give UIDs to new messages and drop gone ones, looking at those
        names only: O(len(fresh) + len(gone)), plus reading what other
        sessions appended; for a caller that keeps its own view of the
        folder (the index) instead of handing all of it to L{sync}.

        @param fresh: base names seen in the folder that may not be listed
            yet; each one not listed gets a new UID (in delivery order).
        @param gone: base names the caller's listing (C{new/} before
            C{cur/}) no longer shows; dropped without another look.
        @return: C{(uidvalidity, {basename: uid})} for the names of
            C{fresh}.  A UIDVALIDITY other than the caller's means the list
            was lost and started again (every name has a new UID).
        @raise UIDListLocked: as L{sync}.
        @raise OSError: as L{sync}.
        """
        fresh = {baseName(n) for n in fresh}
        gone = {baseName(n) for n in gone} - fresh
        if self._load() and all(n in self._uids for n in fresh) and not any(n in self._uids for n in gone):
            assert self.uidValidity is not None
            return self.uidValidity, {n: self._uids[n] for n in fresh}
        with self._lock:
            if not self._load():
                self._create()
            uids = self._uids
            self._apply([n for n in fresh if n not in uids], [n for n in gone if n in uids])
            assert self.uidValidity is not None
            return self.uidValidity, {n: uids[n] for n in fresh}

    # Writing

    def _consistent(self, wanted: set[str]) -> bool:
        uids = self._uids
        return len(uids) == len(wanted) and uids.keys() == wanted

    def _create(self) -> None:
        """
        Start a new list (none, or an unreadable one): a new UIDVALIDITY.
        """
        unreadable = self._statStamp() is not None
        self._reset()
        now = int(self._clock.seconds())
        validity = max(now, self._highestValidity + 1, 1)
        self.uidValidity = validity
        self._highestValidity = validity
        self.guid = secrets.token_hex(16)
        self._rewrite = True
        if unreadable:
            self.log.warn("replacing unreadable {path}", path=self.path)

    def _update(self, wanted: set[str]) -> tuple[int, dict[str, int]]:
        if not self._load():
            self._create()
        uids = self._uids
        fresh = wanted.difference(uids)
        if any(":" in name for name in fresh):
            wanted = {baseName(n) for n in wanted}
            fresh = wanted.difference(uids)
        gone: list[str] = []
        if len(uids) > len(wanted) - len(fresh):  # some listed names are not wanted
            present = {baseName(n) for n in self._scan(self._folder)}
            gone = [name for name in uids if name not in wanted and name not in present]
        self._apply(list(fresh), gone)
        assert self.uidValidity is not None
        return self.uidValidity, dict(uids)

    def _apply(self, fresh: list[str], gone: list[str]) -> None:
        """
        Under the lock, with the list just loaded: drop C{gone}, give UIDs
        to C{fresh} (none of them listed), and write what must be written:
        the new records appended (and C{N} updated in place), or the whole
        file when it must be (see the module docstring).  Dropping alone
        writes nothing until the stale records are too many.
        """
        uids = self._uids
        for name in gone:
            del uids[name]
            self._extensions.pop(name, None)
        fresh.sort(key=deliveryOrder)
        uid = self.nextUID
        for name in fresh:
            uids[name] = uid
            uid += 1
        self.nextUID = uid
        total = self._records + len(fresh)
        rewrite = (
            self._rewrite
            or self._partial
            or not self._append
            or (total - len(uids)) > total * STALE_SHARE
        )
        if not rewrite and not fresh:
            return
        try:
            if rewrite or not self._appendRecords(fresh):
                self._writeWhole()
        except BaseException:
            # Whatever is on disk now is the truth: read it again.
            self._reset()
            raise

    def _writeWhole(self) -> None:
        data = self._render()
        writeAtomically(self._fs, self.path, data)
        self._parse(data)
        self._stamp = self._statStamp()

    def _appendRecords(self, fresh: list[str]) -> bool:
        """
        Append the records of C{fresh}, set C{N} in the header in place,
        fsync.  On a failure the file is cut back to what it was.

        @return: C{False}, having written nothing, when the whole file must
            be written instead (C{N} needs another digit, or the file is not
            the one read).
        """
        assert self._nSpan is not None
        start, end = self._nSpan
        digits = str(self.nextUID).encode("ascii")
        if len(digits) != end - start:
            return False  # N needs another digit: now and then, a rewrite
        uids = self._uids
        records = [self._record(name, uids[name]) for name in fresh]
        data = "".join(records).encode("utf-8", "surrogateescape")
        # FileSystem opens new files only; the writes, the fsync and the
        # close go through it.
        fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
            if size != self._readEnd:
                return False
            oldDigits = self._header[start:end]
            try:
                self._fs.write(fd, data)
                if digits != oldDigits:
                    os.lseek(fd, start, os.SEEK_SET)
                    self._fs.write(fd, digits)
                self._fs.fsync(fd)
            except BaseException:
                try:
                    os.ftruncate(fd, size)
                    os.pwrite(fd, oldDigits, start)
                except OSError:
                    pass  # a partial last line is ignored by readers
                raise
        finally:
            self._fs.close(fd)
        last = records[-1].encode("utf-8", "surrogateescape")
        self._lastLine = (size + len(data) - len(last), last[:-1])
        self._readEnd = size + len(data)
        self._records += len(fresh)
        self._highest = self.nextUID - 1
        self._header = self._header[:start] + digits + self._header[end:]
        self._stamp = self._statStamp()
        return True


def _readAll(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, _READ_SIZE)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


__all__ = [
    "DotLock",
    "LockBusy",
    "STALE_LOCK_AGE",
    "STALE_SHARE",
    "UIDLIST_NAME",
    "UIDList",
    "UIDListLocked",
    "baseName",
    "readFile",
    "scanFolder",
    "writeAtomically",
]
