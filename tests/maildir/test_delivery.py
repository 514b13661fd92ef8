"""
Tests for L{mailhub.maildir.delivery}: durable Maildir delivery, the group
commit of L{runBatch}, and the L{Committer} thread.

The house rule under test: a failure injected at each step of delivery
leaves no visible partial message.
"""

from __future__ import annotations

import errno
import mailbox
import os
import threading
from collections import Counter
from typing import Any, Callable, Sequence

import attrs
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailhub.fs import FileSystem
from mailhub.maildir.delivery import (
    Committer,
    MaildirDelivery,
    ensureMaildir,
    runBatch,
    writeMessage,
)
from mailhub.maildir.names import UniqueNames
from tests.test_fs import ScriptedFileSystem

#: Every step of delivery the seam offers, all of which the fault table
#: must have failed at least once.
STEPS = (
    "openExclusive",
    "openRead",
    "write",
    "copy",
    "fsync",
    "syncfs",
    "device",
    "close",
    "link",
    "rename",
    "mkdir",
    "makedirs",
    "openDirectory",
    "fsyncDirectory",
)

#: The two ways runBatch makes data durable: fsync per file and
#: directory, or syncfs(2) per file system.
MODES = (("fsync", False), ("syncfs", True))

PREFIX = b"Return-Path: <sender@example.org>\r\n"
MESSAGE = b"Subject: victim\r\n\r\n" + b"".join(b"line %04d\r\n" % i for i in range(300))
OTHER = b"Subject: bystander\r\n\r\nhello\r\n"
SHARED = b"Subject: sharer\r\n\r\nsame mailbox\r\n"
#: Bytes after the message in a spool file, which must never be delivered.
SPOOL_TAIL = b"NOT PART OF THE MESSAGE"


def newDir(maildir: str) -> str:
    return os.path.join(maildir, "new")


