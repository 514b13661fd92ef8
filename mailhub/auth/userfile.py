# -*- test-case-name: tests.auth.test_userfile -*-
"""
The users file (C{DATA/users}), in Dovecot's C{passwd-file} format.

One user a line::

    alice@example.com:{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$...
    bob@example.com:{SHA512-CRYPT}$6$...:::Bob::: userdb_quota_rule=*:storage=1G

that is C{user:password:uid:gid:gecos:home:shell:extra_fields}, where only
the first two are required and C{extra_fields} (the rest of the line, which
may itself hold colons) is space-separated C{key=value}.  mailhub reads the
address and the password and keeps the other fields as they are.  Lines
starting with C{#} and blank lines are ignored.  The file is UTF-8.

Addresses are C{local@domain}, compared in lower case; the local part is a
dot-atom (RFC 5322 §3.2.3) without C{/}, since it names the Maildir
C{DATA/mail/DOMAIN/LOCAL/}.

L{UserFile} serves lookups and notices edits without a restart;
L{writeUsers} rewrites the file atomically, keeping an operator's comments.
"""

from __future__ import annotations

import os
import threading
import re
import secrets
from typing import Iterable

from attrs import frozen
from twisted.logger import Logger

from mailhub.address import AddressError
from mailhub.auth.passwords import isSupported
from mailhub.errors import ConfigError
from mailhub.fs import FileSystem

# RFC 5322 §3.2.3 atext, without "/" (a path separator in DATA/mail/).
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-=?^_`{|}~]"
_LOCAL = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")

#: Index in L{UserEntry.fields} of C{extra_fields} (after uid, gid, gecos,
#: home and shell).
EXTRA_FIELDS = 5


def checkAddress(text: str) -> str:
    """
    Check a user's address and return its normal (lower-case) form.

    @raise AddressError: not C{local@domain} with a dot-atom local part of
        at most 64 characters (RFC 5321 §4.5.3.1.1) and a domain name.
    """
    address = text.strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"not a mail address: {text!r} (expected local@domain)")
    if len(local) > 64 or not _LOCAL.match(local):
        raise AddressError(
            f"not a usable mail address: {text!r} (the local part must be letters,"
            " digits and !#$%&'*+-=?^_`{|}~ with single dots between, at most 64)"
        )
    if len(domain) > 253 or not _DOMAIN.match(domain):
        raise AddressError(f"not a mail address: {text!r} (bad domain)")
    return address


@frozen
class UserEntry:
    """
    One line of the users file.

    @ivar address: the user's address, lower case.
    @ivar password: the stored password, C{{SCHEME}hash}.
    @ivar fields: the fields after the password, as written (uid, gid,
        gecos, home, shell, extra_fields); often empty.
    """

    address: str
    password: str
    fields: tuple[str, ...] = ()

    @property
    def extraFields(self) -> dict[str, str]:
        """
        The C{key=value} pairs of the C{extra_fields}; a bare C{key} maps
        to C{""}.
        """
        if len(self.fields) <= EXTRA_FIELDS:
            return {}
        result = {}
        for item in self.fields[EXTRA_FIELDS].split():
            key, _, value = item.partition("=")
            result[key] = value
        return result

    def line(self) -> str:
        """
        The entry as a line of the file, without the newline.

        @raise ValueError: a value would break the line apart.
        """
        for value in (self.address, self.password, *self.fields):
            if "\n" in value or "\r" in value:
                raise ValueError("a users file field cannot hold a line break")
        for value in (self.password, *self.fields[:EXTRA_FIELDS]):
            if ":" in value:
                raise ValueError("only extra_fields may hold a colon")
        if len(self.fields) > EXTRA_FIELDS + 1:
            raise ValueError("too many fields")
        return ":".join((self.address, self.password, *self.fields))


