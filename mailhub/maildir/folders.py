# -*- test-case-name: tests.maildir.test_folders -*-
"""
A user's folders: a Maildir++ tree, laid out as Dovecot's default
C{LAYOUT=Maildir++} lays it out, so Dovecot and any Maildir++ tool read the
same tree.

  - C{INBOX} is the root Maildir (C{cur/ new/ tmp/} in the user's
    directory).  The name is case-insensitive (RFC 3501 §5.1).
  - A folder C{Archive/2026} (IMAP names, C{/} the hierarchy separator) is
    the directory C{.Archive.2026} in the root, a Maildir of its own with
    an empty C{maildirfolder} marker file.  Each component is stored in
    modified UTF-7 (RFC 3501 §5.1.3): C{Entwürfe} is C{.Entw&APw-rfe}.
  - A literal C{.} in a name is refused: Maildir++ uses it as the on-disk
    separator and Dovecot refuses it too (unless its C{listescape} plugin
    is loaded, which writes C{\\2e}; mailhub does not write that form).
  - A folder's parent need not exist: C{.a.b} without C{.a} lists C{a}
    as C{\\Noselect} (as Dovecot does).  L{MailStore.delete} therefore
    deletes a folder with children by removing its own Maildir only: it
    becomes C{\\Noselect} and its children stay (RFC 3501 §6.3.4).
  - Subscriptions are in C{subscriptions} in the root, one name a line in
    modified UTF-7 with C{/} between components (Dovecot's version-1 form,
    which Dovecot reads; Dovecot 2.x's C{V\\t2} form, tab-separated, is
    read too), replaced atomically.

Names are checked before any path is made from them (L{validateName}):
no control characters, no empty, C{.} or C{..} components, no leading or
trailing C{/}, no C{.} at all, and at most L{MAX_NAME_BYTES} bytes on disk.
The modified UTF-7 alphabet has no C{/}, so an encoded name is one
directory entry in the root and can never leave it.

The work here is blocking file-system work; the IMAP layer runs it off the
reactor thread.
"""

from __future__ import annotations

import os
import secrets
import shutil

import twisted.mail.imap4  # noqa: F401  (registers the "imap4-utf-7" codec)
from twisted.logger import Logger

from mailhub.errors import MailhubError
from mailhub.fs import FileSystem
from mailhub.maildir.delivery import ensureMaildir
from mailhub.maildir.uidlist import readFile, writeAtomically

#: The IMAP hierarchy separator.
SEPARATOR = "/"

#: The marker file Maildir++ (Courier, Dovecot) puts in every folder.
MARKER = "maildirfolder"

#: The subscriptions file, in the root (Dovecot's name).
SUBSCRIPTIONS_NAME = "subscriptions"

#: A folder's directory name may be at most this many bytes: the limit of
#: one directory entry on common file systems (ext4, XFS, btrfs).
MAX_NAME_BYTES = 255

#: Folders every user has from the first login, with their RFC 6154
#: SPECIAL-USE attributes.
DEFAULT_FOLDERS: dict[str, str] = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}

_CODEC = "imap4-utf-7"
_TRASH_PREFIX = "..mailhub-trash."


