"""
Tests for L{mailhub.relay.queue}: the durable relay queue.

The house rule under test: a failure injected at each step of L{Queue.add}
leaves either no entry or a complete one, never one a reader half sees.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import zlib

from attrs import evolve
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from mailhub.relay import queue as queueModule
from mailhub.relay.queue import (
    FLUSH_REQUEST,
    LEFTOVER_AGE,
    OWNER_PREFIX,
    Flushed,
    NoSuchEntry,
    Queue,
    checkId,
    decode,
    encode,
    signalServer,
)
from mailhub.relay.values import FAILED, SENT, QueuedRecipient, QueueEntry
from tests.test_fs import ScriptedFileSystem

MESSAGE = b"Received: from a by b\r\nSubject: hello\r\n\r\n" + b"line\r\n" * 500

#: Well after any file the tests write (their mtimes are the real time).
LATER = 4_000_000_000.0


def seal(body: bytes) -> bytes:
    """
    A version 2 record of C{body}: it with its checksum line.
    """
    return body + b"\n%08x\n" % zlib.crc32(body)


def body(record: bytes) -> dict:
    """
    The JSON document of a version 2 record (its checksum line checked).
    """
    data, crc, end = record.rsplit(b"\n", 2)
    assert end == b"" and int(crc, 16) == zlib.crc32(data), record
    return json.loads(data)


def makeEntry(queueId: str = "0123456789ABCD", **changes: object) -> QueueEntry:
    entry = QueueEntry(
        id=queueId,
        sender="alice@example.com",
        recipients=(
            QueuedRecipient("bob@example.net"),
            QueuedRecipient("carol@example.org", SENT, "250 2.0.0 ok", "mx.example.org"),
        ),
        created=1_700_000_000.5,
        nextAttempt=1_700_000_300.0,
        attempts=1,
        lastError="451 4.7.1 greylisted",
        size=len(MESSAGE),
    )
    return evolve(entry, **changes)


class QueueTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        self.clock = Clock()
        self.clock.advance(LATER)
        self.queue = Queue(self.directory, clock=self.clock)

    def path(self, *parts: str) -> str:
        return os.path.join(self.directory, *parts)

    def read(self, *parts: str) -> bytes:
        with open(self.path(*parts), "rb") as f:
            return f.read()

    def write(self, data: bytes, *parts: str, old: bool = True) -> str:
        path = self.path(*parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        if old:
            os.utime(path, (0, 0))
        return path

    def listing(self, *parts: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(*parts)))
        except FileNotFoundError:
            return []


class AddTests(QueueTestCase):
    def test_roundTrip(self) -> None:
        """
        An entry added from memory reads back equal, with its message as
        given, as C{ID.env} and C{ID.msg}; nothing is left in C{tmp/}.
        """
        entry = makeEntry()
        self.queue.add(entry, MESSAGE)
        self.assertEqual(self.queue.get(entry.id), entry)
        with open(self.queue.messagePath(entry.id), "rb") as f:
            self.assertEqual(f.read(), MESSAGE)
        self.assertEqual(self.listing(), ["0123456789ABCD.env", "0123456789ABCD.msg", "tmp"])
        self.assertEqual(self.listing("tmp"), [])
        self.assertEqual(self.queue.ids(), [entry.id])

    def test_spooled(self) -> None:
        """
        From a spool file, the first C{spoolSize} bytes are the message;
        the size recorded is theirs.
        """
        spool = os.path.abspath(self.mktemp())
        with open(spool, "wb") as f:
            f.write(MESSAGE + b"trailing garbage")
        entry = makeEntry(size=0)
        self.queue.add(entry, spoolPath=spool, spoolSize=len(MESSAGE))
        self.assertEqual(self.queue.get(entry.id), evolve(entry, size=len(MESSAGE)))
        self.assertEqual(self.read(entry.id + ".msg"), MESSAGE)

    def test_compactJSON(self) -> None:
        """
        The envelope is compact JSON with a version and every field, and
        the message's CRC-32, then a line with the JSON's CRC-32; an update
        writes the record without the message's CRC-32.
        """
        entry = makeEntry()
        self.queue.add(entry, MESSAGE)
        data = self.read(entry.id + ".env")
        document = body(data)
        self.assertEqual(data, seal(json.dumps(document, separators=(",", ":")).encode()))
        self.assertTrue(data.startswith(b'{"v":2,'))
        fields = {"v", "id", "sender", "recipients", "created", "nextAttempt", "attempts", "lastError", "warned", "size"}
        self.assertEqual(set(document), fields | {"crc32"})
        self.assertEqual((document["size"], document["crc32"]), (len(MESSAGE), zlib.crc32(MESSAGE)))
        self.assertEqual(decode(encode(entry), entry.id), entry)
        self.queue.update(evolve(entry, attempts=2))
        self.assertEqual(set(body(self.read(entry.id + ".env"))), fields)

    def test_oldFormat(self) -> None:
        """
        A version 1 record (plain JSON, no checksums) still loads; its
        message is not checked, and one that is missing sets it aside.
        """
        entry = makeEntry("OLD")
        document = body(encode(entry))
        document["v"] = 1
        old = json.dumps(document, separators=(",", ":")).encode()
        self.write(old, "OLD.env")
        self.write(b"anything", "OLD.msg")
        self.assertEqual(decode(old, "OLD"), entry)
        self.assertEqual(self.queue.scan(), [(entry.nextAttempt, "OLD")])
        self.assertEqual(self.queue.get("OLD"), entry)
        os.unlink(self.path("OLD.msg"))
        self.assertIsNone(self.queue.get("OLD"))
        self.assertEqual(self.listing("corrupt"), ["OLD.env"])

    def test_exists(self) -> None:
        """
        Adding an id that is in the queue fails and changes nothing.
        """
        entry = makeEntry()
        self.queue.add(entry, MESSAGE)
        self.assertRaises(FileExistsError, self.queue.add, evolve(entry, sender="x@y"), b"other")
        self.assertEqual(self.queue.get(entry.id), entry)
        self.assertEqual(self.read(entry.id + ".msg"), MESSAGE)

    def test_partsExist(self) -> None:
        """
        A message file alone (an add in progress, or an orphan) or a
        record alone (damage) with the id makes the add fail, and neither
        is touched: the message is created exclusively, the record renamed
        in without replacing.
        """
        for existing in ("A.msg", "A.env"):
            queue = Queue(os.path.abspath(self.mktemp()), clock=self.clock)
            os.makedirs(os.path.join(queue.directory, "tmp"))
            with open(os.path.join(queue.directory, existing), "wb") as f:
                f.write(b"theirs")
            self.assertRaises(FileExistsError, queue.add, makeEntry("A"), MESSAGE, claim=True)
            self.assertEqual(sorted(os.listdir(queue.directory)), sorted([existing, "tmp"]), existing)
            with open(os.path.join(queue.directory, existing), "rb") as f:
                self.assertEqual(f.read(), b"theirs")
            self.assertEqual(
                [n for n in os.listdir(os.path.join(queue.directory, "tmp")) if not n.startswith(OWNER_PREFIX)], []
            )

    def test_contentOrSpool(self) -> None:
        self.assertRaises(TypeError, self.queue.add, makeEntry())
        self.assertRaises(TypeError, self.queue.add, makeEntry(), b"x", spoolPath="/etc/passwd")

    def test_durableOrder(self) -> None:
        """
        The message is written in place and fsynced, then the envelope in
        C{tmp/}; both are fsynced before the envelope is renamed into
        place (without replacing), and the directory is fsynced once after.
        """
        fs = ScriptedFileSystem()
        queue = Queue(self.directory, fs, clock=self.clock)
        os.makedirs(self.path("tmp"))
        queue.add(makeEntry(), MESSAGE)
        steps = [
            (op, os.path.basename(subject or "").split(".")[1] if op in ("fsync", "renameNoReplace") else "")
            for (op, _), subject in zip(fs.calls, fs.subjects)
            if op in ("fsync", "rename", "renameNoReplace", "fsyncDirectory")
        ]
        self.assertEqual(
            steps,
            [
                ("fsync", "msg"),
                ("fsync", "env"),
                ("renameNoReplace", "env"),
                ("fsyncDirectory", ""),
            ],
        )
        self.assertEqual(fs.subjectsOf("openExclusive")[0], self.path(makeEntry().id + ".msg"))
        self.assertEqual(fs.openFds, set())


class FailureTests(QueueTestCase):
    """
    A failure at every step of L{Queue.add}.
    """

    def steps(self, spooled: bool) -> list[tuple[str, int]]:
        """
        Every C{(operation, nth)} call of a successful add.
        """
        fs = ScriptedFileSystem()
        directory = os.path.abspath(self.mktemp())
        self.addWithSpool(Queue(directory, fs, clock=self.clock), spooled)
        seen: dict[str, int] = {}
        result = []
        for op, _ in fs.calls:
            seen[op] = seen.get(op, 0) + 1
            result.append((op, seen[op]))
        return result

    def addWithSpool(self, queue: Queue, spooled: bool) -> None:
        if spooled:
            spool = os.path.abspath(self.mktemp())
            with open(spool, "wb") as f:
                f.write(MESSAGE)
            queue.add(makeEntry(), spoolPath=spool, spoolSize=len(MESSAGE))
        else:
            queue.add(makeEntry(), MESSAGE)

    def assertNoPartial(self, directory: str) -> bool:
        """
        In C{directory}: no entry, or a complete one; never an envelope
        without its message.  Return whether the entry is there.
        """
        reader = Queue(directory, clock=self.clock)
        names = set(os.listdir(directory)) if os.path.isdir(directory) else set()
        entry = makeEntry()
        if entry.id + ".env" in names:
            self.assertIn(entry.id + ".msg", names)
            self.assertEqual(reader.get(entry.id), entry)
            with open(reader.messagePath(entry.id), "rb") as f:
                self.assertEqual(f.read(), MESSAGE)
            return True
        self.assertIsNone(reader.get(entry.id))
        self.assertEqual(reader.scan(), [])
        return False

    def test_everyStep(self) -> None:
        """
        Whichever step fails, C{add} raises and leaves nothing: no entry,
        no message, no temporary file, no open descriptor.
        """
        for spooled in (False, True):
            steps = self.steps(spooled)
            self.assertTrue(
                {"openExclusive", "write" if not spooled else "copy", "fsync", "close", "renameNoReplace", "fsyncDirectory"}
                <= {op for op, _ in steps}
            )
            for op, nth in steps:
                directory = os.path.abspath(self.mktemp())
                fs = ScriptedFileSystem(failOp=op, failAt=nth)
                queue = Queue(directory, fs, clock=self.clock)
                self.assertRaises(OSError, self.addWithSpool, queue, spooled)
                self.assertIsNotNone(fs.raised, (op, nth))
                self.assertFalse(self.assertNoPartial(directory), (spooled, op, nth))
                for sub in (directory, os.path.join(directory, "tmp")):
                    leftover = [n for n in os.listdir(sub) if n not in ("tmp",)] if os.path.isdir(sub) else []
                    self.assertEqual(leftover, [], (spooled, op, nth))
                self.assertEqual(fs.openFds, set(), (spooled, op, nth))

    def test_everyStepCleanupFails(self) -> None:
        """
        When the disk keeps failing (the clean-up too), what is left is
        still no entry or a complete one, and the next scan (a minute
        later) clears the leftovers.
        """
        for op, nth in self.steps(False):
            directory = os.path.abspath(self.mktemp())

            class Broken(ScriptedFileSystem):
                def _step(self, name: str, *args: object) -> bool:
                    due = super()._step(name, *args)
                    return due or self.raised is not None

            fs = Broken(failOp=op, failAt=nth)
            self.assertRaises(OSError, Queue(directory, fs, clock=self.clock).add, makeEntry(), MESSAGE)
            if not self.assertNoPartial(directory):
                self.assertEqual(
                    [n for n in os.listdir(directory) if n != "tmp"] if os.path.isdir(directory) else [],
                    [],
                    (op, nth),
                )


class UpdateRemoveTests(QueueTestCase):
    def test_update(self) -> None:
        """
        C{update} replaces the envelope; the message is untouched.
        """
        entry = makeEntry()
        self.queue.add(entry, MESSAGE)
        changed = evolve(
            entry.withRecipient(QueuedRecipient("bob@example.net", FAILED, "550 5.1.1 no", "mx")),
            attempts=2,
            warned=True,
            nextAttempt=0.0,
        )
        self.queue.update(changed)
        self.assertEqual(self.queue.get(entry.id), changed)
        self.assertEqual(self.read(entry.id + ".msg"), MESSAGE)
        self.assertEqual(self.listing("tmp"), [])

    def test_updateFails(self) -> None:
        """
        A failed update leaves the old envelope whole and no temporary file.
        """
        entry = makeEntry()
        self.queue.add(entry, MESSAGE)
        for op in ("openExclusive", "write", "fsync", "close", "rename"):
            queue = Queue(self.directory, ScriptedFileSystem(failOp=op), clock=self.clock)
            self.assertRaises(OSError, queue.update, evolve(entry, attempts=9))
            self.assertEqual(self.queue.get(entry.id), entry, op)
            self.assertEqual(self.listing("tmp"), [], op)

    def test_removeNotDurable(self) -> None:
        """
        C{remove(durable=False)} takes both files away without an fsync.
        """
        entry = makeEntry()
        self.queue.add(entry, MESSAGE)
        fs = ScriptedFileSystem()
        Queue(self.directory, fs, clock=self.clock).remove(entry.id, durable=False)
        self.assertEqual([op for op, _ in fs.calls], ["unlink", "unlink"])
        self.assertIsNone(self.queue.get(entry.id))

    def test_addClaimed(self) -> None:
        """
        C{add(claim=True)} takes the in-flight marker before the envelope
        is in place, and leaves it held.
        """
        entry = makeEntry()
        fs = ScriptedFileSystem()
        queue = Queue(self.directory, fs, clock=self.clock)
        queue.add(entry, MESSAGE, claim=True)
        self.assertTrue(queue.inFlight(entry.id))
        names = [
            os.path.basename(s or "")
            for (op, _), s in zip(fs.calls, fs.subjects)
            if op in ("link", "openExclusive", "renameNoReplace")
        ]
        self.assertEqual(names[:2], [os.path.basename(queue._ownerFile()), entry.id + ".lock"])
        self.assertFalse(queue.markInFlight(entry.id))

    def test_addClaimedFailure(self) -> None:
        """
        A failed claimed add leaves neither the entry nor the marker.
        """
        entry = makeEntry()
        queue = Queue(self.directory, ScriptedFileSystem(failOp="renameNoReplace"), clock=self.clock)
        self.assertRaises(OSError, queue.add, entry, MESSAGE, claim=True)
        self.assertFalse(self.queue.inFlight(entry.id))
        self.assertIsNone(self.queue.get(entry.id))

    def test_addClaimedHeld(self) -> None:
        """
        An id whose marker someone holds is not added.
        """
        entry = makeEntry()
        os.makedirs(self.directory, exist_ok=True)
        self.assertTrue(self.queue.markInFlight(entry.id))
        self.assertRaises(FileExistsError, self.queue.add, entry, MESSAGE, claim=True)
        self.assertIsNone(self.queue.get(entry.id))

    def test_updateMissing(self) -> None:
        """
        Updating an entry that is gone does not bring back an envelope
        without a message.
        """
        self.assertRaises(NoSuchEntry, self.queue.update, makeEntry())
        self.assertEqual(self.listing(), [])

    def test_remove(self) -> None:
        """
        C{remove} takes both files away, the envelope first, and fsyncs the
        directory.
        """
        entry = makeEntry()
        self.queue.add(entry, MESSAGE)
        fs = ScriptedFileSystem()
        Queue(self.directory, fs, clock=self.clock).remove(entry.id)
        self.assertEqual(
            [(op, os.path.basename(s or "")) for (op, _), s in zip(fs.calls, fs.subjects) if op != "openDirectory"],
            [
                ("unlink", entry.id + ".env"),
                ("unlink", entry.id + ".msg"),
                ("fsyncDirectory", os.path.basename(self.directory)),
            ],
        )
        self.assertIsNone(self.queue.get(entry.id))
        self.assertEqual(self.listing(), ["tmp"])
        self.assertRaises(NoSuchEntry, self.queue.remove, entry.id)

    def test_getMissing(self) -> None:
        self.assertIsNone(self.queue.get("00000000000000"))


class ScanTests(QueueTestCase):
    def test_valid(self) -> None:
        """
        C{scan} returns C{(nextAttempt, id)} of every entry, sorted.
        """
        self.queue.add(makeEntry("B", nextAttempt=5.0), MESSAGE)
        self.queue.add(makeEntry("A", nextAttempt=9.0), MESSAGE)
        self.queue.add(makeEntry("C", nextAttempt=0.0), MESSAGE)
        self.assertEqual(self.queue.scan(), [(0.0, "C"), (5.0, "B"), (9.0, "A")])

    def test_empty(self) -> None:
        """
        No directory is an empty queue, and scanning makes none.
        """
        self.assertEqual(self.queue.scan(), [])
        self.assertEqual(self.queue.ids(), [])
        self.assertFalse(os.path.exists(self.directory))

    def test_corrupt(self) -> None:
        """
        Unreadable envelopes that are complete (a record whose checksum
        line does not match, not JSON, wrong version, wrong id, bad
        fields; an old-format record that is not JSON) are moved aside to
        C{corrupt/} with their message and a log line; the good entry
        stays.
        """
        self.queue.add(makeEntry("GOOD"), MESSAGE)
        good = body(encode(makeEntry("X")))

        def sealed(**changes: object) -> bytes:
            return seal(json.dumps(dict(good, **changes), separators=(",", ":")).encode())

        bad = {
            "NOTJSON": b"{\"v\":1,",
            "VERSION": sealed(v=3, id="VERSION"),
            "SEALEDV1": sealed(v=1, id="SEALEDV1"),
            "WRONGID": sealed(id="OTHER"),
            "STATE": sealed(id="STATE", recipients=[{"address": "a@b", "state": "lost"}]),
            "NAN": seal(encode(makeEntry("NAN")).split(b"\n")[0].replace(b'"created":1700000000.5', b'"created":NaN')),
            "BOOL": sealed(id="BOOL", attempts=True),
            "CRC": sealed(id="CRC", crc32="0"),
            "CHECKSUM": encode(makeEntry("CHECKSUM")).replace(b'"attempts":1', b'"attempts":7'),
            "UNSEALED": json.dumps(dict(good, id="UNSEALED")).encode(),
            "LIST": b"[]",
            "BINARY": b"\xff\xfe",
        }
        for queueId, data in bad.items():
            self.write(data, queueId + ".env")
            self.write(MESSAGE, queueId + ".msg")
        with capturedLogs() as events:
            self.assertEqual(self.queue.scan(), [(makeEntry().nextAttempt, "GOOD")])
        self.assertEqual(self.listing(), ["GOOD.env", "GOOD.msg", "corrupt", "tmp"])
        self.assertEqual(
            self.listing("corrupt"),
            sorted(f"{q}.{e}" for q in bad for e in ("env", "msg")),
        )
        for queueId, data in bad.items():
            self.assertEqual(self.read("corrupt", queueId + ".env"), data)
        logged = {e.get("id") for e in events if "unreadable" in e.get("log_format", "")}
        self.assertEqual(logged, set(bad))
        # Not retried forever: the next scan has nothing to say.
        with capturedLogs() as events:
            self.queue.scan()
        self.assertEqual(list(events), [])

    def test_corruptTwice(self) -> None:
        """
        A second corrupt record with the same id does not overwrite the
        first one set aside.
        """
        for n in range(2):
            self.write(b"junk%d" % n, "ID.env")
            self.write(MESSAGE, "ID.msg")
            self.queue.scan()
        self.assertEqual(self.listing("corrupt"), ["ID.env", "ID.env.1", "ID.msg", "ID.msg.1"])

    def test_envelopeWithoutMessage(self) -> None:
        """
        An updated envelope (without the message's CRC-32: its add was
        durable) whose message is missing cannot be sent: it is moved to
        C{corrupt/}, and C{get} says there is no entry.
        """
        self.write(encode(makeEntry("LONELY")), "LONELY.env")
        with capturedLogs() as events:
            self.assertEqual(self.queue.scan(), [])
        self.assertEqual(self.listing("corrupt"), ["LONELY.env"])
        self.assertEqual([e["id"] for e in events], ["LONELY"])
        self.assertIsNone(self.queue.get("LONELY"))

    def test_orphanMessage(self) -> None:
        """
        A message without an envelope (a crash before the envelope was
        renamed in) is removed once it is a minute old; a newer one may be an add in
        progress and is kept.
        """
        self.write(MESSAGE, "OLD.msg")
        new = self.write(MESSAGE, "NEW.msg", old=False)
        os.utime(new, (LATER - LEFTOVER_AGE / 2,) * 2)
        self.queue.scan()
        self.assertEqual(self.listing(), ["NEW.msg"])

    def test_leftoverTemporary(self) -> None:
        """
        Old files in C{tmp/} from another process are removed; this
        process's own are an add in progress.
        """
        self.write(b"x", "tmp", "A.msg.deadbeef.1")
        self.write(b"x", "tmp", f"A.env.{queueModule._TOKEN}.3")
        new = self.write(b"x", "tmp", "B.msg.deadbeef.2", old=False)
        os.utime(new, (LATER - 1,) * 2)
        self.queue.scan()
        self.assertEqual(self.listing("tmp"), sorted(["B.msg.deadbeef.2", f"A.env.{queueModule._TOKEN}.3"]))

    def test_ownerFiles(self) -> None:
        """
        C{scan} removes the owner files of processes that are gone (and
        the markers linked to them, by their text); it keeps this
        process's and a live process's, however old.
        """
        self.queue.add(makeEntry("MINE"), MESSAGE)
        self.assertTrue(self.queue.markInFlight("MINE"))
        mine = f"{OWNER_PREFIX}{os.getpid()}.{queueModule._TOKEN}"
        os.utime(self.path("tmp", mine), (0, 0))
        dead = self.write(b"999999999 feedface\n", "tmp", f"{OWNER_PREFIX}999999999.feedface")
        os.link(dead, self.path("DEAD.lock"))
        self.write(f"{os.getpid()} feedface\n".encode(), "tmp", f"{OWNER_PREFIX}{os.getpid()}.feedface")
        self.write(f"{os.getppid()} feedface\n".encode(), "tmp", f"{OWNER_PREFIX}{os.getppid()}.feedface")
        self.write(b"", "tmp", f"{OWNER_PREFIX}junk")
        self.queue.scan()
        self.assertEqual(self.listing("tmp"), sorted([mine, f"{OWNER_PREFIX}{os.getppid()}.feedface"]))
        self.assertEqual([n for n in self.listing() if n.endswith(".lock")], ["MINE.lock"])

    def test_otherFilesIgnored(self) -> None:
        """
        Files that are not queue files are neither entries nor removed.
        """
        self.write(b"x", "README")
        self.write(b"x", "a.b.msg")
        self.assertEqual(self.queue.scan(), [])
        self.assertEqual(self.listing(), ["README", "a.b.msg"])

    def test_staleMarkers(self) -> None:
        """
        C{scan} removes markers of dead processes, of an earlier process
        with our pid, and unreadable old ones; it keeps this process's own
        and a live process's.
        """
        self.queue.add(makeEntry("MINE"), MESSAGE)
        self.assertTrue(self.queue.markInFlight("MINE"))
        self.write(b"999999999 feedface\n", "DEAD.lock")
        self.write(f"{os.getpid()} feedface\n".encode(), "REUSED.lock")
        self.write(f"{os.getppid()} feedface\n".encode(), "LIVE.lock")
        self.write(b"", "TORN.lock")
        self.write(b"", "FRESH.lock", old=False)
        os.utime(self.path("FRESH.lock"), (LATER,) * 2)
        self.queue.scan()
        self.assertEqual(
            [n for n in self.listing() if n.endswith(".lock")],
            ["FRESH.lock", "LIVE.lock", "MINE.lock"],
        )


class TornTests(QueueTestCase):
    """
    What a crash before an add's sync can leave (files whose blocks never
    reached the disk, one rename without the other) is a torn entry: it
    was never acknowledged, so loading removes it with a log line; it is
    not loaded, and not moved to C{corrupt/}.
    """

    def added(self, queueId: str) -> bytes:
        """
        Add an entry as an add does, and return its record.
        """
        self.queue.add(makeEntry(queueId), MESSAGE)
        return self.read(queueId + ".env")

    def assertRemoved(self, torn: set[str], good: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        with capturedLogs() as events:
            pairs = self.queue.scan()
        self.assertEqual({queueId for _, queueId in pairs}, good)
        self.assertEqual(
            self.listing(), sorted([f"{q}.{e}" for q in good for e in ("env", "msg")] + ["tmp"])
        )
        logged = {e.get("id") for e in events if "torn" in e.get("log_format", "")}
        self.assertEqual(logged, torn)
        for queueId in torn:
            self.assertIsNone(self.queue.get(queueId))

    def test_tornMessage(self) -> None:
        """
        A record an add wrote whose message is missing, empty, cut short,
        or of the right size with other bytes (zeros where a block was
        never written) is torn; a whole entry beside them loads.
        """
        for queueId in ("GOOD", "MISSING", "EMPTY", "SHORT", "ZEROS"):
            self.added(queueId)
        os.unlink(self.path("MISSING.msg"))
        self.write(b"", "EMPTY.msg")
        half = len(MESSAGE) // 2
        self.write(MESSAGE[:half], "SHORT.msg")
        self.write(MESSAGE[:half] + b"\0" * (len(MESSAGE) - half), "ZEROS.msg")
        self.assertRemoved({"MISSING", "EMPTY", "SHORT", "ZEROS"}, {"GOOD"})
        self.assertEqual(self.queue.get("GOOD"), makeEntry("GOOD"))

    def test_damagedMessage(self) -> None:
        """
        A message of the right size with the wrong CRC-32 but no block of
        zeros is not what a crash leaves: damage to an entry that may have
        been acknowledged, moved aside to C{corrupt/}, not removed.
        """
        self.added("DAMAGED")
        self.write(MESSAGE.replace(b"hello", b"HELLO"), "DAMAGED.msg")
        with capturedLogs() as events:
            self.assertEqual(self.queue.scan(), [])
        self.assertEqual(self.listing("corrupt"), ["DAMAGED.env", "DAMAGED.msg"])
        self.assertEqual([e["id"] for e in events if "unreadable" in e.get("log_format", "")], ["DAMAGED"])

    def test_tornRecord(self) -> None:
        """
        A record that is empty, cut short (a prefix of a version 2 record,
        or without its last line end) or has NUL bytes (blocks never
        written) is torn, with or without its message.
        """
        records = {queueId: self.added(queueId) for queueId in ("EMPTY", "HEAD", "HALF", "NOEND", "ZEROS", "BLOCK")}
        self.write(b"", "EMPTY.env")
        self.write(b'{"v":', "HEAD.env")
        self.write(records["HALF"][:60], "HALF.env")
        self.write(records["NOEND"][:-1], "NOEND.env")
        self.write(b"\0" * len(records["ZEROS"]), "ZEROS.env")
        record = records["BLOCK"]
        self.write(record[:20] + b"\0" * 20 + record[40:], "BLOCK.env")
        os.unlink(self.path("HALF.msg"))
        self.assertRemoved(set(records))

    def test_updatedNotChecked(self) -> None:
        """
        Once updated (the message was made durable first), an entry is
        not checked against its message any more.
        """
        entry = makeEntry("UPDATED")
        self.queue.add(entry, MESSAGE)
        self.queue.update(evolve(entry, attempts=2))
        self.write(b"changed", "UPDATED.msg")
        self.assertEqual(self.queue.get("UPDATED"), evolve(entry, attempts=2))

    def test_addingNotRemoved(self) -> None:
        """
        An entry this process is adding right now is never removed as
        torn (its files are as the add left them so far).
        """
        self.added("BUSY")
        self.write(b"", "BUSY.msg")
        queueModule._adding.add("BUSY")
        self.addCleanup(queueModule._adding.discard, "BUSY")
        self.assertEqual(self.queue.scan(), [])
        self.assertEqual(self.listing(), ["BUSY.env", "BUSY.msg", "tmp"])

    def test_updateMakesMessageDurable(self) -> None:
        """
        Without group sync, C{update} fsyncs the message before the new
        record (without the message's CRC-32) replaces the old one.
        """
        entry = makeEntry()
        self.queue.add(entry, MESSAGE)
        fs = ScriptedFileSystem()
        Queue(self.directory, fs, clock=self.clock).update(evolve(entry, attempts=2))
        steps = [
            (op, os.path.basename(s or "").split(".")[1])
            for (op, _), s in zip(fs.calls, fs.subjects)
            if op in ("fsync", "rename")
        ]
        self.assertEqual(steps, [("fsync", "env"), ("fsync", "msg"), ("rename", "env")])


class InFlightTests(QueueTestCase):
    def test_marker(self) -> None:
        """
        C{markInFlight} takes C{ID.lock} once; C{inFlight} sees it;
        C{clearInFlight} gives it back (twice is harmless).
        """
        self.queue.add(makeEntry(), MESSAGE)
        queueId = makeEntry().id
        self.assertFalse(self.queue.inFlight(queueId))
        self.assertTrue(self.queue.markInFlight(queueId))
        self.assertTrue(self.queue.inFlight(queueId))
        self.assertFalse(self.queue.markInFlight(queueId))
        self.assertEqual(self.read(queueId + ".lock"), f"{os.getpid()} {queueModule._TOKEN}\n".encode())
        self.queue.clearInFlight(queueId)
        self.assertFalse(self.queue.inFlight(queueId))
        self.queue.clearInFlight(queueId)

    def test_markerIsALink(self) -> None:
        """
        A marker is a hard link to this process's owner file in C{tmp/}:
        no new inode per marker, and giving it back leaves the owner file.
        """
        for queueId in ("A", "B"):
            self.queue.add(makeEntry(queueId), MESSAGE)
            self.assertTrue(self.queue.markInFlight(queueId))
        owner = self.path("tmp", f"{OWNER_PREFIX}{os.getpid()}.{queueModule._TOKEN}")
        self.assertEqual(os.stat(owner).st_nlink, 3)
        self.assertEqual(os.stat(self.path("A.lock")).st_ino, os.stat(owner).st_ino)
        self.queue.clearInFlight("A")
        self.queue.clearInFlight("B")
        self.assertEqual(os.stat(owner).st_nlink, 1)

    def test_markerOwnerRemoved(self) -> None:
        """
        An owner file removed by hand is made again at the next marker.
        """
        self.queue.add(makeEntry("A"), MESSAGE)
        self.assertTrue(self.queue.markInFlight("A"))
        owner = self.path("A.lock")
        for name in os.listdir(self.path("tmp")):
            os.unlink(self.path("tmp", name))
        self.queue.add(makeEntry("B"), MESSAGE)
        self.assertTrue(self.queue.markInFlight("B"))
        self.assertEqual(self.read("B.lock"), f"{os.getpid()} {queueModule._TOKEN}\n".encode())
        self.assertEqual(os.stat(owner).st_nlink, 1)

    def test_close(self) -> None:
        """
        C{close} removes this process's owner file; a marker still held
        keeps its text; the next marker makes the owner file again.
        """
        self.queue.close()
        self.queue.add(makeEntry("A"), MESSAGE)
        self.assertTrue(self.queue.markInFlight("A"))
        self.queue.close()
        self.assertEqual(self.listing("tmp"), [])
        self.assertEqual(self.read("A.lock"), f"{os.getpid()} {queueModule._TOKEN}\n".encode())
        self.queue.add(makeEntry("B"), MESSAGE)
        self.assertTrue(self.queue.markInFlight("B"))
        self.assertEqual(len(self.listing("tmp")), 1)

    def test_markerWithoutLinks(self) -> None:
        """
        Where the file system has no hard links, a marker is a file of
        its own with the same text, and the queue stops trying links.
        """
        self.queue.add(makeEntry("A"), MESSAGE)
        self.queue.add(makeEntry("B"), MESSAGE)
        fs = ScriptedFileSystem(linkErrno=errno.EPERM)
        queue = Queue(self.directory, fs, clock=self.clock)
        self.assertTrue(queue.markInFlight("A"))
        self.assertTrue(queue.markInFlight("B"))
        self.assertFalse(queue.markInFlight("B"))
        self.assertEqual(len(fs.ops("link")), 1)
        for queueId in ("A", "B"):
            self.assertEqual(os.stat(self.path(queueId + ".lock")).st_nlink, 1)
            self.assertEqual(self.read(queueId + ".lock"), f"{os.getpid()} {queueModule._TOKEN}\n".encode())

    def test_markerLinkFails(self) -> None:
        """
        Any other error of the link is the caller's.
        """
        self.queue.add(makeEntry("A"), MESSAGE)
        queue = Queue(self.directory, ScriptedFileSystem(failOp="link", failErrno=errno.EIO), clock=self.clock)
        self.assertRaises(OSError, queue.markInFlight, "A")
        self.assertFalse(self.queue.inFlight("A"))

    def test_markerWriteFails(self) -> None:
        """
        A marker that cannot be written is not left behind.
        """
        self.queue.add(makeEntry(), MESSAGE)
        queue = Queue(self.directory, ScriptedFileSystem(failOp="write"), clock=self.clock)
        self.assertRaises(OSError, queue.markInFlight, makeEntry().id)
        self.assertFalse(self.queue.inFlight(makeEntry().id))


class IdTests(QueueTestCase):
    """
    Path traversal through queue ids.
    """

    BAD = ["", "../x", "..", "a/b", "a.env", "/etc/passwd", "a\x00", "a\n", "é", "١٢", "x" * 65, None, 5]

    def test_checkId(self) -> None:
        self.assertEqual(checkId("0123456789abcDEF"), "0123456789abcDEF")
        for bad in self.BAD:
            self.assertRaises(ValueError, checkId, bad)

    def test_everyMethod(self) -> None:
        """
        Every method that takes an id refuses a bad one before touching
        the disk.
        """
        for bad in self.BAD:
            for call in (
                lambda: self.queue.add(makeEntry(bad), MESSAGE),  # type: ignore[arg-type]
                lambda: self.queue.update(makeEntry(bad)),  # type: ignore[arg-type]
                lambda: self.queue.remove(bad),  # type: ignore[arg-type]
                lambda: self.queue.get(bad),  # type: ignore[arg-type]
                lambda: self.queue.messagePath(bad),  # type: ignore[arg-type]
                lambda: self.queue.inFlight(bad),  # type: ignore[arg-type]
                lambda: self.queue.markInFlight(bad),  # type: ignore[arg-type]
                lambda: self.queue.clearInFlight(bad),  # type: ignore[arg-type]
            ):
                self.assertRaises(ValueError, call)
            if bad is not None:
                self.assertRaises(ValueError, self.queue.requestFlush, bad)
        self.assertFalse(os.path.exists(self.directory))


class FlushTests(QueueTestCase):
    def test_all(self) -> None:
        """
        Every entry with recipients pending is made due; done and busy
        ones are left alone; the markers are given back.
        """
        self.queue.add(makeEntry("A"), MESSAGE)
        self.queue.add(makeEntry("B", nextAttempt=0.0), MESSAGE)
        done = makeEntry("C")
        done = done.withRecipient(QueuedRecipient("bob@example.net", SENT))
        self.queue.add(done, MESSAGE)
        self.queue.add(makeEntry("D"), MESSAGE)
        self.queue.markInFlight("D")
        self.assertEqual(self.queue.requestFlush(), Flushed(("A", "B"), ("D",)))
        self.assertEqual(self.queue.get("A"), makeEntry("A", nextAttempt=0.0))
        self.assertEqual(self.queue.get("C"), done)
        self.assertEqual(self.queue.get("D"), makeEntry("D"))
        self.assertEqual([n for n in self.listing() if n.endswith(".lock")], ["D.lock"])

    def test_one(self) -> None:
        self.queue.add(makeEntry("A"), MESSAGE)
        self.queue.add(makeEntry("B"), MESSAGE)
        self.assertEqual(self.queue.requestFlush("B"), Flushed(("B",), ()))
        self.assertEqual(self.queue.get("A"), makeEntry("A"))
        self.assertEqual(self.queue.get("B").nextAttempt, 0.0)  # type: ignore[union-attr]
        self.assertRaises(NoSuchEntry, self.queue.requestFlush, "Z")

    def test_request(self) -> None:
        """
        A flush leaves its request for the server, which takes it once;
        the request is no entry and the scan leaves it alone.
        """
        self.assertFalse(self.queue.takeFlushRequest())
        self.queue.add(makeEntry("A"), MESSAGE)
        self.queue.requestFlush("A")
        self.assertIn(FLUSH_REQUEST, self.listing())
        self.assertEqual(self.queue.scan(), [(0.0, "A")])
        self.assertIn(FLUSH_REQUEST, self.listing())
        self.assertTrue(self.queue.takeFlushRequest())
        self.assertFalse(self.queue.takeFlushRequest())
        self.assertNotIn(FLUSH_REQUEST, self.listing())


class SignalTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data = os.path.abspath(self.mktemp())
        os.makedirs(self.data)
        self.killed: list[tuple[int, int]] = []
        self.patch(os, "kill", lambda pid, sig: self.killed.append((pid, sig)))
        self.patch(queueModule, "_commandLine", lambda pid: b"twistd\x00-n\x00mailhub\x00")

    def pidFile(self, text: str) -> None:
        with open(os.path.join(self.data, "mailhub.pid"), "w") as f:
            f.write(text)

    def test_signal(self) -> None:
        self.pidFile("4242\n")
        self.assertTrue(signalServer(self.data))
        self.assertEqual(self.killed, [(4242, signal.SIGUSR1)])

    def test_noPidFile(self) -> None:
        self.assertFalse(signalServer(self.data))
        self.assertEqual(self.killed, [])

    def test_badPid(self) -> None:
        """
        Nothing that would signal a process group, or is not a number.
        """
        for text in ("0", "-1", "", "12abc", "1.5"):
            self.pidFile(text)
            self.assertFalse(signalServer(self.data), text)
        self.assertEqual(self.killed, [])

    def test_dead(self) -> None:
        def kill(pid: int, sig: int) -> None:
            raise ProcessLookupError(errno.ESRCH, "no such process")

        self.patch(os, "kill", kill)
        self.pidFile("4242")
        self.assertFalse(signalServer(self.data))

    def test_notTheServer(self) -> None:
        """
        A stale pid file naming another program now: it is not sent a
        signal that would kill it.
        """
        self.patch(queueModule, "_commandLine", lambda pid: b"/usr/bin/vim\x00notes\x00")
        self.pidFile("4242")
        self.assertFalse(signalServer(self.data))
        self.assertEqual(self.killed, [])


class GroupSyncTests(QueueTestCase):
    """
    With a L{queueModule.GroupSync} the queue makes its writes durable
    with shared C{syncfs} calls, in the same order as the fsyncs.
    """

    def test_addOrder(self) -> None:
        """
        Both files are written without an fsync each, the message in
        place, and the envelope renamed into place; then one sync.
        """
        fs = ScriptedFileSystem(canSyncFilesystem=True)
        os.makedirs(self.path("tmp"))
        group = queueModule.GroupSync(fs, self.directory)
        self.addCleanup(group.close)
        queue = Queue(self.directory, fs, clock=self.clock, groupSync=group)
        queue.add(makeEntry(), MESSAGE)
        steps = [
            (op, os.path.basename(subject or "").split(".")[1] if op in ("openExclusive", "renameNoReplace") else "")
            for (op, _), subject in zip(fs.calls, fs.subjects)
            if op in ("openExclusive", "fsync", "rename", "renameNoReplace", "fsyncDirectory", "syncfs")
        ]
        self.assertEqual(
            steps, [("openExclusive", "msg"), ("openExclusive", "env"), ("renameNoReplace", "env"), ("syncfs", "")]
        )
        self.assertEqual(queue.get(makeEntry().id), evolve(makeEntry(), size=len(MESSAGE)))

    def test_syncFailureTakesBack(self) -> None:
        """
        A failed sync after the renames takes the entry back.
        """
        fs = ScriptedFileSystem(failOp="syncfs", failAt=1, canSyncFilesystem=True)
        os.makedirs(self.path("tmp"))
        group = queueModule.GroupSync(fs, self.directory)
        self.addCleanup(group.close)
        queue = Queue(self.directory, fs, clock=self.clock, groupSync=group)
        self.assertRaises(OSError, queue.add, makeEntry(), MESSAGE)
        self.assertEqual(self.listing(), ["tmp"])

    def test_updateAndRemove(self) -> None:
        fs = ScriptedFileSystem(canSyncFilesystem=True)
        group = queueModule.GroupSync(fs, self.directory)
        self.addCleanup(group.close)
        queue = Queue(self.directory, fs, clock=self.clock, groupSync=group)
        entry = makeEntry()
        queue.add(entry, MESSAGE)
        queue.update(evolve(entry, attempts=3))
        self.assertEqual(queue.get(entry.id).attempts, 3)
        before = group.syncs
        queue.remove(entry.id)
        self.assertEqual(group.syncs, before + 1)
        self.assertIsNone(queue.get(entry.id))

    def test_shared(self) -> None:
        """
        Threads that ask while a sync runs share the next one.
        """
        import threading

        fs = ScriptedFileSystem(canSyncFilesystem=True)
        os.makedirs(self.directory)
        group = queueModule.GroupSync(fs, self.directory)
        self.addCleanup(group.close)
        threads = [threading.Thread(target=group.sync) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertGreaterEqual(group.syncs, 1)
        self.assertLessEqual(group.syncs, 20)