def _parseLine(line: str) -> UserEntry:
    """
    Parse a stripped, non-comment line.

    @raise AddressError: the first field is not a usable address.
    @raise ValueError: no password field.
    """
    parts = line.split(":", EXTRA_FIELDS + 2)
    if len(parts) < 2:
        raise ValueError("expected address:{SCHEME}hash")
    address = checkAddress(parts[0])
    return UserEntry(address, parts[1], tuple(parts[2:]))


def _isComment(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _lines(text: str) -> list[str]:
    # Split on LF only (str.splitlines also splits on form feeds and
    # U+2028, and line numbers would not be an editor's).
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def parseUsers(text: str, source: str) -> dict[str, UserEntry]:
    """
    Parse the users file.

    @param text: its contents.
    @param source: its path, for errors.
    @return: C{address -> entry}, in the order of the file.
    @raise ConfigError: naming C{line N}: a line without a password field,
        a bad address, an address defined twice.
    """
    users: dict[str, UserEntry] = {}
    lineOf: dict[str, int] = {}
    for number, raw in enumerate(_lines(text), 1):
        if _isComment(raw):
            continue
        key = f"line {number}"
        try:
            entry = _parseLine(raw.strip())
        except (AddressError, ValueError) as e:
            raise ConfigError(source, key, str(e)) from None
        if entry.address in users:
            raise ConfigError(
                source, key, f"{entry.address} is already defined on line {lineOf[entry.address]}"
            )
        users[entry.address] = entry
        lineOf[entry.address] = number
    return users


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        number = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(source, f"line {number}", f"not valid UTF-8: {e.reason}") from None


def _readText(path: str) -> tuple[str, os.stat_result] | None:
    """
    The file's text and the C{fstat} of what was read; C{None} if missing.

    @raise ConfigError: it cannot be read or is not UTF-8.
    """
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror or e}") from None
    return _decode(data, path), info


def readUsers(path: str) -> dict[str, UserEntry]:
    """
    Read and parse the users file once; a missing file has no users.

    Blocking.

    @raise ConfigError: it cannot be read or is malformed.
    """
    result = _readText(path)
    if result is None:
        return {}
    return parseUsers(result[0], path)


def _signature(info: os.stat_result) -> tuple[int, int, int]:
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class UserFile:
    """
    The users file, re-read whenever it changes on disk.

    Each L{lookup} C{stat}s the file and re-reads it only when its
    modification time, size or inode differ from the last read.  A file
    that disappears means no users.  A file that changes into something
    malformed (or unreadable) is not used: the last good contents stay in
    force and the error is logged once, so that a half-finished edit never
    locks everybody out or raises into a login.

    Blocking: a C{stat} per lookup, and a read after a change.  That is
    cheap at login rate; callers already off the reactor thread for the
    password hash can do it there too.
    """

    log = Logger()

    def __init__(self, path: str) -> None:
        """
        @param path: the users file; it need not exist yet.
        """
        self.path = path
        self._users: dict[str, UserEntry] = {}
        self._signature: tuple[int, int, int] | None = None
        # What the last failure was about (a signature, or the error of a
        # failed stat), so that each failure is logged once.
        self._failed: object = None
        self._missing = False
        # Lookups come from the reactor thread (RCPT) and from checker
        # threads (logins): one reload at a time.
        self._lock = threading.Lock()

    def lookup(self, address: str) -> UserEntry | None:
        """
        The entry of C{address} (any case), or C{None}.
        """
        with self._lock:
            self._refresh()
            return self._users.get(address.lower())

    def addresses(self) -> tuple[str, ...]:
        """
        Every user's address, sorted.
        """
        with self._lock:
            self._refresh()
            return tuple(sorted(self._users))

    def _refresh(self) -> None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            if not self._missing:
                if self._users:
                    self.log.warn(
                        "users file {path} is gone: no users", path=self.path
                    )
                self._users, self._signature, self._failed = {}, None, None
                self._missing = True
            return
        except OSError as e:
            error = f"{self.path}: cannot read: {e.strerror or e}"
            self._fail(error, error)
            return
        signature = _signature(info)
        if signature == self._signature or signature == self._failed:
            return
        try:
            result = _readText(self.path)
            if result is None:
                self._refresh()
                return
            text, info = result
            users = parseUsers(text, self.path)
        except ConfigError as e:
            self._fail(signature, str(e))
            return
        self._users, self._signature, self._failed = users, _signature(info), None
        self._missing = False
        self.log.info(
            "users file {path} loaded: {count} users", path=self.path, count=len(users)
        )
        for entry in users.values():
            support = isSupported(entry.password)
            if not support:
                self.log.warn(
                    "user {address} cannot log in: {reason}",
                    address=entry.address,
                    reason=support.reason,
                )

    def _fail(self, what: object, error: str) -> None:
        if what == self._failed:
            return
        self._failed = what
        self.log.error(
            "users file not reloaded, keeping the previous {count} users: {error}",
            count=len(self._users),
            error=error,
        )


