"""
Tests for L{mailhub.maildir.names}: Maildir file names and queue ids.
"""

from __future__ import annotations

import os
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mailhub.maildir.names import QueueIds, UniqueNames, deliveryOrder

#: SECONDS.MMICROSPPIDQN.HOST,S=SIZE,W=SIZE (the form Dovecot writes).
NAME = re.compile(
    r"(?P<seconds>\d+)\.M(?P<micros>\d+)P(?P<pid>\d+)Q(?P<counter>\d+)\.(?P<host>[^,]+)"
    r",S=(?P<s>\d+),W=(?P<w>\d+)\Z"
)
QUEUE_ID = re.compile(r"[0-9A-F]{14}\Z")


def clockAt(seconds: float) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock


class UniqueNamesTests(SynchronousTestCase):
    """
    L{UniqueNames} makes unique names in Dovecot's form from an injected
    clock.
    """

    def test_format(self) -> None:
        """A name holds the clock's seconds and microseconds, pid, counter, host, size twice."""
        names = UniqueNames(clockAt(1700000000.25), "mx.example.org", pid=4242)
        match = NAME.match(names.make(1234))
        self.assertIsNotNone(match)
        assert match is not None
        fields = ("seconds", "micros", "pid", "host", "s", "w")
        self.assertEqual(
            [match[f] for f in fields],
            ["1700000000", "250000", "4242", "mx.example.org", "1234", "1234"],
        )

    def test_defaultPid(self) -> None:
        """
        Without a pid parameter the name carries this process's id.
        """
        match = NAME.match(UniqueNames(Clock(), "h").make(1))
        assert match is not None
        self.assertEqual(int(match["pid"]), os.getpid())

    def test_uniqueAtOneInstant(self) -> None:
        """Twenty thousand names made at one clock instant are all different."""
        names = UniqueNames(clockAt(1700000000), "mx.example.org", pid=1)
        made = [names.make(100) for _ in range(20000)]
        self.assertEqual(len(set(made)), len(made))

    def test_timeFollowsClock(self) -> None:
        """
        Advancing the clock advances the seconds in the names.
        """
        clock = clockAt(100)
        names = UniqueNames(clock, "h", pid=1)
        first = NAME.match(names.make(1))
        clock.advance(60.5)
        second = NAME.match(names.make(1))
        assert first is not None and second is not None
        self.assertEqual((first["seconds"], second["seconds"]), ("100", "160"))
        self.assertEqual(second["micros"], "500000")

    def test_hostEscaping(self) -> None:
        """The host's "/", ":" and "," become \\057, \\072 and \\054, as qmail does."""
        names = UniqueNames(Clock(), "a/b:c,d", pid=1)
        match = NAME.match(names.make(7))
        assert match is not None
        self.assertEqual(match["host"], "a\\057b\\072c\\054d")

    @settings(database=None, deadline=None)
    @given(st.text(min_size=1, max_size=80), st.integers(min_value=0, max_value=2**40))
    def test_nameIsAlwaysOneFileName(self, host: str, size: int) -> None:
        """For any host the name is one path component, without ":", with parseable sizes."""
        name = UniqueNames(Clock(), host, pid=1).make(size)
        self.assertNotIn("/", name)
        self.assertNotIn(":", name)
        self.assertEqual(name.rsplit(",", 2)[1:], [f"S={size}", f"W={size}"])


class QueueIdsTests(SynchronousTestCase):
    """
    L{QueueIds} makes short unique ids: 14 upper-case hex digits.
    """

    def test_format(self) -> None:
        """
        An id is 14 hex digits, the first 8 the clock's seconds.
        """
        ids = QueueIds(clockAt(0x65432100))
        made = ids.make()
        self.assertRegex(made, QUEUE_ID)
        self.assertEqual(made[:8], "65432100")

    def test_uniqueAtOneInstant(self) -> None:
        """Twenty thousand ids made at one clock instant are all different, all 14 hex digits."""
        ids = QueueIds(clockAt(1700000000))
        made = [ids.make() for _ in range(20000)]
        self.assertEqual(len(set(made)), len(made))
        self.assertEqual([m for m in made if not QUEUE_ID.match(m)], [])

    def test_uniqueAcrossSeconds(self) -> None:
        """
        Ids made as the clock moves on stay unique.
        """
        clock = clockAt(1700000000)
        ids = QueueIds(clock)
        made = []
        for _ in range(100):
            made.extend(ids.make() for _ in range(50))
            clock.advance(0.5)
        self.assertEqual(len(set(made)), len(made))

    def test_fourteenDigitsAlways(self) -> None:
        """
        Times beyond 32 bits and a wrapping counter still give 14 digits.
        """
        ids = QueueIds(clockAt(2**33 + 5))
        # Start the counter at its top to see it wrap (private state: there
        # is no way to reach it in reasonable time from outside).
        ids._counter = 0xFFFFFE
        made = [ids.make(), ids.make()]
        self.assertEqual([m for m in made if not QUEUE_ID.match(m)], [])
        self.assertEqual([m[8:] for m in made], ["FFFFFF", "000000"])


class DeliveryOrderTests(SynchronousTestCase):
    def test_numbersNotText(self) -> None:
        """
        Names of one second sort by their microseconds, then their counter,
        as numbers (neither is zero-padded); Dovecot's form (no counter)
        too; names without leading seconds go last.
        """
        names = [
            "1700000000.M100001P5Q10.host",
            "x.y",
            "1700000000.M99999P5Q1.host",
            "1700000000.M100001P5Q2.host",
            "1700000000.M7P9V0000000000000801I00000000000A3E5C.host",
            "1699999999.M999999P1Q1.host",
            "1700000001.host",
        ]
        self.assertEqual(
            sorted(names, key=deliveryOrder),
            [
                "1699999999.M999999P1Q1.host",
                "1700000000.M7P9V0000000000000801I00000000000A3E5C.host",
                "1700000000.M99999P5Q1.host",
                "1700000000.M100001P5Q2.host",
                "1700000000.M100001P5Q10.host",
                "1700000001.host",
                "x.y",
            ],
        )

    def test_madeNamesInOrder(self) -> None:
        """
        Names L{UniqueNames} makes across a microsecond digit boundary sort
        in the order they were made.
        """
        clock = Clock()
        clock.advance(1700000000.099998)
        names = UniqueNames(clock, "host")
        made = []
        for _ in range(4):
            made.append(names.make(10))
            clock.advance(0.000001)
        self.assertEqual(sorted(made, key=deliveryOrder), made)
