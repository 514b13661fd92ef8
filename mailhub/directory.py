# -*- test-case-name: tests.test_directory -*-
"""
Who is local: domains, mailboxes, aliases and subaddresses.

L{Directory.resolve} turns an envelope recipient into the mailboxes it
delivers to (and remote addresses an alias points at), or raises the
L{DeliveryError} the SMTP server answers RCPT with.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Protocol

from attrs import frozen
from twisted.logger import Logger

from mailhub.address import Address
from mailhub.errors import DeliveryError

#: How deep an alias may point at another alias.
MAX_ALIAS_DEPTH = 20


@frozen
class Mailbox:
    """
    A local mailbox: its address and its Maildir.
    """

    address: str
    maildir: str


@frozen
class Resolution:
    """
    Where one envelope recipient goes.

    @ivar mailboxes: the local mailboxes, without duplicates.
    @ivar remote: remote addresses (from aliases, or the recipient itself
        when it is not local).
    """

    mailboxes: tuple[Mailbox, ...] = ()
    remote: tuple[str, ...] = ()


class Mailboxes(Protocol):
    """
    The mailbox store as the directory sees it.
    """

    def exists(self, local: str, domain: str) -> bool:
        """
        Whether C{local@domain} (lower case, dot-atom) has a mailbox.
        """

    def maildir(self, local: str, domain: str) -> str:
        """
        The Maildir path of C{local@domain}.
        """


class MaildirMailboxes:
    """
    Mailboxes are the directories C{DATA/mail/DOMAIN/LOCAL/}: a mailbox
    exists when its directory does.
    """

    def __init__(self, dataDir: str) -> None:
        self.root = os.path.join(dataDir, "mail")

    def maildir(self, local: str, domain: str) -> str:
        return os.path.join(self.root, domain, local)

    def exists(self, local: str, domain: str) -> bool:
        if not local or "/" in local or "\0" in local or local.startswith("."):
            # Never a path outside DATA/mail/DOMAIN/.
            return False
        return os.path.isdir(self.maildir(local, domain))


class UserMailboxes(MaildirMailboxes):
    """
    A mailbox exists when its user does (an entry in the users file); its
    Maildir is still C{DATA/mail/DOMAIN/LOCAL/}.

    @param users: anything with C{lookup(address)} returning an entry or
        C{None}.
    """

    def __init__(self, dataDir: str, users: Any) -> None:
        super().__init__(dataDir)
        self.users = users

    def exists(self, local: str, domain: str) -> bool:
        if not local or "/" in local or "\0" in local or local.startswith("."):
            return False
        return self.users.lookup(f"{local}@{domain}") is not None


_unknown = DeliveryError(True, 550, "5.1.1", "Recipient address rejected: User unknown")
_relayDenied = DeliveryError(True, 550, "5.7.1", "Relay access denied")
_loop = DeliveryError(True, 550, "5.4.6", "Recipient address rejected: alias loop")


class Directory:
    """
    Resolves recipients against the local domains, the aliases and the
    mailboxes.

    @param domains: the local domains, lower case, the primary first.
    @param aliases: C{alias -> targets}, lower case and fully qualified.
    @param delimiter: the subaddress delimiter, or C{""}.
    @param mailboxes: the mailbox store.
    """

    log = Logger()

    def __init__(
        self,
        domains: tuple[str, ...],
        aliases: Mapping[str, tuple[str, ...]],
        delimiter: str,
        mailboxes: Mailboxes,
    ) -> None:
        self.domains = frozenset(domains)
        self.primaryDomain = domains[0]
        self.aliases = aliases
        self.delimiter = delimiter
        self.mailboxes = mailboxes

    def isLocal(self, domain: str) -> bool:
        return domain.lower() in self.domains

    def resolve(self, address: Address, mayRelay: bool = False) -> Resolution:
        """
        Resolve one recipient.

        @param mayRelay: the client may relay (authenticated or trusted):
            a non-local recipient is then returned as remote.
        @raise DeliveryError: C{550 5.1.1} for an unknown local user,
            C{550 5.7.1} for relaying without permission.
        """
        domain = address.domain or self.primaryDomain
        if domain not in self.domains:
            if mayRelay:
                return Resolution(remote=(str(address),))
            raise _relayDenied
        if not address.isDotAtom:
            raise _unknown
        key = f"{address.local.lower()}@{domain}"
        mailboxes: dict[str, Mailbox] = {}
        remote: dict[str, None] = {}
        if not self._expand(key, mailboxes, remote, set(), 0):
            raise _unknown
        if not mailboxes and not remote:
            # Known, but every path loops back: RFC 3463 X.4.6.
            raise _loop
        return Resolution(tuple(mailboxes.values()), tuple(remote))

    def reaches(self, address: str, user: str) -> bool:
        """
        Whether mail to C{address} (a local alias or subaddress) is
        delivered to the mailbox of C{user}: what lets a user send as
        their aliases.
        """
        local, _, domain = address.rpartition("@")
        if domain not in self.domains or not local:
            return False
        try:
            resolution = self.resolve(Address(local, domain))
        except DeliveryError:
            return False
        return any(m.address == user for m in resolution.mailboxes)

    def _expand(
        self,
        key: str,
        mailboxes: dict[str, Mailbox],
        remote: dict[str, None],
        seen: set[str],
        depth: int,
    ) -> bool:
        """
        Add what C{key} delivers to; return whether it is a known address.
        """
        local, _, domain = key.rpartition("@")
        if domain not in self.domains:
            remote[key] = None
            return True
        if key in seen or depth > MAX_ALIAS_DEPTH:
            self.log.warn("alias loop or too deep at {address}", address=key)
            return True
        seen.add(key)
        candidates = [local]
        base = local.split(self.delimiter, 1)[0] if self.delimiter else local
        if base and base != local:
            # RFC 5233 style subaddress: user+tag@ delivers to user@.
            candidates.append(base)
        for candidate in candidates:
            full = f"{candidate}@{domain}"
            targets = self.aliases.get(full)
            if targets is not None:
                known = False
                for target in targets:
                    if self._expand(target, mailboxes, remote, seen, depth + 1):
                        known = True
                    else:
                        self.log.warn(
                            "alias {alias} points at unknown {target}",
                            alias=full,
                            target=target,
                        )
                return known
            if self.mailboxes.exists(candidate, domain) or candidate == "postmaster":
                # RFC 5321 §4.5.1: postmaster always exists.
                mailboxes.setdefault(
                    full, Mailbox(full, self.mailboxes.maildir(candidate, domain))
                )
                return True
        return False
