# -*- test-case-name: tests.pop3.test_mailbox -*-
"""
The POP3 maildrop: a snapshot of a Maildir's INBOX (C{new/} and C{cur/}),
locked for one session at a time.

What a session sees and does:

  - B{Snapshot.}  The messages are listed once, when the session opens
    (RFC 1939 §4: the maildrop is fixed for the session); mail delivered
    later appears in the next session.  They are numbered in delivery
    order (the leading seconds of the name, its microseconds and counter,
    then the name: L{mailhub.maildir.names.deliveryOrder}), so numbers are
    stable within a session.  Nothing is read at login: a size comes from
    the name (C{,W=} the size with CRLF line ends, else C{,S=}), or a stat
    when the name has neither.
  - B{UIDL} is the Maildir base name, the part before the C{:}: it never
    changes when flags do, nor between sessions.  A name that is not
    printable ASCII (0x21-0x7E) or is longer than 70 octets (RFC 1939 §7)
    is replaced by a hash of it, equally stable.
  - B{Sizes} are the octets of the message as sent, with CRLF line ends
    (RFC 1939 §11).  mailhub stores CRLF and writes C{W=}, so its own
    messages cost nothing; a file another tool dropped in without C{W=}
    (often LF-only) is read once, when its size is first asked for, to
    count its bare LFs.
  - B{Commit} (QUIT, L{MaildirMailbox.commit}) is failure-atomic: messages
    retrieved move to C{cur/} with the C{S} flag, messages deleted move to
    C{tmp/} (where no reader looks), the directories are fsynced; only then
    are the deleted files unlinked.  A failure before that undoes every
    rename, so the Maildir is as it was.  Without a commit (RSET, dropped
    connection, timeout) nothing changes.
  - B{Lock.}  C{mailhub-pop3.lock} in the Maildir, made atomically (a
    complete temporary file hard-linked into place, so no reader ever sees
    it half-written), holds the pid, the host, the time and a nonce.  It is
    stale, and broken, when it is older than C{staleAfter} (30 minutes,
    three POP3 idle timeouts; a live session refreshes it), when it is
    unreadable, or when it names this host and a pid that is not running
    (or this very process, which would be holding it in memory).  An
    in-memory set keeps one process from locking a Maildir twice.

The directory listing at login and the commit are blocking file-system
work; L{mailhub.pop3.server.POP3Factory} takes a C{runBlocking} to move
them off the reactor thread.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import threading
from typing import Callable, Iterator

from attrs import define
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.mail.pop3 import IMailbox
from zope.interface import implementer

from mailhub.errors import MailhubError
from mailhub.fs import FileSystem
from mailhub.locks import breakStaleLock, pidAlive
from mailhub.maildir.names import deliveryOrder

#: The lock file's name, in the Maildir's root.
LOCK_NAME = "mailhub-pop3.lock"

#: A lock older than this (seconds) is stale.  RFC 1939 §3 gives POP3 an
#: idle timeout of at least 10 minutes; a live session refreshes its lock
#: long before this.
STALE_LOCK_AGE = 30 * 60.0

#: RFC 1939 §7: a unique-id is 1 to 70 characters in the range 0x21 to 0x7E.
_UID_OK = re.compile(r"[\x21-\x7e]{1,70}\Z")
_SIZE_FIELD = re.compile(r",([SW])=([0-9]{1,15})(?=,|\Z)")
_READ_SIZE = 64 * 1024

# Maildirs this process has locked (real paths), and the lock guarding it.
_held: set[str] = set()
_heldLock = threading.Lock()


class MailboxInUse(MailhubError):
    """
    Another POP3 session holds the mailbox's lock.
    """


class ISessionMailbox(IMailbox):  # type: ignore[misc, valid-type]
    """
    A POP3 maildrop for one session: locked, snapshot at L{open}, changed
    only by L{commit}.
    """

    def open(clock: IReactorTime) -> None:
        """
        Lock the mailbox for this session and take the snapshot.

        @raise MailboxInUse: another session holds it.
        @raise OSError: the Maildir cannot be read.
        """

    def count() -> int:
        """
        How many messages the snapshot holds, deleted ones included.
        """

    def isDeleted(index: int) -> bool:
        """
        Whether message C{index} (0-based) is marked for deletion.

        @raise ValueError: no such message.
        """

    def markSeen(index: int) -> None:
        """
        Message C{index} was retrieved: give it the seen flag at commit.

        @raise ValueError: no such message.
        """

    def keepAlive() -> None:
        """
        The session is alive: refresh the lock if it is getting old.
        """

    def commit() -> None:
        """
        Apply the session's changes (deletions, seen flags), all or none.

        @raise OSError: nothing was changed.
        """

    def release() -> None:
        """
        Give up the lock (idempotent; never raises).
        """


@define
class _Message:
    """
    One message of the snapshot.

    @ivar directory: C{"new"} or C{"cur"}.
    @ivar name: the file name, flags included.
    @ivar base: the unique part of the name (before the C{:}).
    @ivar flags: the C{:2,} flags, or C{None} for another kind of info
        (which is left alone).
    @ivar size: octets on disk.
    @ivar wireSize: octets as sent (CRLF), once known.
    @ivar uid: the UIDL.
    """

    directory: str
    name: str
    base: str
    flags: str | None
    size: int
    wireSize: int | None
    uid: bytes
    deleted: bool = False
    seen: bool = False


def splitName(name: str) -> tuple[str, str | None]:
    """
    Split a Maildir file name into its base and its flags.

    @return: C{(base, flags)}; flags is C{""} for a name without info,
        C{None} for info other than C{2,...}.
    """
    base, sep, info = name.partition(":")
    if not sep:
        return base, ""
    if info.startswith("2,"):
        return base, info[2:]
    return base, None


def uidFor(base: str) -> bytes:
    """
    The UIDL of a message with base name C{base}: the name itself when it
    is a valid unique-id (RFC 1939 §7), else a stable hash of it.
    """
    if _UID_OK.match(base):
        return base.encode("ascii")
    digest = hashlib.sha256(os.fsencode(base)).hexdigest()[:40]
    return b"H" + digest.encode("ascii")


def sizesFromName(base: str) -> tuple[int | None, int | None]:
    """
    The C{,S=} (on disk) and C{,W=} (with CRLF) sizes in a base name.
    """
    fields = dict(_SIZE_FIELD.findall(base))
    s, w = fields.get("S"), fields.get("W")
    return (int(s) if s else None), (int(w) if w else None)


def _sortKey(message: _Message) -> tuple[int, int, int, int, str]:
    return deliveryOrder(message.base)


def _withSeen(flags: str) -> str:
    # Maildir: flags are kept in ASCII order.
    return "".join(sorted(set(flags) | {"S"}))


class _MessageFile:
    """
    A message file open for reading, through the L{FileSystem}.
    """

    def __init__(self, fs: FileSystem, fd: int) -> None:
        self._fs = fs
        self._fd: int | None = fd

    def read(self, size: int = _READ_SIZE) -> bytes:
        if self._fd is None:
            raise ValueError("read from a closed message")
        return os.read(self._fd, size)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            self._fs.close(fd)

    def __enter__(self) -> "_MessageFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@implementer(ISessionMailbox)
class MaildirMailbox:
    """
    A Maildir's INBOX as a POP3 maildrop.

    @param maildir: the Maildir root (holding C{cur/ new/ tmp/}).
    @param fs: the file operations (a fault-injecting one in tests).
    @param staleAfter: seconds after which a lock is stale.
    @param hostname: this host, as written in the lock (for tests).
    @param pid: this process, as written in the lock (for tests).
    """

    log = Logger()

    def __init__(
        self,
        maildir: str,
        fs: FileSystem | None = None,
        *,
        staleAfter: float = STALE_LOCK_AGE,
        hostname: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.path = maildir
        self._fs = fs if fs is not None else FileSystem()
        self._staleAfter = staleAfter
        self._host = (hostname or socket.gethostname()).replace(" ", "_") or "localhost"
        self._pid = os.getpid() if pid is None else pid
        self._messages: list[_Message] | None = None
        self._clock: IReactorTime | None = None
        self._key: str | None = None
        self._lockContent: bytes | None = None
        self._lockTime = 0.0
        self._nonce = secrets.token_hex(8)

    # Lock

    @property
    def _lockPath(self) -> str:
        return os.path.join(self.path, LOCK_NAME)

    def open(self, clock: IReactorTime) -> None:
        """
        Lock the mailbox and take the snapshot (blocking).

        @param clock: the time for the lock.
        @raise MailboxInUse: another session holds the lock.
        @raise OSError: the lock or the listing failed (nothing is held).
        """
        key = os.path.realpath(self.path)
        with _heldLock:
            if key in _held:
                raise MailboxInUse(self.path)
            _held.add(key)
        self._key = key
        self._clock = clock
        try:
            self._acquire(clock.seconds())
            self._messages = None
            self._load()
        except BaseException:
            self.release()
            raise

    def _lockLine(self, now: float) -> bytes:
        return f"{self._pid} {self._host} {int(now)} {self._nonce}\n".encode("ascii", "replace")

    def _writeTemporary(self, content: bytes) -> str:
        """
        A complete lock file under a name of its own, to be linked or
        renamed into place.
        """
        path = f"{self._lockPath}.{self._nonce}"
        fd = self._fs.openExclusive(path, 0o600)
        try:
            try:
                self._fs.write(fd, content)
            finally:
                self._fs.close(fd)
        except OSError:
            self._unlinkQuietly(path)
            raise
        return path

    def _acquire(self, now: float) -> None:
        content = self._lockLine(now)
        temporary = self._writeTemporary(content)
        try:
            for attempt in range(2):
                try:
                    self._fs.link(temporary, self._lockPath)
                except FileExistsError:
                    if attempt or not self._breakIfStale(now):
                        raise MailboxInUse(self.path) from None
                else:
                    self._lockContent = content
                    self._lockTime = now
                    return
        finally:
            self._unlinkQuietly(temporary)

    def _readLock(self, path: str) -> bytes:
        fd = self._fs.openRead(path)
        try:
            return os.read(fd, 512)
        finally:
            self._fs.close(fd)

    def isStale(self, content: bytes, now: float) -> bool:
        """
        Whether a lock holding C{content} is stale at C{now}.
        """
        try:
            pidText, host, stamp, _ = content.decode("ascii").split()
            pid, when = int(pidText), int(stamp)
        except ValueError:
            return True  # not a lock this code wrote whole
        if abs(now - when) > self._staleAfter:
            return True
        if host == self._host:
            # Our own pid: this process would hold the Maildir in memory
            # (and open() has just made sure it does not): a previous
            # process that had the same pid left it.
            return pid == self._pid or not pidAlive(pid)
        return False

    def _breakIfStale(self, now: float) -> bool:
        """
        Remove the lock if it is stale.

        @return: whether it is gone (try again).
        """
        return breakStaleLock(
            self._fs, self._lockPath, self._readLock, lambda content: self.isStale(content, now)
        )

    def keepAlive(self) -> None:
        """
        Rewrite the lock with the current time once a third of its
        lifetime has passed, so a long session keeps it.
        """
        if self._lockContent is None or self._clock is None:
            return
        now = self._clock.seconds()
        if now - self._lockTime < self._staleAfter / 3:
            return
        self._lockTime = now  # once per interval, even if it fails
        try:
            if self._readLock(self._lockPath) != self._lockContent:
                self.log.warn("POP3 lock of {maildir} was taken over", maildir=self.path)
                return
            content = self._lockLine(now)
            temporary = self._writeTemporary(content)
            self._fs.rename(temporary, self._lockPath)
            self._lockContent = content
        except OSError:
            self.log.failure("cannot refresh the POP3 lock of {maildir}", maildir=self.path)

    def release(self) -> None:
        """
        Remove the lock file if it is still ours, and let this process lock
        the Maildir again.
        """
        content, self._lockContent = self._lockContent, None
        if content is not None:
            try:
                if self._readLock(self._lockPath) == content:
                    self._fs.unlink(self._lockPath)
            except FileNotFoundError:
                self.log.warn("POP3 lock of {maildir} was already gone", maildir=self.path)
            except OSError:
                self.log.failure("cannot remove the POP3 lock of {maildir}", maildir=self.path)
        key, self._key = self._key, None
        if key is not None:
            with _heldLock:
                _held.discard(key)

    def _unlinkQuietly(self, path: str) -> None:
        try:
            self._fs.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            self.log.failure("cannot remove {path}", path=path)

    # Snapshot

    def _load(self) -> list[_Message]:
        if self._messages is not None:
            return self._messages
        messages: list[_Message] = []
        bases: set[str] = set()
        for directory in ("cur", "new"):  # cur first: it wins a duplicate
            for entry in self._scan(directory):
                base, flags = splitName(entry.name)
                if base in bases:
                    continue
                diskSize, wireSize = sizesFromName(base)
                if diskSize is None:
                    try:
                        diskSize = entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue  # gone since the listing
                bases.add(base)
                messages.append(
                    _Message(directory, entry.name, base, flags, diskSize, wireSize, uidFor(base))
                )
        messages.sort(key=_sortKey)
        self._messages = messages
        return messages

    def _scan(self, directory: str) -> Iterator[os.DirEntry[str]]:
        try:
            with os.scandir(os.path.join(self.path, directory)) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_file(follow_symlinks=False):
                        yield entry
        except FileNotFoundError:
            return

    def _message(self, index: int) -> _Message:
        messages = self._load()
        if not isinstance(index, int) or not 0 <= index < len(messages):
            raise ValueError(f"no message {index!r}")
        return messages[index]

    def _filePath(self, message: _Message) -> str:
        return os.path.join(self.path, message.directory, message.name)

    def _relocate(self, message: _Message) -> bool:
        """
        Find a message that another client renamed (flags changed, or moved
        from C{new/} to C{cur/}) by its base name.

        @return: whether it was found.
        """
        for directory in ("cur", "new"):
            for entry in self._scan(directory):
                base, flags = splitName(entry.name)
                if base == message.base:
                    message.directory, message.name, message.flags = directory, entry.name, flags
                    return True
        return False

    def _openMessage(self, message: _Message) -> _MessageFile:
        try:
            fd = self._fs.openRead(self._filePath(message))
        except FileNotFoundError:
            if not self._relocate(message):
                raise
            fd = self._fs.openRead(self._filePath(message))
        return _MessageFile(self._fs, fd)

    def _measure(self, message: _Message) -> int:
        """
        The size of a message as sent: its octets plus one CR for each
        bare LF.
        """
        if message.wireSize is not None:
            return message.wireSize
        try:
            with self._openMessage(message) as f:
                total = bare = 0
                previous = b"\n"
                while True:
                    block = f.read(_READ_SIZE)
                    if not block:
                        break
                    total += len(block)
                    bare += block.count(b"\n") - block.count(b"\r\n")
                    if block[:1] == b"\n" and previous == b"\r":
                        bare -= 1
                    previous = block[-1:]
        except OSError:
            self.log.failure("cannot measure {name}", name=message.name)
            return message.size
        message.wireSize = total + bare
        return message.wireSize

    # IMailbox

    def listMessages(self, i: int | None = None) -> int | list[int]:
        """
        The size of message C{i} as sent, or of every message; C{0} for a
        deleted one.

        @raise ValueError: no such message.
        """
        if i is None:
            return [0 if m.deleted else self._measure(m) for m in self._load()]
        message = self._message(i)
        return 0 if message.deleted else self._measure(message)

    def getMessage(self, i: int) -> _MessageFile:
        """
        Message C{i}'s file, open for reading, as stored (the caller makes
        the line ends CRLF and closes it).

        @raise ValueError: no such message, or it is deleted.
        @raise OSError: it cannot be opened.
        """
        message = self._message(i)
        if message.deleted:
            raise ValueError(f"message {i} is deleted")
        return self._openMessage(message)

    def getUidl(self, i: int) -> bytes:
        """
        Message C{i}'s unique id (RFC 1939 §7).

        @raise ValueError: no such message.
        """
        return self._message(i).uid

    def deleteMessage(self, i: int) -> None:
        """
        Mark message C{i} for deletion at commit.

        @raise ValueError: no such message.
        """
        self._message(i).deleted = True

    def undeleteMessages(self) -> None:
        """
        Unmark every message marked for deletion (RSET).
        """
        for message in self._load():
            message.deleted = False

    def sync(self) -> None:
        """
        L{IMailbox}'s name for L{commit}.
        """
        self.commit()

    # Session

    def count(self) -> int:
        return len(self._load())

    def isDeleted(self, index: int) -> bool:
        return self._message(index).deleted

    def markSeen(self, index: int) -> None:
        self._message(index).seen = True

    def commit(self) -> None:
        """
        Move retrieved messages to C{cur/} with the seen flag and remove
        deleted ones; fsync the directories.  All or nothing: on a failure
        every rename made is undone and the error is raised.

        @raise OSError: the changes could not be made; none were.
        """
        if self._messages is None:
            return
        done: list[tuple[str, str]] = []
        graves: list[str] = []
        moved: list[_Message] = []
        touched: set[str] = set()
        try:
            for number, message in enumerate(self._messages):
                if message.deleted:
                    # Into tmp/, where no reader looks: undone by a rename
                    # back if a later step fails.
                    grave = os.path.join(self.path, "tmp", f"pop3-deleted.{self._nonce}.{number}")
                    source = self._rename(message, lambda m, grave=grave: grave, done)
                    if source is not None:
                        graves.append(grave)
                        touched.add(os.path.dirname(source))
                elif message.seen and message.flags is not None:
                    source = self._rename(message, self._seenPath, done)
                    if source is not None:
                        moved.append(message)
                        touched.update((os.path.dirname(source), os.path.join(self.path, "cur")))
            for directory in sorted(touched):
                self._fs.fsyncDirectory(directory)
        except OSError:
            self.log.failure("POP3 commit failed in {maildir}; undoing", maildir=self.path)
            self._undo(done)
            raise
        # Committed: what is left is housekeeping (tmp/ is swept anyway).
        for grave in graves:
            self._unlinkQuietly(grave)
        for message in moved:
            target = self._seenPath(message)
            if target is not None:
                message.directory, message.name = "cur", os.path.basename(target)
                message.flags = splitName(message.name)[1]
        self._messages = [m for m in self._messages if not m.deleted]

    def _seenPath(self, message: _Message) -> str | None:
        """
        Where a retrieved message goes: C{cur/}, with C{S} added to its
        flags; C{None} if it is there already.
        """
        if message.flags is None:
            return None  # info this code does not understand: leave it
        flags = _withSeen(message.flags)
        if message.directory == "cur" and flags == message.flags:
            return None
        return os.path.join(self.path, "cur", f"{message.base}:2,{flags}")

    def _rename(
        self,
        message: _Message,
        targetFor: Callable[[_Message], str | None],
        done: list[tuple[str, str]],
    ) -> str | None:
        """
        Rename a message's file, finding it again (and its flags) if another
        client renamed it meanwhile.

        @return: the path it had, or C{None} if it is gone or need not move.
        """
        for attempt in range(2):
            target = targetFor(message)
            if target is None:
                return None
            source = self._filePath(message)
            try:
                self._fs.rename(source, target)
            except FileNotFoundError:
                if attempt or not self._relocate(message):
                    return None
            else:
                done.append((source, target))
                return source
        return None

    def _undo(self, done: list[tuple[str, str]]) -> None:
        for source, target in reversed(done):
            try:
                self._fs.rename(target, source)
            except OSError:
                self.log.failure("cannot undo {target} -> {source}", target=target, source=source)
        for directory in {os.path.dirname(source) for source, _ in done}:
            try:
                self._fs.fsyncDirectory(directory)
            except OSError:
                self.log.failure("cannot fsync {directory} after undo", directory=directory)
