"""
In-memory fakes of Twisted's IMAP backend interfaces (account, mailbox,
message), for driving L{mailhub.imap.server} without a Maildir.  Each is
checked with C{verifyObject} in L{tests.imap.test_server}.
"""

from __future__ import annotations

import io
import re
from typing import Any, Callable

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.mail.imap4 import (
    IAccount,
    ICloseableMailbox,
    IMailbox,
    IMailboxInfo,
    IMessage,
    IMessageCopier,
    IMessageFile,
    MailboxCollision,
    MessageSet,
    NoSuchMailbox,
    ReadOnlyMailbox,
)
from zope.interface import implementer

SYSTEM_FLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"]
DATE = "Mon, 02 Mar 2026 10:00:00 +0100"


@implementer(IMessage, IMessageFile)
class FakeMessage:
    """
    A message: its octets, UID, flags and internal date.
    """

    def __init__(self, uid: int, data: bytes, flags: list[str] | None = None, date: str = DATE) -> None:
        self.uid = uid
        self.data = data
        self.flags = list(flags or [])
        self.date = date

    def open(self) -> Any:
        return io.BytesIO(self.data)

    def getHeaders(self, negate: bool, *names: str) -> dict:
        header = self.data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        out = {}
        for line in header.split("\r\n"):
            key, _, value = line.partition(":")
            if (key.lower() in [n.lower() for n in names]) != negate:
                out[key] = value.strip()
        return out

    def getBodyFile(self) -> Any:
        return io.BytesIO(self.data.split(b"\r\n\r\n", 1)[-1])

    def getSize(self) -> int:
        return len(self.data)

    def isMultipart(self) -> bool:
        return False

    def getSubPart(self, part: int) -> Any:
        raise IndexError(part)

    def getUID(self) -> int:
        return self.uid

    def getFlags(self) -> list[str]:
        return list(self.flags)

    def getInternalDate(self) -> str:
        return self.date


@implementer(IMailboxInfo)
class FakeInfo:
    def __init__(self, flags: list[str]) -> None:
        self.flags = flags

    def getFlags(self) -> list[str]:
        return list(self.flags)

    def getHierarchicalDelimiter(self) -> str:
        return "/"


@implementer(IMailbox, IMessageCopier, ICloseableMailbox)
class FakeMailbox:
    """
    A mailbox in memory.  C{addMessage} and C{copy} return the new UID
    (so the server sends APPENDUID/COPYUID).  C{later(f)} queues a change
    made "by another session" that C{refresh()} reports to the listeners.

    @ivar fetched: how many messages C{fetch} has handed out (SEARCH must
        not scan the whole mailbox).
    """

    def __init__(self, uidValidity: int = 42, attributes: list[str] | None = None) -> None:
        self.messages: list[FakeMessage] = []
        self.uidValidity = uidValidity
        self.nextUID = 1
        self.listeners: list[Any] = []
        self.attributes = attributes or []
        self.writeable = True
        self.closed = 0
        self.fetched = 0
        self.refreshes = 0
        self.pending: list[Callable[[Any], None]] = []

    def add(self, data: bytes, flags: list[str] | None = None) -> FakeMessage:
        message = FakeMessage(self.nextUID, data, flags)
        self.nextUID += 1
        self.messages.append(message)
        return message

    def later(self, change: Callable[[Any], None]) -> None:
        self.pending.append(change)

    def refresh(self) -> None:
        self.refreshes += 1
        pending, self.pending = self.pending, []
        for change in pending:
            for listener in list(self.listeners):
                change(listener)

    # IMailboxInfo

    def getFlags(self) -> list[str]:
        return list(SYSTEM_FLAGS)

    def getHierarchicalDelimiter(self) -> str:
        return "/"

    # IMailbox

    def getUIDValidity(self) -> int:
        return self.uidValidity

    def getUIDNext(self) -> int:
        return self.nextUID

    def getUID(self, message: int) -> int:
        return self.messages[message - 1].uid

    def getMessageCount(self) -> int:
        return len(self.messages)

    def getRecentCount(self) -> int:
        return 0

    def getUnseenCount(self) -> int:
        return sum("\\Seen" not in m.flags for m in self.messages)

    def isWriteable(self) -> bool:
        return self.writeable

    def destroy(self) -> None:
        self.messages = []

    def requestStatus(self, names: list[str]) -> dict:
        values = {
            "MESSAGES": self.getMessageCount(),
            "RECENT": 0,
            "UIDNEXT": self.nextUID,
            "UIDVALIDITY": self.uidValidity,
            "UNSEEN": self.getUnseenCount(),
        }
        return {name: values[name] for name in names}

    def addListener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def removeListener(self, listener: Any) -> None:
        self.listeners.remove(listener)

    def addMessage(self, message: Any, flags: Any = (), date: Any = None) -> int:
        if not self.writeable:
            raise ReadOnlyMailbox()
        added = self.add(message.read(), list(flags))
        if date:
            added.date = date
        return added.uid

    def expunge(self) -> list[int]:
        # Highest first: each number is valid when sent.
        gone = [i + 1 for i, m in enumerate(self.messages) if "\\Deleted" in m.flags][::-1]
        self.messages = [m for m in self.messages if "\\Deleted" not in m.flags]
        return gone

    def _select(self, messages: MessageSet, uid: bool) -> list[tuple[int, FakeMessage]]:
        if not self.messages:
            return []
        try:
            messages.last = self.messages[-1].uid if uid else len(self.messages)
        except ValueError:
            pass  # already set
        out = []
        for seq, message in enumerate(self.messages, 1):
            if (message.uid if uid else seq) in messages:
                out.append((seq, message))
        return out

    def fetch(self, messages: MessageSet, uid: bool) -> list[tuple[int, FakeMessage]]:
        out = self._select(messages, uid)
        self.fetched += len(out)
        return out

    def store(self, messages: MessageSet, flags: Any, mode: int, uid: bool) -> dict:
        result = {}
        for seq, message in self._select(messages, uid):
            if mode == 0:
                message.flags = list(flags)
            elif mode == 1:
                message.flags += [f for f in flags if f not in message.flags]
            else:
                message.flags = [f for f in message.flags if f not in flags]
            result[seq] = list(message.flags)
        return result

    # IMessageCopier

    def copy(self, messageObject: Any) -> int:
        return self.add(messageObject.data, list(messageObject.flags)).uid

    # ICloseableMailbox

    def close(self) -> None:
        self.closed += 1


