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
    holding C{PID:HOST:TIME}), re-reads the list, writes a temporary file,
    fsyncs it, renames it over the list, fsyncs the directory and removes
    the lock.  A live lock makes L{UIDList.sync} raise L{UIDListLocked} at
    once (the caller retries: no sleeping here); a stale one (older than
    L{STALE_LOCK_AGE}, unreadable and old, or naming a dead pid on this
    host) is broken.  A failure at any step leaves the old list in place
    and no lock behind.
  - Nothing is written when nothing changed, and an unchanged file is not
    parsed again (its inode, size and mtime are remembered), so a sync of
    an unchanged 100,000-message folder costs one C{stat} and a set
    comparison.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Callable, Iterable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.runtime import seconds as _wallSeconds

from mailhub.errors import MailhubError
from mailhub.fs import FileSystem

#: The list's file name, in the folder's Maildir (Dovecot's name).
UIDLIST_NAME = "dovecot-uidlist"

#: A lock older than this (seconds) is stale.  An update holds the lock for
#: the time it takes to write one file.  (Dovecot breaks its own uidlist
#: dotlock after two minutes, judged by the file's mtime.)
STALE_LOCK_AGE = 30.0

_READ_SIZE = 1 << 20


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


def _pidAlive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it exists, it is someone else's
    return True


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
        return host == self._host and pid != self._pid and not _pidAlive(pid)

    def _breakIfStale(self, now: float) -> bool:
        """
        Remove the lock if it is stale.

        @return: whether it is gone (try again).
        """
        try:
            content = self._read(self.path)
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            return True
        if not self.isStale(content, mtime, now):
            return False
        # Move it aside, then make sure it is the one judged stale and not
        # a fresh lock another session made in between.
        aside = f"{self.path}.stale.{secrets.token_hex(6)}"
        try:
            self._fs.rename(self.path, aside)
        except FileNotFoundError:
            return True
        try:
            if self._read(aside) != content:
                try:
                    self._fs.link(aside, self.path)
                except FileExistsError:
                    pass
                return False
        finally:
            self._unlinkQuietly(aside)
        self.log.info(
            "broke stale lock {path}: {content}",
            path=self.path,
            content=content.decode("utf-8", "replace").strip(),
        )
        return True

    def _unlinkQuietly(self, path: str) -> None:
        try:
            self._fs.unlink(path)
        except OSError:
            pass