def readFile(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def filesUnder(root: str) -> dict[str, list[str]]:
    """
    Every file below C{root}, by the name of the directory holding it
    (C{"tmp"}, C{"new"}, C{"cur"}, ...).
    """
    found: dict[str, list[str]] = {}
    for directory, _, files in os.walk(root):
        for name in files:
            found.setdefault(os.path.basename(directory), []).append(
                os.path.join(directory, name)
            )
    return found


@attrs.frozen
class Scenario:
    """
    One row of the fault table: the shape of the batch.

    The batch is always C{[victim, bystander, sharer]}: the victim goes to
    Maildir A (and B and C when C{multi}), the bystander to X, the sharer
    to A as well, so that a failed directory sync of A.new takes it back
    too.
    """

    what: str
    multi: bool = False
    spooled: bool = False
    fresh: bool = False
    linkErrno: int | None = None


SCENARIOS = (
    Scenario("single mailbox, in memory"),
    Scenario("single mailbox, spooled", spooled=True),
    Scenario("three mailboxes, in memory", multi=True),
    Scenario("three mailboxes, spooled", multi=True, spooled=True),
    Scenario("single mailbox, Maildirs not yet made", fresh=True),
    Scenario(
        "three mailboxes, spooled, Maildirs not yet made", multi=True, spooled=True, fresh=True
    ),
)

CROSS_DEVICE_SCENARIOS = (
    Scenario("three mailboxes across file systems, in memory", multi=True, linkErrno=errno.EXDEV),
    Scenario(
        "three mailboxes across file systems, spooled",
        multi=True,
        spooled=True,
        linkErrno=errno.EXDEV,
    ),
)


class Batch:
    """
    A batch built from a L{Scenario} under a fresh directory.
    """

    def __init__(self, base: str, scenario: Scenario) -> None:
        self.mail = os.path.join(base, "mail")
        spool = os.path.join(base, "spool")
        os.makedirs(spool)
        names = UniqueNames(Clock(), "mx.example.org", pid=4242)
        a, b, c, x = (os.path.join(self.mail, n) for n in "ABCX")
        if not scenario.fresh:
            for maildir in (a, b, c, x):
                ensureMaildir(FileSystem(), maildir)
        self.expected: list[bytes] = [PREFIX + MESSAGE, PREFIX + OTHER, PREFIX + SHARED]

        def make(maildirs: list[str], body: bytes, spoolName: str) -> MaildirDelivery:
            size = len(PREFIX) + len(body)
            delivery = MaildirDelivery(
                maildirs=maildirs,
                names=[names.make(size) for _ in maildirs],
                prefix=PREFIX,
            )
            if scenario.spooled:
                path = os.path.join(spool, spoolName)
                with open(path, "wb") as f:
                    f.write(body + SPOOL_TAIL)
                delivery.spoolPath = path
                delivery.spoolSize = len(body)
            else:
                delivery.content = body
            return delivery

        self.deliveries = [
            make([a, b, c] if scenario.multi else [a], MESSAGE, "victim"),
            make([x], OTHER, "bystander"),
            make([a], SHARED, "sharer"),
        ]

    def ownerOf(self, path: str) -> int | None:
        """
        The delivery a path belongs to (its file name or its spool file).
        """
        for index, delivery in enumerate(self.deliveries):
            if os.path.basename(path) in delivery.names or path == delivery.spoolPath:
                return index
        return None

    def newDirs(self, index: int) -> set[str]:
        return {newDir(m) for m in self.deliveries[index].maildirs}

    def problems(
        self, results: Sequence[BaseException | None], fs: ScriptedFileSystem
    ) -> list[str]:
        """
        What is wrong with the Maildirs after C{runBatch} returned
        C{results}: anything in C{tmp/} or C{cur/}, anything in C{new/}
        but the complete files of the deliveries that succeeded, any
        descriptor left open.
        """
        found = filesUnder(self.mail)
        problems = []
        for sub in ("tmp", "cur"):
            if found.get(sub):
                problems.append(f"left in {sub}/: {sorted(found[sub])}")
        wanted = {
            path
            for delivery, result in zip(self.deliveries, results)
            if result is None
            for path in delivery.delivered
        }
        inNew = set(found.get("new", []))
        if inNew != wanted:
            problems.append(
                f"new/ holds {sorted(inNew - wanted)} it should not,"
                f" lacks {sorted(wanted - inNew)}"
            )
        for index, (delivery, result) in enumerate(zip(self.deliveries, results)):
            if result is None:
                for path in delivery.delivered:
                    if os.path.exists(path) and readFile(path) != self.expected[index]:
                        problems.append(f"{path} has the wrong content")
        if fs.openFds:
            problems.append(f"descriptors left open: {sorted(fs.openFds)}")
        return problems


def expectedFailures(fs: ScriptedFileSystem, batch: Batch) -> tuple[set[int], set[int]]:
    """
    Which deliveries the injected failure must take down, and which it may.

      - A step of one delivery (its file, its link, its spool file, a
        Maildir made for it): that delivery, and no other.
      - A C{syncfs}: every delivery on that file system (all of them here,
        the test's files share one), since syncfs cannot say whose data
        was lost.
      - The fsync of a C{new/} directory: every delivery that went through
        it (its rename may not survive a crash).
      - Any other step on a C{new/} directory (opening it, asking its file
        system, closing it): the deliveries through it may be taken back,
        no other.

    @return: C{(must, may)}, C{must} a subset of C{may}.
    """
    assert fs.failedCall is not None
    op, _ = fs.failedCall
    everyone = set(range(len(batch.deliveries)))
    positions = [i for i, (o, _) in enumerate(fs.calls) if o == op]
    position = positions[fs.failAt - 1]
    path = fs.subjects[position]
    assert path is not None
    if op == "syncfs":
        return everyone, everyone
    owner = batch.ownerOf(path)
    if op in ("mkdir", "makedirs"):
        # Made for the first delivery of the batch into that Maildir.
        maildir = os.path.dirname(path)
        owner = next(
            i for i, d in enumerate(batch.deliveries) if maildir in d.maildirs
        )
    if op == "fsyncDirectory" and owner is None and os.path.basename(path) != "new":
        # A Maildir just made (or the directory holding it): the first
        # delivery into the Maildir whose subdirectories were made last.
        made = next(
            fs.subjects[i] or ""
            for i in range(position - 1, -1, -1)
            if fs.calls[i][0] in ("mkdir", "makedirs")
        )
        maildir = os.path.dirname(made)
        owner = next(i for i, d in enumerate(batch.deliveries) if maildir in d.maildirs)
    if owner is not None:
        return {owner}, {owner}
    through = {i for i in everyone if path in batch.newDirs(i)}
    assert through, f"{op} on {path} belongs to no delivery"
    if op == "fsyncDirectory":
        return through, through
    return set(), through


def _isStagedFileDevice(op: str, subject: str | None) -> bool:
    """
    Whether a step is syncfs mode asking which file system a staged file
    (not a directory) is on.
    """
    return (
        op == "device"
        and subject is not None
        and os.path.basename(os.path.dirname(subject)) == "tmp"
    )


def _isMakingNew(op: str, subject: str | None) -> bool:
    """
    Whether a step is making the C{new/} of a Maildir whose C{tmp/} was
    just made.
    """
    return op in ("mkdir", "makedirs") and subject is not None and subject.endswith("/new")


def _isKnownBug(op: str, subject: str | None) -> bool:
    """
    The cases of the fault table that fail because of a known bug (none
    now: the device and new/ cases were fixed and have tests of their own).
    """
    return False


class CaseTable:
    """
    Runs every case of a table and fails once, listing every case that
    failed (trial would stop at the first).
    """

    def __init__(self, testCase: SynchronousTestCase) -> None:
        self.testCase = testCase
        self.failed: list[str] = []
        self.count = 0

    def check(self, what: str, problems: list[str]) -> None:
        self.count += 1
        self.failed.extend(f"{what}: {p}" for p in problems)

    def done(self) -> None:
        if self.failed:
            self.testCase.fail(
                f"{len(self.failed)} problems in {self.count} cases:\n" + "\n".join(self.failed)
            )


class FaultInjectionTests(SynchronousTestCase):
    """
    A failure (ENOSPC, EIO) injected at each step of a batch fails the
    delivery it belongs to with that error, leaves no file in any C{tmp/}
    or C{new/}, and spares every delivery that does not share the failed
    step.
    """

    def cleanRun(self, scenario: Scenario, canSync: bool) -> ScriptedFileSystem:
        """
        A clean run of C{scenario}: which steps it calls, how often, on what.
        """
        batch = Batch(self.mktemp(), scenario)
        fs = ScriptedFileSystem(linkErrno=scenario.linkErrno, canSyncFilesystem=canSync)
        results = runBatch(fs, batch.deliveries)
        self.assertEqual(results, [None, None, None], scenario.what)
        return fs

    def runTable(
        self,
        scenarios: Sequence[Scenario],
        include: Callable[[str, str | None], bool] = lambda op, subject: True,
    ) -> set[str]:
        """
        Fail every step of every scenario in turn, in both sync modes,
        with ENOSPC and with EIO.

        @param include: which cases to run, from the step and the path it
            works on in a clean run.
        @return: the steps that were failed.
        """
        table = CaseTable(self)
        exercised: set[str] = set()
        for scenario in scenarios:
            for mode, canSync in MODES:
                clean = self.cleanRun(scenario, canSync)
                for op in STEPS:
                    for n, subject in enumerate(clean.subjectsOf(op), 1):
                        if not include(op, subject):
                            continue
                        for code in (errno.ENOSPC, errno.EIO):
                            what = f"{scenario.what}, {mode}, {errno.errorcode[code]} at {op} #{n}"
                            table.check(what, self.oneCase(scenario, canSync, op, n, code))
                            exercised.add(op)
        table.done()
        return exercised

    def oneCase(self, scenario: Scenario, canSync: bool, op: str, n: int, code: int) -> list[str]:
        batch = Batch(self.mktemp(), scenario)
        fs = ScriptedFileSystem(
            failOp=op,
            failAt=n,
            failErrno=code,
            linkErrno=scenario.linkErrno,
            canSyncFilesystem=canSync,
        )
        try:
            results = runBatch(fs, batch.deliveries)
        except Exception as e:
            problems = [f"runBatch raised {e!r}"]
            problems.extend(batch.problems([e] * len(batch.deliveries), fs))
            return problems
        if fs.raised is None:
            return ["the failure was never injected"]
        problems = []
        must, may = expectedFailures(fs, batch)
        for index, result in enumerate(results):
            if index in must and result is not fs.raised:
                problems.append(f"delivery {index} should fail with the injected error: {result!r}")
            elif index in may and result not in (None, fs.raised):
                problems.append(f"delivery {index} failed with another error: {result!r}")
            elif index not in may and result is not None:
                problems.append(f"delivery {index} should be unaffected: {result!r}")
        problems.extend(batch.problems(results, fs))
        # Nothing of a failed delivery is left in the way of its retry.
        failed = [i for i, result in enumerate(results) if result is not None]
        retry = [attrs.evolve(batch.deliveries[i], delivered=[]) for i in failed]
        retried = runBatch(FileSystem(), retry)
        if any(r is not None for r in retried):
            problems.append(f"retry failed: {retried}")
        return problems

    def test_faultAtEveryStep(self) -> None:
        """Any failed step leaves no tmp/ or new/ file and fails only the deliveries sharing it."""
        exercised = self.runTable(SCENARIOS, lambda op, subject: not _isKnownBug(op, subject))
        self.assertEqual(set(STEPS) - exercised, set())

    def test_faultAtDeviceOfStagedFile(self) -> None:
        """The same holds when fs.device fails on a staged file in syncfs mode."""
        exercised = self.runTable(SCENARIOS, _isStagedFileDevice)
        self.assertEqual(exercised, {"device"})


    def test_faultMakingNewDirectory(self) -> None:
        """The same holds, retries included, when making new/ fails after tmp/ was made."""
        exercised = self.runTable(SCENARIOS, _isMakingNew)
        self.assertTrue(exercised <= {"mkdir", "makedirs"} and exercised, exercised)


    def test_deviceFailureFailsOnlyThatDelivery(self) -> None:
        """Regression: EIO from fs.device on one staged file fails that delivery alone."""
        batch = Batch(self.mktemp(), SCENARIOS[0])
        fs = ScriptedFileSystem(failOp="device", failErrno=errno.EIO, canSyncFilesystem=True)
        results = runBatch(fs, batch.deliveries[:2])
        self.assertEqual(results, [fs.raised, None])
        self.assertEqual(batch.problems(results, fs), [])


    def test_committerReportsDeviceFailure(self) -> None:
        """Regression: a device failure reaches submit's Deferred as the OSError, not a raise."""
        fs = ScriptedFileSystem(failOp="device", failErrno=errno.EIO, canSyncFilesystem=True)
        committer = Committer(Clock(), fs=fs, threaded=False)
        d = committer.submit(Batch(self.mktemp(), SCENARIOS[0]).deliveries[0])
        self.assertIs(self.failureResultOf(d, OSError).value, fs.raised)


    def test_faultAtEveryStepAcrossFileSystems(self) -> None:
        """The same holds when links fail with EXDEV and delivery copies instead."""
        exercised = self.runTable(
            CROSS_DEVICE_SCENARIOS, lambda op, subject: not _isKnownBug(op, subject)
        )
        self.assertIn("copy", exercised)


    def test_crossDeviceCopyFailureLeavesNoTmpFile(self) -> None:
        """Regression: a failed EXDEV fallback copy leaves no file in the other tmp/."""
        batch = Batch(self.mktemp(), CROSS_DEVICE_SCENARIOS[0])
        victim = batch.deliveries[0]
        fs = ScriptedFileSystem(failOp="copy", failErrno=errno.EIO, linkErrno=errno.EXDEV)
        [result] = runBatch(fs, [victim])
        self.assertIs(result, fs.raised)
        self.assertEqual(filesUnder(batch.mail).get("tmp", []), [])


    def test_faultInWriteMessage(self) -> None:
        """writeMessage alone raises the injected error and leaves nothing, at any step."""
        table = CaseTable(self)
        for scenario in SCENARIOS:
            clean = Batch(self.mktemp(), scenario)
            fs = ScriptedFileSystem()
            writeMessage(fs, clean.deliveries[0])
            for op, count in fs.counts.items():
                for n in range(1, count + 1):
                    batch = Batch(self.mktemp(), scenario)
                    victim = batch.deliveries[0]
                    failing = ScriptedFileSystem(failOp=op, failAt=n, failErrno=errno.EIO)
                    try:
                        victim.delivered = writeMessage(failing, victim)
                    except OSError as e:
                        problems = [] if e is failing.raised else [f"raised {e!r}"]
                        result: OSError | None = e
                    else:
                        # Only closing the file after its fsync succeeded may
                        # be shrugged off: the data is durable by then.
                        shrugged = op == "close" and failing.ops("fsync")
                        problems = [] if shrugged else ["did not fail"]
                        result = None
                    problems.extend(batch.problems([result], failing))
                    table.check(f"{scenario.what}: EIO at {op} #{n}", problems)
        table.done()


class SuccessTests(SynchronousTestCase):
    """
    Delivery without failures: what lands in C{new/}, under which names,
    and which syncs a batch costs.
    """

    def setUp(self) -> None:
        self.mail = os.path.join(self.mktemp(), "mail")
        self.names = UniqueNames(Clock(), "mx.example.org", pid=4242)

    def maildir(self, name: str, make: bool = True) -> str:
        path = os.path.join(self.mail, name)
        if make:
            ensureMaildir(FileSystem(), path)
        return path

    def delivery(
        self, maildirs: list[str], body: bytes = MESSAGE, spooled: bool = False
    ) -> MaildirDelivery:
        delivery = MaildirDelivery(maildirs=maildirs, names=[], prefix=PREFIX)
        if spooled:
            path = os.path.join(self.mktemp())
            with open(path, "wb") as f:
                f.write(body + SPOOL_TAIL)
            delivery.spoolPath, delivery.spoolSize = path, len(body)
        else:
            delivery.content = body
        delivery.names = [self.names.make(delivery.size) for _ in maildirs]
        return delivery

    def deliver(self, fs: FileSystem, *deliveries: MaildirDelivery) -> None:
        self.assertEqual(runBatch(fs, deliveries), [None] * len(deliveries))

    def test_sizeProperty(self) -> None:
        """MaildirDelivery.size is the prefix plus the message, in memory or spooled."""
        self.assertEqual(MaildirDelivery(["m"], ["n"], b"ab", b"cde").size, 5)
        self.assertEqual(
            MaildirDelivery(["m"], ["n"], b"ab", spoolPath="s", spoolSize=7).size, 9
        )

    def test_contentIsPrefixAndMessage(self) -> None:
        """stdlib mailbox.Maildir reads prefix plus message from new/, in every mode."""
        for mode, canSync in MODES:
            for spooled in (False, True):
                inbox = self.maildir(f"{mode}-{spooled}")
                delivery = self.delivery([inbox], spooled=spooled)
                self.deliver(ScriptedFileSystem(canSyncFilesystem=canSync), delivery)
                reader = mailbox.Maildir(inbox, factory=None, create=False)
                self.assertEqual(
                    [reader.get_bytes(key) for key in reader.keys()],
                    [PREFIX + MESSAGE],
                    (mode, spooled),
                )
                self.assertEqual(os.listdir(os.path.join(inbox, "tmp")), [])

    def test_deliveredPaths(self) -> None:
        """
        delivered lists the new/ path in each Maildir, in the order given.
        """
        maildirs = [self.maildir("a"), self.maildir("b")]
        delivery = self.delivery(maildirs)
        self.deliver(FileSystem(), delivery)
        self.assertEqual(
            delivery.delivered,
            [os.path.join(m, "new", n) for m, n in zip(maildirs, delivery.names)],
        )

    def test_sizeInNameMatchesFile(self) -> None:
        """The ,S= and ,W= of the name equal the delivered file's size."""
        for spooled in (False, True):
            delivery = self.delivery([self.maildir(f"m{spooled}")], spooled=spooled)
            self.deliver(FileSystem(), delivery)
            [path] = delivery.delivered
            fields = dict(
                part.split("=") for part in os.path.basename(path).split(",")[1:]
            )
            size = os.stat(path).st_size
            self.assertEqual((int(fields["S"]), int(fields["W"])), (size, size))
            self.assertEqual(size, len(PREFIX + MESSAGE))

    def test_multiMailboxHardLinks(self) -> None:
        """Three Maildirs on one file system share one inode: written once, linked twice."""
        maildirs = [self.maildir(n) for n in "abc"]
        delivery = self.delivery(maildirs)
        fs = ScriptedFileSystem()
        self.deliver(fs, delivery)
        stats = [os.stat(p) for p in delivery.delivered]
        self.assertEqual({s.st_ino for s in stats}, {stats[0].st_ino})
        self.assertEqual([s.st_nlink for s in stats], [3, 3, 3])
        self.assertEqual((fs.counts["openExclusive"], fs.counts["link"]), (1, 2))
        self.assertEqual(fs.counts["copy"], 0)

    def test_linkFailureFallsBackToCopy(self) -> None:
        """A link failing with EXDEV, EPERM or EMLINK falls back to an fsynced copy."""
        for code in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            for spooled in (False, True):
                maildirs = [self.maildir(f"{code}-{spooled}-{n}") for n in "abc"]
                delivery = self.delivery(maildirs, spooled=spooled)
                fs = ScriptedFileSystem(linkErrno=code)
                self.deliver(fs, delivery)
                stats = [os.stat(p) for p in delivery.delivered]
                self.assertEqual(len({s.st_ino for s in stats}), 3)
                for path in delivery.delivered:
                    self.assertEqual(readFile(path), PREFIX + MESSAGE)
                others = {
                    os.path.join(m, "tmp", n)
                    for m, n in zip(maildirs[1:], delivery.names[1:])
                }
                self.assertEqual(others & set(fs.subjectsOf("copy")), others)
                self.assertEqual(others & set(fs.subjectsOf("fsync")), others)

    def test_missingMaildirCreated(self) -> None:
        """Missing Maildirs, first or linked, are made with cur/ new/ tmp/."""
        for mode, canSync in MODES:
            maildirs = [self.maildir(f"{mode}{n}", make=False) for n in "ab"]
            delivery = self.delivery(maildirs)
            self.deliver(ScriptedFileSystem(canSyncFilesystem=canSync), delivery)
            for maildir in maildirs:
                self.assertEqual(sorted(os.listdir(maildir)), ["cur", "new", "tmp"])
            self.assertEqual([readFile(p) for p in delivery.delivered], [PREFIX + MESSAGE] * 2)

    def test_missingTmpCreated(self) -> None:
        """
        A Maildir that has new/ and cur/ but lost tmp/ gets tmp/ back.
        """
        inbox = self.maildir("inbox")
        os.rmdir(os.path.join(inbox, "tmp"))
        delivery = self.delivery([inbox])
        self.deliver(FileSystem(), delivery)
        self.assertEqual(sorted(os.listdir(inbox)), ["cur", "new", "tmp"])

    def test_missingNewOrCurCreated(self) -> None:
        """A Maildir with tmp/ but no new/ or cur/ is completed and gets the message."""
        table = CaseTable(self)
        for missing in (("new",), ("cur",), ("new", "cur")):
            inbox = self.maildir("-".join(missing))
            for sub in missing:
                os.rmdir(os.path.join(inbox, sub))
            delivery = self.delivery([inbox])
            results = runBatch(FileSystem(), [delivery])
            problems = [] if results == [None] else [f"delivery failed: {results[0]!r}"]
            if sorted(os.listdir(inbox)) != ["cur", "new", "tmp"]:
                problems.append(f"Maildir holds {sorted(os.listdir(inbox))}")
            table.check(f"missing {missing}", problems)
        table.done()


    def test_existingTmpNameIsNotRemoved(self) -> None:
        """A taken tmp/ name fails the delivery with FileExistsError; the other file stays."""
        for taken in (0, 1):
            maildirs = [self.maildir(f"{taken}/a"), self.maildir(f"{taken}/b")]
            delivery = self.delivery(maildirs)
            theirs = os.path.join(maildirs[taken], "tmp", delivery.names[taken])
            with open(theirs, "wb") as f:
                f.write(b"someone else's")
            [result] = runBatch(FileSystem(), [delivery])
            self.assertIsInstance(result, FileExistsError)
            self.assertEqual(readFile(theirs), b"someone else's")
            found = filesUnder(os.path.dirname(maildirs[0]))
            self.assertEqual((found.get("tmp"), found.get("new")), ([theirs], None))

    def test_directoryFsyncedOncePerBatch(self) -> None:
        """Without syncfs a batch fsyncs each file once and each distinct new/ once."""
        a, b = self.maildir("a"), self.maildir("b")
        batch = [self.delivery([a]) for _ in range(3)] + [self.delivery([a, b]) for _ in range(2)]
        fs = ScriptedFileSystem(canSyncFilesystem=False)
        self.deliver(fs, *batch)
        self.assertEqual(
            Counter(args[0] for _, args in fs.ops("fsyncDirectory")),
            {newDir(a): 1, newDir(b): 1},
        )
        self.assertEqual(fs.counts["fsync"], 5)
        self.assertEqual((fs.counts["syncfs"], fs.counts["device"]), (0, 0))

    def test_syncfsTwicePerBatch(self) -> None:
        """With syncfs a batch on one file system costs exactly two syncs and no fsync."""
        a, b = self.maildir("a"), self.maildir("b")
        batch = [self.delivery([a]) for _ in range(3)] + [self.delivery([a, b]) for _ in range(2)]
        fs = ScriptedFileSystem(canSyncFilesystem=True)
        self.deliver(fs, *batch)
        self.assertEqual(fs.counts["syncfs"], 2)
        self.assertEqual((fs.counts["fsync"], fs.counts["fsyncDirectory"]), (0, 0))

    def test_durabilityOrder(self) -> None:
        """Data is synced before the first rename, directories after the last, in both modes."""
        for mode, canSync in MODES:
            a, b = self.maildir(f"{mode}a"), self.maildir(f"{mode}b")
            fs = ScriptedFileSystem(canSyncFilesystem=canSync)
            self.deliver(fs, self.delivery([a]), self.delivery([a, b]), self.delivery([b]))
            ops = [op for op, _ in fs.calls]
            syncs = [i for i, op in enumerate(ops) if op in ("fsync", "syncfs", "fsyncDirectory")]
            renames = [i for i, op in enumerate(ops) if op == "rename"]
            self.assertEqual(len(renames), 4)
            before = [i for i in syncs if i < renames[0]]
            after = [i for i in syncs if i > renames[-1]]
            self.assertEqual(sorted(before + after), syncs, mode)
            self.assertTrue(before and after, mode)

    def test_newMaildirEntriesFsynced(self) -> None:
        """Without syncfs, a Maildir made during delivery has its own directory fsynced."""
        inbox = self.maildir("inbox", make=False)
        os.makedirs(inbox)
        fs = ScriptedFileSystem(canSyncFilesystem=False)
        self.deliver(fs, self.delivery([inbox]))
        self.assertIn(inbox, [args[0] for _, args in fs.ops("fsyncDirectory")])



@implementer(IReactorFromThreads)
class ThreadCallRecorder:
    """
    A reactor stand-in: callFromThread records the call and wakes whoever
    waits for it; the test runs the calls on its own thread.
    """

    def __init__(self) -> None:
        self.calls: list[
            tuple[threading.Thread, Callable[..., Any], tuple[Any, ...], dict[str, Any]]
        ] = []
        self.condition = threading.Condition()
        self.ran = 0

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        with self.condition:
            self.calls.append((threading.current_thread(), f, args, kwargs))
            self.condition.notify_all()

    def waitFor(self, count: int, timeout: float = 30) -> bool:
        """
        Wait until C{count} calls have been recorded in all.
        """
        with self.condition:
            return self.condition.wait_for(lambda: len(self.calls) >= count, timeout)

    def runCalls(self) -> None:
        """
        Run the recorded calls not yet run, here.
        """
        with self.condition:
            pending = self.calls[self.ran :]
            self.ran = len(self.calls)
        for _, f, args, kwargs in pending:
            f(*args, **kwargs)


class GatedFileSystem(ScriptedFileSystem):
    """
    Holds the first openExclusive until the test opens the gate.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def openExclusive(self, path: str, mode: int = 0o600) -> int:
        if not self.entered.is_set():
            self.entered.set()
            if not self.gate.wait(30):
                raise OSError(errno.ETIMEDOUT, "the test never opened the gate")
        return super().openExclusive(path, mode)


class CommitterTests(SynchronousTestCase):
    """
    L{Committer} reports each delivery's outcome through a Deferred.
    """

    def setUp(self) -> None:
        self.mail = os.path.join(self.mktemp(), "mail")
        self.names = UniqueNames(Clock(), "mx.example.org", pid=4242)

    def delivery(self, maildir: str, body: bytes = MESSAGE) -> MaildirDelivery:
        size = len(PREFIX) + len(body)
        return MaildirDelivery(
            maildirs=[os.path.join(self.mail, maildir)],
            names=[self.names.make(size)],
            prefix=PREFIX,
            content=body,
        )

    def test_submitFiresWithDelivery(self) -> None:
        """
        submit fires with the delivery, its file in new/, once done.
        """
        committer = Committer(Clock(), threaded=False)
        delivery = self.delivery("inbox")
        result = self.successResultOf(committer.submit(delivery))
        self.assertIs(result, delivery)
        [path] = delivery.delivered
        self.assertEqual(readFile(path), PREFIX + MESSAGE)
        self.assertEqual(committer.batches, 1)

    def test_submitFailureErrbacks(self) -> None:
        """A failed delivery errbacks with its OSError and leaves nothing behind."""
        for mode, canSync in MODES:
            step = "syncfs" if canSync else "fsync"
            fs = ScriptedFileSystem(failOp=step, failErrno=errno.ENOSPC, canSyncFilesystem=canSync)
            committer = Committer(Clock(), fs=fs, threaded=False)
            failure = self.failureResultOf(committer.submit(self.delivery(mode)), OSError)
            self.assertIs(failure.value, fs.raised)
            self.assertEqual(failure.value.errno, errno.ENOSPC)
        left = filesUnder(self.mail)
        self.assertEqual(left.get("tmp", []) + left.get("new", []), [])

    def test_stopWithNothingRunning(self) -> None:
        """
        stop() fires at once when no thread was ever started, threaded or not.
        """
        for threaded in (False, True):
            committer = Committer(Clock(), threaded=threaded)
            self.assertIsNone(self.successResultOf(committer.stop()))

    def test_fakeReactorProvidesInterface(self) -> None:
        """
        The reactor stand-in of the threaded test provides IReactorFromThreads.
        """
        self.assertTrue(verifyObject(IReactorFromThreads, ThreadCallRecorder()))

    def test_threadedBatchesAndStops(self) -> None:
        """A real worker batches, reports via callFromThread, refuses late submits, stops."""
        reactor = ThreadCallRecorder()
        fs = GatedFileSystem(canSyncFilesystem=False)
        self.addCleanup(fs.gate.set)
        committer = Committer(reactor, fs=fs)

        first = committer.submit(self.delivery("inbox"))
        self.assertTrue(fs.entered.wait(30), "the worker never started")
        second = committer.submit(self.delivery("inbox", OTHER))
        third = committer.submit(self.delivery("inbox", SHARED))
        fs.gate.set()

        self.assertTrue(reactor.waitFor(2), "no results reported")
        for d in (first, second, third):
            self.assertNoResult(d)
        reactor.runCalls()
        results = [self.successResultOf(d) for d in (first, second, third)]
        self.assertEqual(
            [readFile(r.delivered[0]) for r in results],
            [PREFIX + MESSAGE, PREFIX + OTHER, PREFIX + SHARED],
        )
        self.assertEqual(committer.batches, 2)
        inboxNew = newDir(os.path.join(self.mail, "inbox"))
        self.assertEqual(
            [args[0] for _, args in fs.ops("fsyncDirectory") if args[0].endswith("new")],
            [inboxNew, inboxNew],
        )

        stopped = committer.stop()
        late = committer.submit(self.delivery("inbox"))
        self.assertEqual(self.failureResultOf(late, OSError).value.errno, errno.ESHUTDOWN)
        self.assertTrue(reactor.waitFor(3), "stop never reported")
        self.assertNoResult(stopped)
        reactor.runCalls()
        self.assertIsNone(self.successResultOf(stopped))

        workers = {thread for thread, _, _, _ in reactor.calls}
        self.assertEqual(len(workers), 1)
        [worker] = workers
        self.assertIsNot(worker, threading.current_thread())
        worker.join(30)
        self.assertFalse(worker.is_alive())