def _pattern(ref: str, wildcard: str) -> re.Pattern:
    text = "".join(
        ".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in ref + wildcard
    )
    return re.compile(text + r"\Z")


@implementer(IAccount)
class FakeAccount:
    """
    An account of named L{FakeMailbox}es; INBOX, Sent (\\Sent) and Trash
    (\\Trash) exist.
    """

    def __init__(self) -> None:
        self.mailboxes: dict[str, FakeMailbox] = {}
        self.subscribed: set[str] = set()
        self.addMailbox("INBOX")
        self.addMailbox("Sent", FakeMailbox(attributes=["\\Sent"]))
        self.addMailbox("Trash", FakeMailbox(attributes=["\\Trash"]))

    def addMailbox(self, name: str, mbox: Any = None) -> bool:
        if name in self.mailboxes:
            raise MailboxCollision(name)
        self.mailboxes[name] = mbox if mbox is not None else FakeMailbox()
        return True

    def create(self, pathspec: str) -> bool:
        return self.addMailbox(pathspec)

    def select(self, name: str, rw: bool = True) -> Any:
        return self.mailboxes.get(name)

    def delete(self, name: str) -> bool:
        if name not in self.mailboxes:
            raise NoSuchMailbox(name)
        del self.mailboxes[name]
        return True

    def rename(self, oldname: str, newname: str) -> bool:
        if oldname not in self.mailboxes:
            raise NoSuchMailbox(oldname)
        if newname in self.mailboxes:
            raise MailboxCollision(newname)
        self.mailboxes[newname] = self.mailboxes.pop(oldname)
        return True

    def isSubscribed(self, name: str) -> bool:
        return name in self.subscribed

    def subscribe(self, name: str) -> bool:
        self.subscribed.add(name)
        return True

    def unsubscribe(self, name: str) -> bool:
        self.subscribed.discard(name)
        return True

    def listMailboxes(self, ref: str, wildcard: str) -> list:
        pattern = _pattern(ref, wildcard)
        return [
            (name, FakeInfo(box.attributes))
            for name, box in sorted(self.mailboxes.items())
            if pattern.match(name)
        ]


@implementer(IRealm)
class FakeRealm:
    """
    Gives every user one L{FakeAccount}; counts logouts.
    """

    def __init__(self) -> None:
        self.accounts: dict[bytes, FakeAccount] = {}
        self.logouts = 0

    def requestAvatar(self, avatarId: bytes, mind: object, *interfaces: Any) -> tuple:
        assert IAccount in interfaces
        account = self.accounts.setdefault(avatarId, FakeAccount())

        def logout() -> None:
            self.logouts += 1

        return IAccount, account, logout


def makePortal(realm: FakeRealm | None = None) -> tuple[Portal, FakeRealm]:
    realm = realm or FakeRealm()
    checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret", bob=b"hunter2")
    return Portal(realm, [checker]), realm
