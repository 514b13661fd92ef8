"""
Tests for L{mailhub.fs}, and the fault-injecting L{ScriptedFileSystem} that
the storage tests hand to the code under test in its place.
"""

from __future__ import annotations

import errno
import inspect
import os
import stat
from collections import Counter
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from mailhub import fs as fsModule
from mailhub.fs import FileSystem


class ScriptedFileSystem(FileSystem):
    """
    A L{FileSystem} that records every call and fails one of them on cue.

    The failure imitates the kernel: a failing C{write} or C{copy} has
    written half of what it was asked to, a failing C{close} has released
    the descriptor all the same (Linux close(2)), every other step fails
    before it has done anything.

    @ivar calls: C{(operation, arguments)} for every call, in order.
    @ivar counts: calls so far, by operation.
    @ivar openFds: descriptors opened through this object and not closed.
    @ivar fdPaths: the path each open descriptor was opened on.
    @ivar subjects: for each call in L{calls}, the path it worked on, as it
        was at the time of the call (descriptor numbers are reused): a
        descriptor's path, a link's or rename's target, or the path given.
    @ivar raised: the injected error once it has been raised.
    @ivar failedCall: C{(operation, arguments)} of the call that failed.
    """

    def __init__(
        self,
        failOp: str | None = None,
        failAt: int = 1,
        failErrno: int = errno.ENOSPC,
        linkErrno: int | None = None,
        canSyncFilesystem: bool | None = None,
    ) -> None:
        """
        @param failOp: the operation to fail, or C{None} for none.
        @param failAt: fail the C{failAt}-th call of C{failOp} (from 1).
        @param failErrno: the errno of the injected L{OSError}.
        @param linkErrno: if set, every C{link} into an existing directory
            fails with this errno (C{EXDEV}: another file system); a link
            into a missing directory fails with C{ENOENT} as link(2) does.
        @param canSyncFilesystem: whether to offer L{syncfs}; C{None}
            keeps the real file system's answer.  Where the kernel has no
            C{syncfs} the fake's L{syncfs} fsyncs the one descriptor.
        """
        if canSyncFilesystem is not None:
            self.canSyncFilesystem = canSyncFilesystem
        self.failOp = failOp
        self.failAt = failAt
        self.failErrno = failErrno
        self.linkErrno = linkErrno
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.counts: Counter[str] = Counter()
        self.openFds: set[int] = set()
        self.fdPaths: dict[int, str] = {}
        self.subjects: list[str | None] = []
        self.raised: OSError | None = None
        self.failedCall: tuple[str, tuple[Any, ...]] | None = None

    def _step(self, op: str, *args: Any) -> bool:
        """
        Record a call; return whether it is the one to fail.
        """
        self.counts[op] += 1
        self.calls.append((op, args))
        if op in ("write", "fsync", "syncfs", "device", "close"):
            subject = self.fdPaths.get(args[0])
        elif op == "copy":
            subject = self.fdPaths.get(args[1])
        elif op in ("link", "rename", "renameNoReplace"):
            subject = args[1]
        else:
            subject = args[0]
        self.subjects.append(subject)
        return op == self.failOp and self.counts[op] == self.failAt

    def _fail(self) -> None:
        op, args = self.calls[-1]
        self.failedCall = (op, args)
        self.raised = OSError(
            self.failErrno,
            f"injected {os.strerror(self.failErrno)} at {op} #{self.counts[op]}",
        )
        raise self.raised

    def subjectsOf(self, *names: str) -> list[str | None]:
        """
        The subjects of the recorded calls of the named operations.
        """
        return [s for (op, _), s in zip(self.calls, self.subjects) if op in names]

    def ops(self, *names: str) -> list[tuple[str, tuple[Any, ...]]]:
        """
        The recorded calls of the named operations, in order.
        """
        return [call for call in self.calls if call[0] in names]

    def openExclusive(self, path: str, mode: int = 0o600) -> int:
        if self._step("openExclusive", path):
            self._fail()
        return self._opened(FileSystem.openExclusive(self, path, mode), path)

    def openRead(self, path: str) -> int:
        if self._step("openRead", path):
            self._fail()
        return self._opened(FileSystem.openRead(self, path), path)

    def openDirectory(self, path: str) -> int:
        if self._step("openDirectory", path):
            self._fail()
        return self._opened(FileSystem.openDirectory(self, path), path)

    def _opened(self, fd: int, path: str) -> int:
        self.openFds.add(fd)
        self.fdPaths[fd] = path
        return fd

    def write(self, fd: int, data: bytes | memoryview) -> None:
        if self._step("write", fd, len(data)):
            FileSystem.write(self, fd, memoryview(data)[: len(data) // 2])
            self._fail()
        FileSystem.write(self, fd, data)

    def copy(self, sourceFd: int, targetFd: int, count: int) -> None:
        if self._step("copy", sourceFd, targetFd, count):
            FileSystem.copy(self, sourceFd, targetFd, count // 2)
            self._fail()
        FileSystem.copy(self, sourceFd, targetFd, count)

    def fsync(self, fd: int) -> None:
        if self._step("fsync", fd):
            self._fail()
        FileSystem.fsync(self, fd)

    def syncfs(self, fd: int) -> None:
        if self._step("syncfs", fd):
            self._fail()
        if FileSystem.canSyncFilesystem:
            FileSystem.syncfs(self, fd)
        else:
            os.fsync(fd)

    def device(self, fd: int) -> int:
        if self._step("device", fd):
            self._fail()
        return FileSystem.device(self, fd)

    def close(self, fd: int) -> None:
        due = self._step("close", fd)
        self.openFds.discard(fd)
        self.fdPaths.pop(fd, None)
        FileSystem.close(self, fd)
        if due:
            self._fail()

    def link(self, source: str, target: str) -> None:
        if self._step("link", source, target):
            self._fail()
        if self.linkErrno is not None:
            if not os.path.isdir(os.path.dirname(target)):
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), target)
            raise OSError(self.linkErrno, os.strerror(self.linkErrno), target)
        FileSystem.link(self, source, target)

    def rename(self, source: str, target: str) -> None:
        if self._step("rename", source, target):
            self._fail()
        FileSystem.rename(self, source, target)

    def renameNoReplace(self, source: str, target: str) -> None:
        if self._step("renameNoReplace", source, target):
            self._fail()
        FileSystem.renameNoReplace(self, source, target)

    def unlink(self, path: str) -> None:
        if self._step("unlink", path):
            self._fail()
        FileSystem.unlink(self, path)

    def mkdir(self, path: str, mode: int = 0o700) -> None:
        if self._step("mkdir", path):
            self._fail()
        FileSystem.mkdir(self, path, mode)

    def makedirs(self, path: str, mode: int = 0o700) -> None:
        if self._step("makedirs", path):
            self._fail()
        FileSystem.makedirs(self, path, mode)

    def fsyncDirectory(self, path: str) -> None:
        if self._step("fsyncDirectory", path):
            self._fail()
        # As FileSystem.fsyncDirectory, without recording its inner
        # openDirectory: this is one step.
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publicMethods(cls: type) -> dict[str, Any]:
    return {
        name: value
        for name, value in vars(cls).items()
        if not name.startswith("_") and inspect.isfunction(value)
    }


def _openFdCount() -> int:
    return len(os.listdir("/proc/self/fd"))


class FileSystemTests(SynchronousTestCase):
    """
    L{FileSystem} does each step for real, with the semantics delivery
    relies on.
    """

    def setUp(self) -> None:
        self.fs = FileSystem()
        self.dir = self.mktemp()
        os.makedirs(self.dir)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def readBack(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def writeFile(self, name: str, content: bytes) -> str:
        path = self.path(name)
        with open(path, "wb") as f:
            f.write(content)
        return path

    def test_openExclusiveCreatesPrivateFile(self) -> None:
        """openExclusive makes a new file with mode 0600, not inherited by children."""
        fd = self.fs.openExclusive(self.path("f"))
        self.addCleanup(os.close, fd)
        self.assertEqual(stat.S_IMODE(os.fstat(fd).st_mode), 0o600)
        self.assertFalse(os.get_inheritable(fd))

    def test_openExclusiveRefusesExisting(self) -> None:
        """openExclusive refuses an existing file with FileExistsError, leaving it intact."""
        path = self.writeFile("f", b"theirs")
        self.assertRaises(FileExistsError, self.fs.openExclusive, path)
        self.assertEqual(self.readBack(path), b"theirs")

    def test_openExclusiveMissingDirectory(self) -> None:
        """openExclusive in a missing directory raises FileNotFoundError."""
        self.assertRaises(
            FileNotFoundError, self.fs.openExclusive, self.path("missing/f")
        )

    def test_openRead(self) -> None:
        """
        openRead opens an existing file for reading.
        """
        path = self.writeFile("f", b"hello")
        fd = self.fs.openRead(path)
        self.addCleanup(os.close, fd)
        self.assertEqual(os.read(fd, 100), b"hello")
        self.assertFalse(os.get_inheritable(fd))

    def test_writeAllDespiteShortWrites(self) -> None:
        """write loops until all data is written when os.write writes less than asked."""
        realWrite = os.write
        sizes = []

        def shortWrite(fd: int, data: Any) -> int:
            sizes.append(len(data))
            return realWrite(fd, bytes(data[:3]))

        path = self.path("f")
        fd = self.fs.openExclusive(path)
        self.patch(os, "write", shortWrite)
        try:
            self.fs.write(fd, b"0123456789")
        finally:
            self.fs.close(fd)
        self.assertEqual(self.readBack(path), b"0123456789")
        self.assertEqual(sizes, [10, 7, 4, 1])

    def test_writeMemoryview(self) -> None:
        """
        write accepts a memoryview as well as bytes.
        """
        path = self.path("f")
        fd = self.fs.openExclusive(path)
        self.fs.write(fd, memoryview(b"abcdef")[2:])
        self.fs.close(fd)
        self.assertEqual(self.readBack(path), b"cdef")

    def test_copyFromStartOfSource(self) -> None:
        """copy takes count bytes from the source's start, appending at the target's position."""
        source = self.writeFile("source", b"0123456789TRAILING")
        sourceFd = self.fs.openRead(source)
        os.read(sourceFd, 5)
        target = self.path("target")
        targetFd = self.fs.openExclusive(target)
        self.fs.write(targetFd, b"HEAD:")
        self.fs.copy(sourceFd, targetFd, 10)
        self.fs.close(sourceFd)
        self.fs.close(targetFd)
        self.assertEqual(self.readBack(target), b"HEAD:0123456789")

    def test_copyLarge(self) -> None:
        """
        copy moves a multi-megabyte file completely.
        """
        content = os.urandom(3 * 1024 * 1024 + 17)
        source = self.writeFile("source", content)
        sourceFd = self.fs.openRead(source)
        target = self.path("target")
        targetFd = self.fs.openExclusive(target)
        self.fs.copy(sourceFd, targetFd, len(content))
        self.fs.close(sourceFd)
        self.fs.close(targetFd)
        self.assertEqual(self.readBack(target), content)

    def test_copyShortSourceIsEIO(self) -> None:
        """copy raises EIO when the source holds fewer bytes than asked."""
        source = self.writeFile("source", b"short")
        sourceFd = self.fs.openRead(source)
        self.addCleanup(os.close, sourceFd)
        targetFd = self.fs.openExclusive(self.path("target"))
        self.addCleanup(os.close, targetFd)
        e = self.assertRaises(OSError, self.fs.copy, sourceFd, targetFd, 100)
        self.assertEqual(e.errno, errno.EIO)

    def test_fsyncAndClose(self) -> None:
        """fsync succeeds on an open file; after close the descriptor is gone (EBADF)."""
        fd = self.fs.openExclusive(self.path("f"))
        self.fs.write(fd, b"x")
        self.fs.fsync(fd)
        self.fs.close(fd)
        e = self.assertRaises(OSError, os.fstat, fd)
        self.assertEqual(e.errno, errno.EBADF)

    def test_linkSameInode(self) -> None:
        """link makes a second name for the same inode and refuses an existing target."""
        source = self.writeFile("a", b"x")
        target = self.path("b")
        self.fs.link(source, target)
        self.assertEqual(os.stat(source).st_ino, os.stat(target).st_ino)
        self.assertRaises(FileExistsError, self.fs.link, source, target)

    def test_renameReplaces(self) -> None:
        """
        rename moves a file over the target name.
        """
        source = self.writeFile("a", b"new")
        target = self.writeFile("b", b"old")
        self.fs.rename(source, target)
        self.assertFalse(os.path.exists(source))
        self.assertEqual(self.readBack(target), b"new")

    def test_renameNoReplace(self) -> None:
        """
        renameNoReplace moves a file to a free name, and refuses a taken
        one without changing either file.
        """
        source = self.writeFile("a", b"new")
        target = self.writeFile("b", b"old")
        self.assertRaises(FileExistsError, self.fs.renameNoReplace, source, target)
        self.assertEqual(self.readBack(source), b"new")
        self.assertEqual(self.readBack(target), b"old")
        self.fs.renameNoReplace(source, self.path("c"))
        self.assertFalse(os.path.exists(source))
        self.assertEqual(self.readBack(self.path("c")), b"new")

    def test_renameNoReplaceFallback(self) -> None:
        """
        Without renameat2 (or where the file system cannot do it), a check
        and a rename, with the same answers.
        """
        self.patch(fsModule, "_renameat2", None)
        self.test_renameNoReplace()

    def test_renameNoReplaceOtherError(self) -> None:
        """
        Other errors are raised as they are.
        """
        self.assertRaises(FileNotFoundError, self.fs.renameNoReplace, self.path("missing"), self.path("b"))

    def test_unlink(self) -> None:
        """
        unlink removes a file and raises FileNotFoundError for a missing one.
        """
        path = self.writeFile("a", b"x")
        self.fs.unlink(path)
        self.assertFalse(os.path.exists(path))
        self.assertRaises(FileNotFoundError, self.fs.unlink, path)

    def test_makedirsPrivateAndIdempotent(self) -> None:
        """makedirs makes nested directories closed to others and accepts existing ones."""
        path = self.path("a/b/c")
        self.fs.makedirs(path)
        self.fs.makedirs(path)
        self.assertTrue(os.path.isdir(path))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode) & 0o077, 0)

    def test_fsyncDirectory(self) -> None:
        """
        fsyncDirectory succeeds on a directory and leaks no descriptor.
        """
        before = _openFdCount()
        self.fs.fsyncDirectory(self.dir)
        self.assertEqual(_openFdCount(), before)

    def test_fsyncDirectoryErrors(self) -> None:
        """
        fsyncDirectory raises for a missing path and for a plain file.
        """
        self.assertRaises(FileNotFoundError, self.fs.fsyncDirectory, self.path("no"))
        path = self.writeFile("f", b"")
        self.assertRaises(NotADirectoryError, self.fs.fsyncDirectory, path)

    def test_openDirectory(self) -> None:
        """openDirectory opens a directory, not inherited, and refuses a plain file."""
        fd = self.fs.openDirectory(self.dir)
        self.addCleanup(os.close, fd)
        self.assertTrue(stat.S_ISDIR(os.fstat(fd).st_mode))
        self.assertFalse(os.get_inheritable(fd))
        path = self.writeFile("f", b"")
        self.assertRaises(NotADirectoryError, self.fs.openDirectory, path)

    def test_device(self) -> None:
        """
        device names the file system a descriptor is on.
        """
        path = self.writeFile("f", b"")
        fd = self.fs.openRead(path)
        self.addCleanup(os.close, fd)
        self.assertEqual(self.fs.device(fd), os.stat(path).st_dev)

    def test_syncfs(self) -> None:
        """Where available, syncfs succeeds and raises the kernel's error as OSError (EBADF)."""
        if not FileSystem.canSyncFilesystem:
            raise SkipTest("no syncfs(2) reporting write-back errors here")
        fd = self.fs.openExclusive(self.path("f"))
        self.addCleanup(os.close, fd)
        self.fs.write(fd, b"x")
        self.fs.syncfs(fd)
        e = self.assertRaises(OSError, self.fs.syncfs, -1)
        self.assertEqual(e.errno, errno.EBADF)


