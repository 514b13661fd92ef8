# -*- test-case-name: tests.maildir.test_keywords -*-
"""
Maildir flags and IMAP keywords, as Dovecot keeps them.

A message's flags live in its file name's info part, C{BASE:2,FLAGS}
(the qmail Maildir description): system flags are upper-case letters in
ASCII order (C{D} draft, C{F} flagged, C{P} passed, C{R} replied, C{S}
seen, C{T} trashed), and Dovecot adds IMAP keywords as the lower-case
letters C{a}-C{z} after them.  Which keyword a letter stands for is kept
per folder in C{dovecot-keywords}, one C{INDEX NAME} line each, index 0
being C{a}::

    0 $Forwarded
    1 $Junk
    2 project-x

So a folder can hold at most 26 distinct keywords in names; more is
refused (L{Keywords.letterFor} answers C{None}), as Dovecot does.

Keyword names are compared exactly (Dovecot stores and compares them
case-sensitively).
"""

from __future__ import annotations

import os
import string

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mailhub.fs import FileSystem, stampOf
from mailhub.maildir.uidlist import (
    DotLock,
    LockBusy,
    STALE_LOCK_AGE,
    _SystemClock,
    readFile,
    writeAtomically,
)

#: The keyword file's name, in the folder's Maildir (Dovecot's name).
KEYWORDS_NAME = "dovecot-keywords"

#: How many keywords fit in a file name: the letters a-z.
MAX_KEYWORDS = 26

#: A keyword longer than this is refused (no client needs more; it keeps
#: the file small).
MAX_KEYWORD_LENGTH = 128

#: Maildir's system flags (qmail's description), in ASCII order.
SYSTEM_FLAGS = "DFPRST"

_LETTERS = string.ascii_lowercase

#: RFC 3501 §9: atom-specials that may not appear in a flag keyword.
_ATOM_SPECIALS = set('(){ %*"\\]')


class KeywordsLocked(LockBusy):
    """
    Another session is updating the folder's keywords; try again shortly.
    """


def validKeyword(keyword: str) -> bool:
    """
    Whether C{keyword} may be stored: an IMAP atom (RFC 3501 §9
    C{flag-keyword}), printable ASCII, not a system flag (no leading
    backslash), at most L{MAX_KEYWORD_LENGTH} characters.
    """
    if not keyword or len(keyword) > MAX_KEYWORD_LENGTH:
        return False
    for c in keyword:
        if not "\x21" <= c <= "\x7e" or c in _ATOM_SPECIALS:
            return False
    return True


def parseFlags(name: str) -> tuple[str, set[str], set[str]]:
    """
    Split a Maildir file name into its base name, system flags and keyword
    letters.

    C{"1.M2P3.h,S=5:2,FRSab"} gives C{("1.M2P3.h,S=5", {"F", "R", "S"},
    {"a", "b"})}.  A name without info, or with info other than C{2,}
    (the experimental C{1,} form), has no flags.  Every upper-case letter
    counts as a system flag, known or not, so that renaming keeps flags
    another tool set; characters after a C{,} in the flags (some tools'
    extra fields) are ignored.
    """
    base, sep, info = name.partition(":")
    if not sep or not info.startswith("2,"):
        return base, set(), set()
    flags = info[2:].split(",", 1)[0]
    system = {c for c in flags if "A" <= c <= "Z"}
    letters = {c for c in flags if "a" <= c <= "z"}
    return base, system, letters


def withFlags(basename: str, flags: set[str] | str, letters: set[str] | str = "") -> str:
    """
    The file name for a message in C{cur/}: C{BASE:2,} then the system
    flags in ASCII order, then the keyword letters in order.  This is the
    order mailhub's POP3 maildrop writes (it sorts the whole flags part),
    and the one Dovecot writes.

    @raise ValueError: a flag is not one upper-case letter, or a keyword
        letter not one of a-z, or the base name holds a C{:} or C{/}.
    """
    if ":" in basename or "/" in basename or not basename:
        raise ValueError(f"not a Maildir base name: {basename!r}")
    system = set(flags)
    keywordLetters = set(letters)
    for c in system:
        if len(c) != 1 or not "A" <= c <= "Z":
            raise ValueError(f"not a Maildir flag: {c!r}")
    for c in keywordLetters:
        if len(c) != 1 or c not in _LETTERS:
            raise ValueError(f"not a keyword letter: {c!r}")
    return f"{basename}:2,{''.join(sorted(system))}{''.join(sorted(keywordLetters))}"


