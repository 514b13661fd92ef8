# -*- test-case-name: tests.test_fs -*-
"""
The file operations that durable storage is made of, behind one seam.

Everything that must reach the disk before mailhub says C{250} goes through
a L{FileSystem}; tests hand in a subclass that fails at a chosen step
(C{ENOSPC}, C{EIO}) to prove that a failure is answered with C{451} and
leaves nothing half-written where a reader can see it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform


def stampOf(st: os.stat_result) -> tuple[int, int, int]:
    """
    A file's signature for "has it changed since": inode, size, mtime.
    """
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def statStamp(path: str) -> tuple[int, int, int] | None:
    """
    L{stampOf} of C{path}, or C{None} if there is no such file.
    """
    try:
        return stampOf(os.stat(path))
    except FileNotFoundError:
        return None


def _findSyncfs():
    """
    Linux's C{syncfs(2)}, if it reports write-back errors (Linux 5.8 and
    later); otherwise C{None}.
    """
    if platform.system() != "Linux":
        return None
    try:
        major, minor = (int(x) for x in platform.release().split(".")[:2])
    except ValueError:
        return None
    if (major, minor) < (5, 8):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_syncfs = _findSyncfs()


def _findRenameat2():
    """
    C{renameat2(2)} (glibc 2.28 and later), for a rename that never
    replaces; otherwise C{None}.
    """
    if platform.system() != "Linux":
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _findRenameat2()
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
#: What renameat2 says where the file system or the kernel cannot do it.
_NO_RENAMEAT2 = frozenset((errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP))


class FileSystem:
    """
    Thin wrappers over L{os}; one method per step that can fail.

    @ivar canSyncFilesystem: whether L{syncfs} is available: one call makes
        every file and directory entry of a file system durable, which lets
        a batch of deliveries share one device flush instead of one each.
    """

    canSyncFilesystem = _syncfs is not None

    def openExclusive(self, path: str, mode: int = 0o600) -> int:
        """
        Create C{path}, which must not exist, for writing; return its descriptor.
        """
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)

    def openRead(self, path: str) -> int:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def write(self, fd: int, data: bytes | memoryview) -> None:
        """
        Write all of C{data} (os.write may write less than asked).
        """
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def copy(self, sourceFd: int, targetFd: int, count: int) -> None:
        """
        Copy C{count} bytes from the start of C{sourceFd} to C{targetFd}'s
        current position, in the kernel where it can.
        """
        offset = 0
        while offset < count:
            sent = os.sendfile(targetFd, sourceFd, offset, count - offset)
            if sent == 0:
                raise OSError(5, "short copy: source file shrank")
            offset += sent

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def syncfs(self, fd: int) -> None:
        """
        Make everything written to the file system holding C{fd} durable
        (C{syncfs(2)}); raises the write-back error, if any, since C{fd}
        was opened.
        """
        assert _syncfs is not None
        if _syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    def device(self, fd: int) -> int:
        """
        The file system (device number) C{fd} is on.
        """
        return os.fstat(fd).st_dev

    def openDirectory(self, path: str) -> int:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self, fd: int) -> None:
        os.close(fd)

    def link(self, source: str, target: str) -> None:
        os.link(source, target)

    def rename(self, source: str, target: str) -> None:
        os.rename(source, target)

    def renameNoReplace(self, source: str, target: str) -> None:
        """
        Rename C{source} to C{target} unless C{target} exists, in one step
        (C{renameat2} with C{RENAME_NOREPLACE}).  Where the file system
        cannot, a check and a plain rename (not atomic: for callers whose
        names no one else creates).

        @raise FileExistsError: C{target} exists; nothing was changed.
        """
        function = _renameat2
        if function is not None:
            if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
                return
            code = ctypes.get_errno()
            if code not in _NO_RENAMEAT2:
                raise OSError(code, os.strerror(code), source, None, target)
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), source, None, target)
        os.rename(source, target)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def mkdir(self, path: str, mode: int = 0o700) -> None:
        os.mkdir(path, mode)

    def makedirs(self, path: str, mode: int = 0o700) -> None:
        os.makedirs(path, mode, exist_ok=True)

    def fsyncDirectory(self, path: str) -> None:
        """
        Make the directory entries of C{path} durable (a rename or link into
        it is not on disk until this returns).
        """
        fd = self.openDirectory(path)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