class FolderError(MailhubError):
    """
    A folder operation was refused.

    @ivar name: the folder name as given.
    @ivar reason: why, for a person (safe to show a client: no paths).
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name, reason)
        self.name = name
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.name!r}: {self.reason}"


def _isInbox(component: str) -> bool:
    return component.upper() == "INBOX"


def validateName(name: str) -> list[str]:
    """
    Check an IMAP folder name and split it into components, C{INBOX}
    (any case) as the first component made C{"INBOX"}.

    @raise FolderError: the name is refused; the reason says why.
    """
    if not isinstance(name, str) or not name:
        raise FolderError(str(name), "empty name")
    for c in name:
        if ord(c) < 0x20 or ord(c) == 0x7F or 0x80 <= ord(c) < 0xA0:
            raise FolderError(name, "control character in name")
        if 0xD800 <= ord(c) <= 0xDFFF:
            raise FolderError(name, "invalid character in name")
    if name.startswith(SEPARATOR) or name.endswith(SEPARATOR):
        raise FolderError(name, "leading or trailing hierarchy separator")
    components = name.split(SEPARATOR)
    for component in components:
        if component == "":
            raise FolderError(name, "empty hierarchy level")
        if component in (".", ".."):
            raise FolderError(name, "'.' or '..' hierarchy level")
        if "." in component:
            # Maildir++ uses "." as its separator on disk (Dovecot refuses
            # it as well without the listescape plugin).
            raise FolderError(name, "'.' is not allowed in folder names")
        if component.startswith("~"):
            # Dovecot refuses it too: it could be taken for a home directory.
            raise FolderError(name, "'~' may not start a hierarchy level")
    if _isInbox(components[0]):
        components[0] = "INBOX"
    if components != ["INBOX"]:
        directory = _directoryFor(components)
        if len(directory.encode("utf-8")) > MAX_NAME_BYTES:
            raise FolderError(name, "name too long")
    return components


def _directoryFor(components: list[str]) -> str:
    encoded = [c.encode(_CODEC).decode("ascii") for c in components]
    directory = "." + ".".join(encoded)
    # The modified UTF-7 alphabet (RFC 3501 §5.1.3) has no "/", and "."
    # components were refused: one entry in the root, never outside it.
    assert "/" not in directory and "\x00" not in directory
    return directory


def _nameForDirectory(entry: str) -> str | None:
    """
    The IMAP name of a root entry C{.X.Y}, or C{None} if it is not a
    folder that mailhub would have written (not canonical modified UTF-7,
    an empty component, a control file).
    """
    if not entry.startswith(".") or entry in (".", ".."):
        return None
    parts = entry[1:].split(".")
    components = []
    for part in parts:
        if not part:
            return None
        try:
            raw = part.encode("ascii")
            decoded = raw.decode(_CODEC)
        except (UnicodeError, ValueError):
            return None
        if decoded.encode(_CODEC) != raw:
            return None  # not canonical: another tool's name, not ours
        components.append(decoded)
    name = SEPARATOR.join(components)
    try:
        validateName(name)
    except FolderError:
        return None
    if _isInbox(components[0]):
        name = SEPARATOR.join(["INBOX"] + components[1:])
    return name


class MailStore:
    """
    One user's Maildir++ tree.

    @param root: the user's Maildir (INBOX).
    @param fs: the file operations (a fault-injecting one in tests).
    """

    log = Logger()

    def __init__(self, root: str, fs: FileSystem | None = None) -> None:
        self.root = root
        self._fs = fs if fs is not None else FileSystem()

    # Names and paths

    def path(self, name: str) -> str:
        """
        The Maildir directory of folder C{name} (whether or not it exists).

        @raise FolderError: the name is refused.
        """
        components = validateName(name)
        if components == ["INBOX"]:
            return self.root
        return os.path.join(self.root, _directoryFor(components))

    def exists(self, name: str) -> bool:
        """
        Whether folder C{name} exists (is selectable).

        @raise FolderError: the name is refused.
        """
        path = self.path(name)
        if path == self.root:
            return os.path.isdir(os.path.join(self.root, "cur"))
        return os.path.isdir(path) and not os.path.islink(path)

    def _entries(self) -> list[tuple[str, str]]:
        """
        C{(name, directory entry)} of every folder below the root.
        """
        found = []
        try:
            with os.scandir(self.root) as entries:
                for entry in entries:
                    if not entry.name.startswith(".") or entry.name.startswith(".."):
                        continue
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    name = _nameForDirectory(entry.name)
                    if name is not None and name != "INBOX":
                        found.append((name, entry.name))
        except FileNotFoundError:
            pass
        return found

    def listFolders(self) -> list[str]:
        """
        Every existing folder's IMAP name: C{INBOX} first (when it exists),
        then the others sorted.  Parents that do not exist themselves
        (C{\\Noselect}) are not listed; see L{list}.
        """
        names = sorted(name for name, _ in self._entries())
        if self.exists("INBOX"):
            names.insert(0, "INBOX")
        return names

    def list(self) -> list[tuple[str, set[str]]]:
        """
        Every folder with its LIST attributes (RFC 3501 §7.2.2, RFC 3348
        C{\\HasChildren}/C{\\HasNoChildren}, RFC 6154 special use);
        parents that do not exist are listed as C{\\Noselect}.
        """
        existing = self.listFolders()
        everything = set(existing)
        for name in existing:
            parts = name.split(SEPARATOR)
            for i in range(1, len(parts)):
                everything.add(SEPARATOR.join(parts[:i]))
        ordered = sorted(everything - {"INBOX"})
        if "INBOX" in everything:
            ordered.insert(0, "INBOX")
        result = []
        for name in ordered:
            attributes: set[str] = set()
            prefix = name + SEPARATOR
            hasChildren = any(other.startswith(prefix) for other in everything)
            attributes.add("\\HasChildren" if hasChildren else "\\HasNoChildren")
            if name not in existing:
                attributes.add("\\Noselect")
            use = self.specialUse(name)
            if use:
                attributes.add(use)
            result.append((name, attributes))
        return result

    def specialUse(self, name: str) -> str | None:
        """
        The RFC 6154 SPECIAL-USE attribute of folder C{name}, if any.
        """
        return DEFAULT_FOLDERS.get(name)

    # Changes

    def create(self, name: str) -> None:
        """
        Create folder C{name}: its directory, C{cur/ new/ tmp/} and the
        C{maildirfolder} marker, made durable.  Missing parents are not
        created (Maildir++ needs none; they list as C{\\Noselect}).

        A trailing separator (RFC 3501 §6.3.3) is refused here: the IMAP
        layer strips it before calling.

        @raise FolderError: the name is refused, or the folder exists.
        @raise OSError: it could not be made; nothing of it is left.
        """
        components = validateName(name)
        if components == ["INBOX"]:
            raise FolderError(name, "INBOX always exists")
        path = self.path(name)
        fs = self._fs
        if not os.path.isdir(self.root):
            ensureMaildir(fs, self.root)
        try:
            fs.mkdir(path)
        except FileExistsError:
            raise FolderError(name, "folder exists") from None
        try:
            for sub in ("cur", "new", "tmp"):
                fs.mkdir(os.path.join(path, sub))
            fd = fs.openExclusive(os.path.join(path, MARKER), 0o600)
            try:
                fs.fsync(fd)
            finally:
                fs.close(fd)
            fs.fsyncDirectory(path)
            fs.fsyncDirectory(self.root)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        self.log.info("created folder {name} in {root}", name=name, root=self.root)

    def ensureDefaults(self) -> None:
        """
        Make INBOX and the L{DEFAULT_FOLDERS} exist, and subscribe to the
        ones this call created (first login).
        """
        ensureMaildir(self._fs, self.root)
        created = []
        for name in DEFAULT_FOLDERS:
            if not self.exists(name):
                try:
                    self.create(name)
                except FolderError:
                    continue  # another session made it meanwhile
                created.append(name)
        if created:
            current = self.subscribed()
            missing = [name for name in ["INBOX"] + created if name not in current]
            if missing:
                self._writeSubscriptions(current + missing)

    def delete(self, name: str) -> None:
        """
        Delete folder C{name} and its messages.  Its children, if any, stay
        and it lists as C{\\Noselect} (RFC 3501 §6.3.4).  The directory is
        renamed out of the tree first (one atomic step, made durable), then
        removed.

        @raise FolderError: C{INBOX}, or no such folder.
        @raise OSError: it could not be taken out of the tree; it is intact.
        """
        components = validateName(name)
        if components == ["INBOX"]:
            raise FolderError(name, "INBOX cannot be deleted")
        if not self.exists(name):
            raise FolderError(name, "no such folder")
        path = self.path(name)
        trash = os.path.join(self.root, _TRASH_PREFIX + secrets.token_hex(6))
        self._fs.rename(path, trash)
        self._fs.fsyncDirectory(self.root)
        shutil.rmtree(trash, ignore_errors=True)
        self.log.info("deleted folder {name} in {root}", name=name, root=self.root)

    def rename(self, old: str, new: str) -> None:
        """
        Rename folder C{old} and every folder below it to C{new}
        (RFC 3501 §6.3.5).

        Renaming C{INBOX} creates C{new} and moves every message of INBOX
        into it, leaving INBOX empty; INBOX's children are not moved.

        @raise FolderError: a name is refused, C{old} does not exist,
            C{new} (or a name it would give a child) exists, or C{new} is
            below C{old}.
        @raise OSError: it failed; the renames made are undone.
        """
        oldParts, newParts = validateName(old), validateName(new)
        if newParts == ["INBOX"]:
            raise FolderError(new, "folder exists")
        if oldParts == ["INBOX"]:
            self._renameInbox(new)
            return
        oldName, newName = SEPARATOR.join(oldParts), SEPARATOR.join(newParts)
        if newName == oldName or newName.startswith(oldName + SEPARATOR):
            raise FolderError(new, "cannot rename a folder below itself")
        moves: list[tuple[str, str]] = []
        for name, _ in self._entries():
            if name == oldName or name.startswith(oldName + SEPARATOR):
                target = newName + name[len(oldName) :]
                moves.append((self.path(name), self.path(target)))
        if not moves:
            raise FolderError(old, "no such folder")
        for _, target in moves:
            if os.path.lexists(target):
                raise FolderError(new, "folder exists")
        done: list[tuple[str, str]] = []
        try:
            for source, target in moves:
                self._fs.rename(source, target)
                done.append((source, target))
            self._fs.fsyncDirectory(self.root)
        except BaseException:
            for source, target in reversed(done):
                try:
                    self._fs.rename(target, source)
                except OSError:
                    self.log.failure("cannot undo {target} -> {source}", target=target, source=source)
            raise
        self.log.info("renamed folder {old} to {new} in {root}", old=old, new=new, root=self.root)

    def _renameInbox(self, new: str) -> None:
        self.create(new)
        target = self.path(new)
        moved: list[tuple[str, str]] = []
        try:
            for sub in ("new", "cur"):
                directory = os.path.join(self.root, sub)
                try:
                    names = os.listdir(directory)
                except FileNotFoundError:
                    continue
                for entry in names:
                    if entry.startswith("."):
                        continue
                    source = os.path.join(directory, entry)
                    destination = os.path.join(target, sub, entry)
                    self._fs.rename(source, destination)
                    moved.append((source, destination))
            for sub in ("new", "cur"):
                self._fs.fsyncDirectory(os.path.join(target, sub))
                self._fs.fsyncDirectory(os.path.join(self.root, sub))
        except BaseException:
            for source, destination in reversed(moved):
                try:
                    self._fs.rename(destination, source)
                except OSError:
                    self.log.failure("cannot undo {d} -> {s}", d=destination, s=source)
            shutil.rmtree(target, ignore_errors=True)
            raise
        self.log.info("moved INBOX to {new} in {root}", new=new, root=self.root)

    # Subscriptions

    @property
    def _subscriptionsPath(self) -> str:
        return os.path.join(self.root, SUBSCRIPTIONS_NAME)

    def subscribed(self) -> list[str]:
        """
        The subscribed names, in the order they were subscribed (names
        that cannot be valid are skipped).
        """
        try:
            data = readFile(self._fs, self._subscriptionsPath)
        except FileNotFoundError:
            return []
        lines = data.decode("ascii", "replace").split("\n")
        tabbed = False
        if lines and lines[0].startswith("V\t"):
            # Dovecot 2.x: "V\t2", an empty line, then names with the
            # hierarchy separator written as a tab.
            tabbed = True
            lines = lines[1:]
        names: list[str] = []
        for line in lines:
            line = line.rstrip("\r")
            if not line:
                continue
            if tabbed:
                line = line.replace("\t", SEPARATOR)
            try:
                name = line.encode("ascii").decode(_CODEC)
                components = validateName(name)
            except (UnicodeError, ValueError, FolderError):
                self.log.warn("skipping subscription {line!r}", line=line[:200])
                continue
            name = SEPARATOR.join(components)
            if name not in names:
                names.append(name)
        return names

    def _writeSubscriptions(self, names: list[str]) -> None:
        data = "".join(name.encode(_CODEC).decode("ascii") + "\n" for name in names)
        if not os.path.isdir(self.root):
            ensureMaildir(self._fs, self.root)
        writeAtomically(self._fs, self._subscriptionsPath, data.encode("ascii"))

    def subscribe(self, name: str) -> None:
        """
        Subscribe to C{name} (which need not exist, RFC 3501 §6.3.6).

        @raise FolderError: the name is refused.
        @raise OSError: the file could not be written; it is unchanged.
        """
        name = SEPARATOR.join(validateName(name))
        current = self.subscribed()
        if name not in current:
            self._writeSubscriptions(current + [name])

    def unsubscribe(self, name: str) -> None:
        """
        Unsubscribe from C{name}.

        @raise FolderError: the name is refused, or not subscribed.
        @raise OSError: the file could not be written; it is unchanged.
        """
        name = SEPARATOR.join(validateName(name))
        current = self.subscribed()
        if name not in current:
            raise FolderError(name, "not subscribed")
        self._writeSubscriptions([n for n in current if n != name])


__all__ = [
    "DEFAULT_FOLDERS",
    "FolderError",
    "MAX_NAME_BYTES",
    "MailStore",
    "SEPARATOR",
    "validateName",
]