class Keywords:
    """
    The C{dovecot-keywords} file of one Maildir folder.

    The file is read when needed (and again whenever it changes on disk);
    a new keyword is added under C{dovecot-keywords.lock}, after reading
    the file again, and the file is replaced atomically.

    @param folderPath: the folder's Maildir directory.
    @param fs: the file operations (a fault-injecting one in tests).
    @param clock: the time, for the lock.
    """

    log = Logger()

    def __init__(
        self,
        folderPath: str,
        fs: FileSystem | None = None,
        clock: IReactorTime | None = None,
        *,
        staleAfter: float = STALE_LOCK_AGE,
        hostname: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.path = os.path.join(folderPath, KEYWORDS_NAME)
        self._fs = fs if fs is not None else FileSystem()
        self._lock = DotLock(
            self.path + ".lock",
            self._fs,
            clock if clock is not None else _SystemClock(),
            staleAfter=staleAfter,
            hostname=hostname,
            pid=pid,
            busy=KeywordsLocked,
        )
        self._byIndex: dict[int, str] = {}
        self._byName: dict[str, int] = {}
        self._stamp: tuple[int, int, int] | None = None

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._byIndex, self._byName, self._stamp = {}, {}, None
            return
        stamp = stampOf(st)
        if stamp == self._stamp:
            return
        try:
            data = readFile(self._fs, self.path)
        except FileNotFoundError:
            self._byIndex, self._byName, self._stamp = {}, {}, None
            return
        byIndex: dict[int, str] = {}
        byName: dict[str, int] = {}
        for line in data.decode("utf-8", "replace").split("\n"):
            index, _, keyword = line.strip().partition(" ")
            if not index.isdigit() or not keyword:
                continue
            number = int(index)
            if number >= MAX_KEYWORDS or number in byIndex or keyword in byName:
                self.log.warn("ignoring keyword line {line!r} in {path}", line=line, path=self.path)
                continue
            byIndex[number] = keyword
            byName[keyword] = number
        self._byIndex, self._byName, self._stamp = byIndex, byName, stamp

    def keywords(self) -> dict[str, str]:
        """
        Every keyword of the folder and its letter.
        """
        self._load()
        return {name: _LETTERS[index] for name, index in self._byName.items()}

    def keywordFor(self, letter: str) -> str | None:
        """
        The keyword that C{letter} (C{a}-C{z}) stands for, or C{None}.
        """
        if len(letter) != 1 or letter not in _LETTERS:
            return None
        self._load()
        return self._byIndex.get(_LETTERS.index(letter))

    def letterFor(self, keyword: str, create: bool = True) -> str | None:
        """
        The letter that stands for C{keyword}, giving it the lowest free
        letter if it has none and C{create} is true.

        @return: the letter, or C{None} when the keyword has none and
            cannot have one (not asked to create, all 26 letters taken).
        @raise ValueError: C{keyword} is not a valid keyword.
        @raise KeywordsLocked: another session is updating the file.
        @raise OSError: the file could not be written; it is unchanged.
        """
        if not validKeyword(keyword):
            raise ValueError(f"not a valid keyword: {keyword!r}")
        self._load()
        index = self._byName.get(keyword)
        if index is not None:
            return _LETTERS[index]
        if not create:
            return None
        with self._lock:
            self._stamp = None
            self._load()  # another session may have added it, or others
            index = self._byName.get(keyword)
            if index is not None:
                return _LETTERS[index]
            free = [i for i in range(MAX_KEYWORDS) if i not in self._byIndex]
            if not free:
                return None
            index = free[0]
            byIndex = dict(self._byIndex)
            byIndex[index] = keyword
            data = "".join(f"{i} {byIndex[i]}\n" for i in sorted(byIndex)).encode("utf-8")
            try:
                writeAtomically(self._fs, self.path, data)
            finally:
                self._stamp = None
            self._load()
        return _LETTERS[index]


__all__ = [
    "KEYWORDS_NAME",
    "Keywords",
    "KeywordsLocked",
    "MAX_KEYWORDS",
    "SYSTEM_FLAGS",
    "parseFlags",
    "validKeyword",
    "withFlags",
]