class ScriptedFileSystemTests(SynchronousTestCase):
    """
    The fault-injecting fake behaves like the real thing except where
    told, and fails as the kernel would.
    """

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)

    def test_overridesEveryStep(self) -> None:
        """The fake overrides every public FileSystem method with the same parameters."""
        real = _publicMethods(FileSystem)
        fake = _publicMethods(ScriptedFileSystem)
        self.assertEqual(set(real) - set(fake), set())
        for name, method in real.items():
            self.assertEqual(
                list(inspect.signature(method).parameters),
                list(inspect.signature(fake[name]).parameters),
                name,
            )

    def test_failsAtNthCallOnly(self) -> None:
        """Only the chosen call of the chosen step fails, with the chosen errno, recorded."""
        fs = ScriptedFileSystem(failOp="write", failAt=2, failErrno=errno.EIO)
        path = os.path.join(self.dir, "f")
        fd = fs.openExclusive(path)
        fs.write(fd, b"one ")
        e = self.assertRaises(OSError, fs.write, fd, b"twotwo")
        self.assertIs(e, fs.raised)
        self.assertEqual(e.errno, errno.EIO)
        self.assertEqual(fs.failedCall, ("write", (fd, 6)))
        fs.write(fd, b" three")
        fs.close(fd)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"one two three")
        self.assertEqual(fs.counts["write"], 3)

    def test_failingCloseReleasesDescriptor(self) -> None:
        """
        A failing close still closes the descriptor, as close(2) does.
        """
        fs = ScriptedFileSystem(failOp="close")
        fd = fs.openExclusive(os.path.join(self.dir, "f"))
        self.assertRaises(OSError, fs.close, fd)
        self.assertRaises(OSError, os.fstat, fd)
        self.assertEqual(fs.openFds, set())

    def test_failingStepsDoNothing(self) -> None:
        """
        A failing openExclusive, link, rename or makedirs leaves no trace.
        """
        source = os.path.join(self.dir, "source")
        open(source, "wb").close()
        target = os.path.join(self.dir, "target")
        for op, call in [
            ("openExclusive", lambda fs: fs.openExclusive(target)),
            ("link", lambda fs: fs.link(source, target)),
            ("rename", lambda fs: fs.rename(source, target)),
            ("makedirs", lambda fs: fs.makedirs(target)),
        ]:
            fs = ScriptedFileSystem(failOp=op)
            self.assertRaises(OSError, call, fs)
            self.assertEqual(sorted(os.listdir(self.dir)), ["source"], op)

    def test_linkErrno(self) -> None:
        """linkErrno fails links into existing directories; missing ones give ENOENT."""
        fs = ScriptedFileSystem(linkErrno=errno.EXDEV)
        source = os.path.join(self.dir, "source")
        open(source, "wb").close()
        e = self.assertRaises(OSError, fs.link, source, os.path.join(self.dir, "t"))
        self.assertEqual(e.errno, errno.EXDEV)
        self.assertRaises(
            FileNotFoundError, fs.link, source, os.path.join(self.dir, "no", "t")
        )

    def test_canSyncFilesystemChoice(self) -> None:
        """canSyncFilesystem can be set per instance; the fake's syncfs works either way."""
        self.assertFalse(ScriptedFileSystem(canSyncFilesystem=False).canSyncFilesystem)
        fs = ScriptedFileSystem(canSyncFilesystem=True)
        self.assertTrue(fs.canSyncFilesystem)
        self.assertEqual(
            ScriptedFileSystem().canSyncFilesystem, FileSystem.canSyncFilesystem
        )
        fd = fs.openExclusive(os.path.join(self.dir, "f"))
        fs.syncfs(fd)
        fs.close(fd)
        self.assertEqual([op for op, _ in fs.calls], ["openExclusive", "syncfs", "close"])

    def test_subjectsSurviveDescriptorReuse(self) -> None:
        """Each call's subject is its descriptor's path at the time, despite fd reuse."""
        fs = ScriptedFileSystem()
        first, second = (os.path.join(self.dir, n) for n in ("first", "second"))
        fd1 = fs.openExclusive(first)
        fs.write(fd1, b"x")
        fs.close(fd1)
        fd2 = fs.openExclusive(second)
        fs.write(fd2, b"y")
        fs.close(fd2)
        self.assertEqual(fs.subjectsOf("write"), [first, second])
        self.assertEqual(fs.subjects, [first, first, first, second, second, second])