def _deliveryOrder(name: str) -> tuple[int, int, str]:
    # Delivery time is the leading seconds of a Maildir name.
    head = name.split(".", 1)[0]
    if head.isdigit() and len(head) <= 12:
        return (0, int(head), name)
    return (1, 0, name)


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

    @param folderPath: the folder's Maildir directory.
    @param fs: the file operations (a fault-injecting one in tests).
    @param clock: the time, for UIDVALIDITY and the lock.
    @param staleAfter: seconds after which a lock is stale.
    @param hostname: this host, as written in the lock (for tests).
    @param pid: this process, as written in the lock (for tests).
    @param scan: lists the folder's base names, used under the lock to
        confirm that names missing from a L{sync} are really gone.

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
    ) -> None:
        self.path = os.path.join(folderPath, UIDLIST_NAME)
        self._folder = folderPath
        self._fs = fs if fs is not None else FileSystem()
        self._clock = clock if clock is not None else _SystemClock()
        self._scan = scan
        self._lock = DotLock(
            self.path + ".lock",
            self._fs,
            self._clock,
            staleAfter=staleAfter,
            hostname=hostname,
            pid=pid,
            busy=UIDListLocked,
        )
        self.uidValidity: int | None = None
        self.nextUID = 1
        self.guid = ""
        self._headerExtra: list[str] = []
        self._uids: dict[str, int] = {}
        self._extensions: dict[str, str] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._highestValidity = 0

    # Reading

    def _statStamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _load(self) -> bool:
        """
        Bring the in-memory list up to date with the file.

        @return: whether there is a usable file.
        """
        stamp = self._statStamp()
        if stamp is not None and stamp == self._stamp:
            return True
        self._stamp = None
        self.uidValidity = None
        self._uids = {}
        self._extensions = {}
        self._headerExtra = []
        self.nextUID = 1
        if stamp is None:
            return False
        try:
            data = readFile(self._fs, self.path)
        except FileNotFoundError:
            return False
        try:
            self._parse(data.decode("utf-8", "surrogateescape"))
        except ValueError as e:
            self.log.error("unreadable {path}: {problem}; starting a new list", path=self.path, problem=str(e))
            self.uidValidity = None
            self._uids = {}
            self._extensions = {}
            return False
        self._stamp = stamp
        return True

    def _parse(self, text: str) -> None:
        lines = text.split("\n")
        header = lines[0].split()
        if not header:
            raise ValueError("empty header")
        version = header[0]
        uids: dict[str, int] = {}
        extensions: dict[str, str] = {}
        extra: list[str] = []
        guid = ""
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
        elif version == "1" and len(header) >= 3:
            validity, nextUID = int(header[1]), int(header[2])
        else:
            raise ValueError(f"unknown version {version!r}")
        if validity <= 0:
            raise ValueError("UIDVALIDITY is not positive")
        highest = 0
        for line in lines[1:]:
            if not line:
                continue
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
                self.log.warn("skipping bad line in {path}: {line!r}", path=self.path, line=line[:200])
                continue
            uid = int(uidText)
            if uid <= highest or name in uids:
                # Out of order or a duplicate: keep the first; never lose
                # track of the highest UID.
                highest = max(highest, uid)
                self.log.warn("skipping bad line in {path}: {line!r}", path=self.path, line=line[:200])
                continue
            highest = uid
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
        The list as it is on disk, without changing it.

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
        wanted = {baseName(n) for n in names}
        if self._load() and self._consistent(wanted):
            assert self.uidValidity is not None
            return self.uidValidity, dict(self._uids)
        with self._lock:
            return self._update(wanted)

    def _consistent(self, wanted: set[str]) -> bool:
        uids = self._uids
        return len(uids) == len(wanted) and uids.keys() == wanted

    def _update(self, wanted: set[str]) -> tuple[int, dict[str, int]]:
        known = self._load()
        changed = False
        if not known:
            now = int(self._clock.seconds())
            validity = max(now, self._highestValidity + 1, 1)
            self.uidValidity = validity
            self._highestValidity = validity
            self.nextUID = 1
            self.guid = secrets.token_hex(16)
            self._uids = {}
            self._extensions = {}
            self._headerExtra = []
            changed = True
            if self._stamp is None and self._statStamp() is not None:
                self.log.warn("replacing unreadable {path}", path=self.path)
        uids = self._uids
        missing = [name for name in uids if name not in wanted]
        if missing:
            present = {baseName(n) for n in self._scan(self._folder)}
            gone = [name for name in missing if name not in present]
            for name in gone:
                del uids[name]
                self._extensions.pop(name, None)
            changed = changed or bool(gone)
        fresh = sorted((name for name in wanted if name not in uids), key=_deliveryOrder)
        if fresh:
            uid = self.nextUID
            for name in fresh:
                uids[name] = uid
                uid += 1
            self.nextUID = uid
            changed = True
        if changed:
            try:
                writeAtomically(self._fs, self.path, self._render())
            except BaseException:
                # Whatever is on disk now is the truth: read it again.
                self._stamp = None
                self._uids = {}
                raise
            self._stamp = self._statStamp()
        assert self.uidValidity is not None
        return self.uidValidity, dict(uids)


__all__ = [
    "DotLock",
    "LockBusy",
    "STALE_LOCK_AGE",
    "UIDLIST_NAME",
    "UIDList",
    "UIDListLocked",
    "baseName",
    "readFile",
    "scanFolder",
    "writeAtomically",
]
