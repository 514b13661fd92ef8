# -*- test-case-name: tests.maildir.test_modseq -*-
"""
Mod-sequences (RFC 7162 §3.1) for one Maildir folder: the counter that
hands them out, and the one number about them that is kept durably.

A mod-sequence handed to a client must be larger than every one handed
out before in that folder (for the same UIDVALIDITY), also after a crash,
a restart or the loss of the index, which is only a cache.  Writing the
counter to disk durably at every change would cost an fsync per flag
change; instead the counter I{reserves} a block of values, the way a
database reserves sequence numbers:

  - C{mailhub-modseq} in the folder holds one line, C{MHMS 1 CEILING}:
    no process has handed out, or will hand out without first raising
    CEILING, a mod-sequence above CEILING.
  - Before it hands out a value beyond its block, a L{ModseqCounter}
    raises CEILING by L{MODSEQ_BLOCK} (temporary file, fsync, rename,
    directory fsync: L{writeAtomically}) under C{mailhub-modseq.lock}
    (a L{DotLock}, as the UID list's), and starts its new block above
    both the old CEILING and anything it handed out itself.  So the
    durable cost is one write per L{MODSEQ_BLOCK} values, and a counter
    made after a crash starts above anything the crashed one handed out.
  - A counter that sees the file changed since its own reservation
    (another process reserved a block above it) reserves again before it
    hands out another value: a value handed out here is above every value
    any process had reserved when this counter last looked at the file.

The per-message mod-sequences themselves live in the index
(L{mailhub.maildir.index}), which can tell from CEILING whether the
values it saved can still be trusted (see L{FolderIndex}): that is why
L{ModseqCounter.retire} exists.

Values grow by at least one per change and skip the unused rest of a
block after a restart or a save of the index; they stay far below the
63-bit limit of RFC 7162 §7 (L{MAX_MODSEQ}).

This is blocking file-system work, for a worker thread; the caller (the
index) serialises the calls with its own lock.
"""

from __future__ import annotations

import os
from typing import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mailhub.fs import FileSystem, statStamp
from mailhub.maildir.uidlist import DotLock, LockBusy, readFile, writeAtomically

#: The state file's name, in the folder's directory.
MODSEQ_NAME = "mailhub-modseq"

#: How many mod-sequences one durable write of the state file reserves.
MODSEQ_BLOCK = 1000

#: RFC 7162 §7: mod-sequence-value is a positive 63-bit integer.
MAX_MODSEQ = 2**63 - 1

#: Attempts at a reservation another process holds the lock of.
RESERVE_ATTEMPTS = 200

_MAGIC = "MHMS"
_VERSION = "1"


class ModseqLocked(LockBusy):
    """
    Another session is reserving mod-sequences for the folder; try again
    shortly.
    """


class ModseqCounter:
    """
    Hands out a folder's mod-sequences, each larger than the last and than
    any value reserved before (see the module docstring).

    @param folderPath: the folder's Maildir directory.
    @param fs: the file operations (a fault-injecting one in tests).
    @param clock: the time, for the lock.
    @param hostname: this host, as written in the lock.
    @param pause: waits that many seconds before another attempt at a
        locked state file (only ever called on a worker thread).
    @param block: how many values one reservation covers.

    @ivar ceiling: CEILING as this counter last read or wrote it (C{0}: no
        state file).
    """

    log = Logger()

    def __init__(
        self,
        folderPath: str,
        fs: FileSystem,
        clock: IReactorTime,
        *,
        hostname: str | None = None,
        pause: Callable[[float], object] | None = None,
        block: int = MODSEQ_BLOCK,
    ) -> None:
        self.path = os.path.join(folderPath, MODSEQ_NAME)
        self._fs = fs
        self._clock = clock
        self._pause = pause if pause is not None else (lambda seconds: None)
        self._block = block
        self._lock = DotLock(self.path + ".lock", fs, clock, hostname=hostname, busy=ModseqLocked)
        #: The next value to hand out (at least).
        self._next = 1
        #: The last value of this counter's block; C{_next > _limit}: none.
        self._limit = 0
        #: The state file's stat signature when this counter last read or
        #: wrote it.
        self._stamp: tuple[int, int, int] | None = None
        self.ceiling = 0

    def _statStamp(self) -> tuple[int, int, int] | None:
        return statStamp(self.path)

    def read(self) -> int:
        """
        Read CEILING from the state file (and remember it in L{ceiling}).

        A file that cannot be parsed (it is written whole by a rename, so
        only a person or a broken disk makes one) is taken to say the
        current time in milliseconds: far above anything a counter hands
        out in practice (one block per save of the index or per
        L{MODSEQ_BLOCK} changes), so the values stay monotonic.

        @return: CEILING, or C{0} if there is no state file.
        @raise OSError: the file exists but cannot be read.
        """
        stamp = self._statStamp()
        try:
            data = readFile(self._fs, self.path)
        except FileNotFoundError:
            self._stamp, self.ceiling = None, 0
            return 0
        fields = data.decode("ascii", "replace").split()
        if len(fields) == 3 and fields[0] == _MAGIC and fields[1] == _VERSION and fields[2].isdigit():
            ceiling = int(fields[2])
        else:
            ceiling = int(self._clock.seconds() * 1000)
            self.log.error("unreadable {path}; taking {ceiling} as its ceiling", path=self.path, ceiling=ceiling)
        self._stamp, self.ceiling = stamp, ceiling
        return ceiling

    def observe(self, value: int) -> None:
        """
        Values up to C{value} may have been handed out (an index saved
        them): hand out only larger ones from now on.
        """
        self._next = max(self._next, value + 1)

    def ready(self) -> None:
        """
        Make sure that L{take} can hand out a value without writing
        anything: reserve a block if this counter has none left, or if the
        state file changed since this counter last read or wrote it.  Call
        it before a change whose mod-sequence L{take} will give, so that a
        failure leaves nothing changed.

        @raise ModseqLocked: the state file's lock stayed busy.
        @raise OSError: the reservation could not be made durable; nothing
            may be handed out.
        """
        if self._next <= self._limit and self._statStamp() == self._stamp:
            return
        for attempt in range(RESERVE_ATTEMPTS):
            try:
                with self._lock:
                    self._reserve()
                return
            except ModseqLocked:
                if attempt == RESERVE_ATTEMPTS - 1:
                    raise
                self._pause(0.01)

    def _reserve(self) -> None:
        # Under the lock: the file cannot change between the read and the
        # write.
        start = max(self._next, self.read() + 1)
        limit = start + self._block - 1
        if limit > MAX_MODSEQ:  # pragma: no cover - centuries away
            raise OverflowError("mod-sequences exhausted")
        writeAtomically(self._fs, self.path, f"{_MAGIC} {_VERSION} {limit}\n".encode("ascii"))
        self._stamp, self.ceiling = self._statStamp(), limit
        self._next, self._limit = start, limit

    def take(self) -> int:
        """
        The next mod-sequence; reserves first if L{ready} would.

        @raise ModseqLocked: as L{ready}.
        @raise OSError: as L{ready}.
        """
        if self._next > self._limit:
            self.ready()
        value = self._next
        self._next += 1
        return value

    def retire(self) -> None:
        """
        Give up the rest of the block: the next value needs a new
        reservation, which raises CEILING.  The index calls this when it
        has saved the mod-sequences it handed out along with the CEILING of
        that moment, so that a CEILING found different later proves that
        values were handed out after that save.
        """
        self._limit = 0


__all__ = ["MAX_MODSEQ", "MODSEQ_BLOCK", "MODSEQ_NAME", "ModseqCounter", "ModseqLocked"]
