# -*- test-case-name: tests.test_spool -*-
"""
The text of one message while it arrives.

A small message stays in memory; once it grows past a threshold it spills
into a file in the spool directory, so that a 50 MB message never sits in
memory.  The spool is not the durable copy (delivery writes and fsyncs its
own files), so it is never fsynced; whatever a crash leaves in the spool
directory is removed at the next start.
"""

from __future__ import annotations

import os

from mailhub.fs import FileSystem

#: Messages up to this size are held in memory until they are delivered.
SPILL_THRESHOLD = 256 * 1024


class Spool:
    """
    Collects one message's bytes.

    @param directory: where a large message spills to.
    @param name: the spool file's name (the queue id).
    @param threshold: the size above which the message goes to a file.
    @param fs: the file operations.
    @ivar size: how many bytes have been written.
    """

    def __init__(
        self,
        directory: str,
        name: str,
        threshold: int = SPILL_THRESHOLD,
        fs: FileSystem | None = None,
    ) -> None:
        self._directory = directory
        self._name = name
        self._threshold = threshold
        self._fs = fs or FileSystem()
        self._chunks: list[bytes] = []
        self._fd: int | None = None
        self.path: str | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        """
        Add C{data} to the message.

        @raise OSError: the spool file could not be created or written.
        """
        if not data:
            return
        self.size += len(data)
        if self._fd is not None:
            self._fs.write(self._fd, data)
            return
        self._chunks.append(data)
        if self.size > self._threshold:
            self._spill()

    def _spill(self) -> None:
        path = os.path.join(self._directory, self._name)
        try:
            fd = self._fs.openExclusive(path)
        except FileNotFoundError:
            self._fs.makedirs(self._directory)
            fd = self._fs.openExclusive(path)
        self._fd, self.path = fd, path
        chunks, self._chunks = self._chunks, []
        self._fs.write(fd, b"".join(chunks))

    def finish(self) -> bytes | None:
        """
        The message is complete.

        @return: its bytes if it is held in memory, or C{None} if it is in
            the file at L{path}.
        @raise OSError: the spool file could not be closed.
        """
        if self._fd is None:
            return b"".join(self._chunks)
        fd, self._fd = self._fd, None
        self._fs.close(fd)
        return None

    def discard(self) -> None:
        """
        Forget the message: free the memory, remove the file.  Safe to call
        more than once and after L{finish}.
        """
        self._chunks = []
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                self._fs.close(fd)
            except OSError:
                pass
        if self.path is not None:
            path, self.path = self.path, None
            try:
                self._fs.unlink(path)
            except OSError:
                pass
