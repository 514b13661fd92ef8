"""
Tests for L{mailhub.maildir.keywords}: Maildir flags and Dovecot's
keyword letters.
"""

from __future__ import annotations

import errno
import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mailhub.maildir.keywords import (
    KEYWORDS_NAME,
    Keywords,
    KeywordsLocked,
    parseFlags,
    withFlags,
)
from mailhub.pop3.mailbox import _withSeen, splitName
from tests.test_fs import ScriptedFileSystem

BASE = "1700000000.M1P2Q3.mx.example.org,S=10,W=10"


class FlagsTests(SynchronousTestCase):
    def test_parseTable(self) -> None:
        for name, expected in [
            (BASE, (BASE, set(), set())),
            (BASE + ":2,", (BASE, set(), set())),
            (BASE + ":2,FRS", (BASE, {"F", "R", "S"}, set())),
            (BASE + ":2,DSTab", (BASE, {"D", "S", "T"}, {"a", "b"})),
            (BASE + ":2,Sz,extra", (BASE, {"S"}, {"z"})),
            (BASE + ":1,whatever", (BASE, set(), set())),
        ]:
            with self.subTest(name=name):
                self.assertEqual(parseFlags(name), expected)

    def test_withFlags(self) -> None:
        """
        System flags in ASCII order, then keyword letters in order.
        """
        self.assertEqual(withFlags(BASE, {"T", "S", "D"}, {"c", "a"}), BASE + ":2,DSTac")
        self.assertEqual(withFlags(BASE, set()), BASE + ":2,")
        self.assertEqual(parseFlags(withFlags(BASE, "FS", "b")), (BASE, {"F", "S"}, {"b"}))

    def test_withFlagsRefuses(self) -> None:
        for args in [(BASE, {"s"}), (BASE, {"SS"}), (BASE, set(), {"A"}), ("a:b", set()), ("a/b", set())]:
            with self.subTest(args=args):
                self.assertRaises(ValueError, withFlags, *args)

    def test_agreesWithPOP3(self) -> None:
        """
        The name POP3 gives a message it marks seen is the one L{withFlags}
        gives for the same flags.
        """
        for flags in ["", "F", "Ra", "TFb"]:
            base, system, letters = parseFlags(f"{BASE}:2,{flags}")
            self.assertEqual(splitName(f"{BASE}:2,{flags}"), (base, flags))
            self.assertEqual(
                f"{BASE}:2,{_withSeen(flags)}", withFlags(base, system | {"S"}, letters)
            )


class KeywordsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = self.mktemp()
        os.makedirs(self.folder)
        self.clock = Clock()

    def keywords(self, **kwargs) -> Keywords:
        kwargs.setdefault("clock", self.clock)
        return Keywords(self.folder, **kwargs)

    def fileText(self) -> str:
        with open(os.path.join(self.folder, KEYWORDS_NAME)) as f:
            return f.read()

    def test_mapping(self) -> None:
        """
        Keywords get letters from a in order; the file is Dovecot's.
        """
        k = self.keywords()
        self.assertEqual(k.letterFor("$Forwarded"), "a")
        self.assertEqual(k.letterFor("$Junk"), "b")
        self.assertEqual(k.letterFor("$Forwarded"), "a")
        self.assertEqual(k.keywordFor("b"), "$Junk")
        self.assertIsNone(k.keywordFor("c"))
        self.assertIsNone(k.keywordFor("A"))
        self.assertEqual(self.fileText(), "0 $Forwarded\n1 $Junk\n")
        self.assertIsNone(k.letterFor("custom", create=False))
        self.assertFalse(os.path.exists(os.path.join(self.folder, KEYWORDS_NAME + ".lock")))

    def test_readsDovecotFile(self) -> None:
        with open(os.path.join(self.folder, KEYWORDS_NAME), "w") as f:
            f.write("0 Junk\n2 NonJunk\n")
        k = self.keywords()
        self.assertEqual(k.keywordFor("c"), "NonJunk")
        self.assertEqual(k.letterFor("new"), "b")  # the lowest free letter
        self.assertEqual(k.keywords(), {"Junk": "a", "new": "b", "NonJunk": "c"})

    def test_twoSessions(self) -> None:
        """
        A keyword another session added is seen, and not given twice.
        """
        one, two = self.keywords(), self.keywords()
        self.assertIsNone(two.keywordFor("a"))
        self.assertEqual(one.letterFor("x"), "a")
        self.assertEqual(two.letterFor("y"), "b")
        self.assertEqual(two.letterFor("x"), "a")
        self.assertEqual(one.keywordFor("b"), "y")

    def test_atMost26(self) -> None:
        k = self.keywords()
        letters = [k.letterFor(f"k{i}") for i in range(26)]
        self.assertEqual("".join(letters), "abcdefghijklmnopqrstuvwxyz")
        self.assertIsNone(k.letterFor("one-too-many"))
        self.assertEqual(k.letterFor("k25"), "z")

    def test_invalidKeywords(self) -> None:
        k = self.keywords()
        for bad in ["", "\\Seen", "a b", "a\nb", "x" * 129, "(", "é"]:
            with self.subTest(bad=bad):
                self.assertRaises(ValueError, k.letterFor, bad)
        self.assertFalse(os.path.exists(os.path.join(self.folder, KEYWORDS_NAME)))

    def test_locked(self) -> None:
        with open(os.path.join(self.folder, KEYWORDS_NAME + ".lock"), "w") as f:
            f.write(f"{os.getppid()}:somewhere:0\n")
        self.assertRaises(KeywordsLocked, self.keywords().letterFor, "x")

    def test_faults(self) -> None:
        """
        A failed write leaves the old file and no lock; the keyword is not
        added.
        """
        self.keywords().letterFor("old")
        # write #1 is the lock's content, #2 the new file.
        for op, at in (("write", 2), ("fsync", 1), ("rename", 1), ("openExclusive", 2)):
            with self.subTest(op=op):
                fs = ScriptedFileSystem(failOp=op, failAt=at, failErrno=errno.ENOSPC)
                k = self.keywords(fs=fs)
                self.assertRaises(OSError, k.letterFor, "new")
                self.assertEqual(self.fileText(), "0 old\n")
                self.assertEqual(sorted(os.listdir(self.folder)), [KEYWORDS_NAME])
                self.assertIsNone(k.letterFor("new", create=False))
