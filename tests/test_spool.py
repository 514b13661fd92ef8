"""
Tests for L{mailhub.spool}: a message in memory while small, in a file
once large.
"""

from __future__ import annotations

import errno
import os

from twisted.trial.unittest import SynchronousTestCase

from mailhub.spool import SPILL_THRESHOLD, Spool
from tests.test_fs import ScriptedFileSystem

THRESHOLD = 1000


def chunks(total: int, size: int = 97) -> list[bytes]:
    """
    C{total} bytes of recognisable data in chunks of C{size}.
    """
    data = bytes(i % 251 for i in range(total))
    return [data[i : i + size] for i in range(0, total, size)]


def readFile(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class SpoolTests(SynchronousTestCase):
    """
    L{Spool} keeps a message in memory up to its threshold and spills it
    into the spool directory past it.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)

    def spool(self, fs: ScriptedFileSystem | None = None, directory: str | None = None) -> Spool:
        return Spool(directory or self.directory, "ID0001", threshold=THRESHOLD, fs=fs)

    def test_defaultThreshold(self) -> None:
        """
        By default messages up to 256 KiB stay in memory.
        """
        self.assertEqual(SPILL_THRESHOLD, 256 * 1024)

    def test_inMemoryUpToThreshold(self) -> None:
        """A message of exactly the threshold stays in memory and makes no file."""
        fs = ScriptedFileSystem()
        spool = self.spool(fs)
        parts = chunks(THRESHOLD)
        for part in parts:
            spool.write(part)
        self.assertEqual(spool.finish(), b"".join(parts))
        self.assertEqual((spool.size, spool.path), (THRESHOLD, None))
        self.assertEqual(os.listdir(self.directory), [])
        self.assertEqual(fs.calls, [])

    def test_spillsAboveThreshold(self) -> None:
        """Past the threshold the message spills to DIR/ID exactly; finish returns None."""
        spool = self.spool()
        parts = chunks(THRESHOLD * 3 + 1)
        for part in parts:
            spool.write(part)
        self.assertIsNone(spool.finish())
        self.assertEqual(spool.path, os.path.join(self.directory, "ID0001"))
        assert spool.path is not None
        self.assertEqual(readFile(spool.path), b"".join(parts))
        self.assertEqual(spool.size, THRESHOLD * 3 + 1)

    def test_spillExactlyOverThreshold(self) -> None:
        """The write crossing the threshold makes the file, holding everything so far."""
        spool = self.spool()
        spool.write(b"a" * THRESHOLD)
        self.assertIsNone(spool.path)
        spool.write(b"b")
        assert spool.path is not None
        spool.finish()
        self.assertEqual(readFile(spool.path), b"a" * THRESHOLD + b"b")

    def test_emptyWriteIgnored(self) -> None:
        """
        Writing nothing changes nothing.
        """
        spool = self.spool()
        spool.write(b"")
        self.assertEqual((spool.size, spool.finish()), (0, b""))

    def test_spillMakesDirectory(self) -> None:
        """A missing spool directory is made at the first spill."""
        directory = os.path.join(self.mktemp(), "spool")
        spool = self.spool(directory=directory)
        spool.write(b"x" * (THRESHOLD + 1))
        spool.finish()
        self.assertEqual(os.listdir(directory), ["ID0001"])

    def test_spillNeverOverwrites(self) -> None:
        """A spill onto an existing name fails with FileExistsError, overwriting nothing."""
        with open(os.path.join(self.directory, "ID0001"), "wb") as f:
            f.write(b"other")
        spool = self.spool()
        self.assertRaises(FileExistsError, spool.write, b"x" * (THRESHOLD + 1))
        self.assertEqual(readFile(os.path.join(self.directory, "ID0001")), b"other")

    def test_discardRemovesFile(self) -> None:
        """discard removes the spill file, closes its descriptor, and is idempotent."""
        fs = ScriptedFileSystem()
        spool = self.spool(fs)
        spool.write(b"x" * (THRESHOLD + 1))
        spool.discard()
        self.assertEqual(os.listdir(self.directory), [])
        self.assertEqual(fs.openFds, set())
        spool.discard()
        self.assertIsNone(spool.path)

    def test_discardAfterFinish(self) -> None:
        """
        discard after finish removes the file too.
        """
        spool = self.spool()
        spool.write(b"x" * (THRESHOLD + 1))
        spool.finish()
        spool.discard()
        spool.discard()
        self.assertEqual(os.listdir(self.directory), [])

    def test_discardInMemory(self) -> None:
        """
        discard of an in-memory message touches no file.
        """
        fs = ScriptedFileSystem()
        spool = self.spool(fs)
        spool.write(b"small")
        spool.discard()
        spool.discard()
        self.assertEqual(fs.calls, [])

    def test_writeFailureRaises(self) -> None:
        """A failure making or writing the spill file raises the OSError; discard cleans up."""
        for op, failAt, writes in (
            ("openExclusive", 1, 1),
            ("makedirs", 1, 1),
            ("write", 1, 1),
            ("write", 2, 2),
        ):
            for code in (errno.ENOSPC, errno.EIO):
                directory = os.path.join(self.mktemp(), "spool")
                if op != "makedirs":
                    os.makedirs(directory)
                fs = ScriptedFileSystem(failOp=op, failAt=failAt, failErrno=code)
                spool = self.spool(fs, directory)
                for _ in range(writes - 1):
                    spool.write(b"x" * (THRESHOLD + 1))
                e = self.assertRaises(OSError, spool.write, b"y" * (THRESHOLD + 1))
                self.assertIs(e, fs.raised, (op, failAt))
                spool.discard()
                leftovers = os.listdir(directory) if os.path.isdir(directory) else []
                self.assertEqual(leftovers, [], (op, failAt))
                self.assertEqual(fs.openFds, set(), (op, failAt))

    def test_finishCloseFailureRaises(self) -> None:
        """A failing close at finish raises the OSError; discard still removes the file."""
        fs = ScriptedFileSystem(failOp="close", failErrno=errno.EIO)
        spool = self.spool(fs)
        spool.write(b"x" * (THRESHOLD + 1))
        e = self.assertRaises(OSError, spool.finish)
        self.assertIs(e, fs.raised)
        spool.discard()
        self.assertEqual(os.listdir(self.directory), [])

    def test_neverSynced(self) -> None:
        """
        The spool is not the durable copy: it is never fsynced.
        """
        fs = ScriptedFileSystem()
        spool = self.spool(fs)
        for part in chunks(THRESHOLD * 2):
            spool.write(part)
        spool.finish()
        self.assertEqual(fs.counts["fsync"] + fs.counts["syncfs"], 0)
