# -*- test-case-name: tests.maildir.test_names -*-
"""
Unique Maildir file names.

The form is the one Dovecot writes, C{SECONDS.MMICROSPPIDQN.HOST,S=SIZE,W=SIZE}:
unique across processes and hosts sharing the Maildir (the PID, the host, a
counter and the time), with the size in the name so that readers need not
stat the file.  mailhub stores messages with CRLF line ends as they came off
the wire, so the physical size C{S} and the RFC 822 size C{W} are the same.
"""

from __future__ import annotations

import os
import re
import secrets

from twisted.internet.interfaces import IReactorTime


_UNIQUE = re.compile(r"(?:M(\d{1,9}))?(?:P\d+)?(?:Q(\d{1,12}))?")


def deliveryOrder(name: str) -> tuple[int, int, int, int, str]:
    """
    A sort key putting Maildir names in delivery order: the leading seconds,
    then the microseconds and the counter of a C{SECONDS.MmicrosPpidQn.host}
    name as numbers (they are not zero-padded, so as text C{M99999} would
    sort after C{M100000}), then the name; names of another form last.
    """
    head, _, rest = name.partition(".")
    if not (head.isdigit() and len(head) <= 12):
        return (1, 0, 0, 0, name)
    found = _UNIQUE.match(rest.partition(".")[0])
    micros = found.group(1) if found else None
    counter = found.group(2) if found else None
    return (0, int(head), int(micros) if micros else -1, int(counter) if counter else -1, name)


def _safeHost(hostname: str) -> str:
    # The qmail convention: "/" and ":" may not appear in the host part.
    return hostname.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")


class UniqueNames:
    """
    Makes unique Maildir file names from an injected clock.

    @param clock: where the time comes from.
    @param hostname: this host's name.
    @param pid: the process id (a parameter for tests).
    """

    def __init__(self, clock: IReactorTime, hostname: str, pid: int | None = None) -> None:
        self._clock = clock
        self._host = _safeHost(hostname)
        self._pid = os.getpid() if pid is None else pid
        # A random start keeps names unique across a restart that reuses a PID
        # within the same microsecond.
        self._counter = secrets.randbelow(1 << 20)

    def make(self, size: int) -> str:
        """
        A new unique name for a message of C{size} octets (no flags part).
        """
        now = self._clock.seconds()
        seconds = int(now)
        micros = int((now - seconds) * 1_000_000)
        self._counter += 1
        return (
            f"{seconds}.M{micros}P{self._pid}Q{self._counter}.{self._host}"
            f",S={size},W={size}"
        )


class QueueIds:
    """
    Makes queue ids: the time in seconds and a counter, in hex, 14 digits.
    Unique within one host (the counter starts at random, so a restart in
    the same second does not repeat one); short enough to read aloud.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._counter = secrets.randbelow(1 << 24)

    def make(self) -> str:
        self._counter = (self._counter + 1) & 0xFFFFFF
        return f"{int(self._clock.seconds()) & 0xFFFFFFFF:08X}{self._counter:06X}"