def writeUsers(
    path: str, entries: Iterable[UserEntry], fs: FileSystem | None = None
) -> None:
    """
    Replace the users file with C{entries}, atomically.

    The new file is written beside the old one, fsynced, renamed over it,
    and the directory fsynced: a reader (L{UserFile}, Dovecot) sees the old
    file or the new one, never a mix, and the change survives a crash once
    this returns.  The file is mode C{0600}; it keeps the owner of the file
    it replaces (or of its directory) where this process may set it, so
    that C{root} editing it does not lock out the server.

    The existing file's layout is kept: comments and blank lines stay where
    they are, a changed user is changed in its line, an unchanged line is
    kept byte for byte, a removed user's line goes, and new users are
    appended in the order given.

    Blocking.

    @param entries: every user the file shall hold.
    @param fs: the file operations (a seam for tests).
    @raise ConfigError: the existing file cannot be read or is malformed
        (fix it by hand first).
    @raise AddressError: an entry's address is not a usable one.
    @raise ValueError: an entry cannot be written (not lower case, a line
        break or misplaced colon in a field, an address twice).
    @raise OSError: writing failed; the old file is untouched.
    """
    fs = fs or FileSystem()
    wanted: dict[str, UserEntry] = {}
    for entry in entries:
        if checkAddress(entry.address) != entry.address:
            raise ValueError(f"not a normalised address: {entry.address!r}")
        if entry.address in wanted:
            raise ValueError(f"{entry.address} given twice")
        entry.line()
        wanted[entry.address] = entry
    existing = _readText(path)
    lines: list[str] = []
    if existing is not None:
        text, info = existing
        parseUsers(text, path)
        owner = (info.st_uid, info.st_gid)
        for raw in _lines(text):
            if _isComment(raw):
                lines.append(raw)
                continue
            old = _parseLine(raw.strip())
            new = wanted.pop(old.address, None)
            if new is not None:
                lines.append(raw if new == old else new.line())
    directory = os.path.dirname(os.path.abspath(path))
    if existing is None:
        info = os.stat(directory)
        owner = (info.st_uid, info.st_gid)
    lines.extend(entry.line() for entry in wanted.values())
    data = "".join(line + "\n" for line in lines).encode("utf-8")

    temporary = os.path.join(
        directory, f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp"
    )
    fd = fs.openExclusive(temporary, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            _chown(fd, owner)
            fs.write(fd, data)
            fs.fsync(fd)
        finally:
            fs.close(fd)
        fs.rename(temporary, path)
    except BaseException:
        try:
            fs.unlink(temporary)
        except OSError:
            pass
        raise
    fs.fsyncDirectory(directory)


def _chown(fd: int, owner: tuple[int, int]) -> None:
    """
    Give the file C{owner} if it differs and this process may.
    """
    if owner == (os.geteuid(), os.getegid()):
        return
    try:
        os.fchown(fd, *owner)
    except PermissionError:
        pass
