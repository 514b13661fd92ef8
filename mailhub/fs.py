# -*- test-case-name: tests.test_fs -*-
"""
The file operations that durable storage is made of, behind one seam.

Everything that must reach the disk before mailhub says C{250} goes through
a L{FileSystem}; tests hand in a subclass that fails at a chosen step
(C{ENOSPC}, C{EIO}) to prove that a failure is answered with C{451} and
leaves nothing half-written where a reader can see it.
"""

from __future__ import annotations

import os


class FileSystem:
    """
    Thin wrappers over L{os}; one method per step that can fail.
    """

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

    def close(self, fd: int) -> None:
        os.close(fd)

    def link(self, source: str, target: str) -> None:
        os.link(source, target)

    def rename(self, source: str, target: str) -> None:
        os.rename(source, target)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def makedirs(self, path: str, mode: int = 0o700) -> None:
        os.makedirs(path, mode, exist_ok=True)

    def fsyncDirectory(self, path: str) -> None:
        """
        Make the directory entries of C{path} durable (a rename or link into
        it is not on disk until this returns).
        """
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
