# -*- test-case-name: tests.test_address -*-
"""
Mail addresses as values: parsing the envelope paths of RFC 5321 §4.1.2
and the normal form mailhub looks addresses up by.
"""

from __future__ import annotations

import re

from attrs import frozen

from mailhub.errors import MailhubError

# RFC 5321 §4.1.2: Dot-string = Atom *("." Atom), atext from RFC 5322 §3.2.3.
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]"
_DOT_STRING = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"\Z')
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")
_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]+\]\Z")


class AddressError(MailhubError):
    """
    A path or address is not valid RFC 5321 syntax.
    """


@frozen
class Address:
    """
    A mailbox address from an envelope.

    @ivar local: the local part as sent (a quoted string keeps its quotes).
    @ivar domain: the domain in lower case, or C{""} for C{<postmaster>}.
    """

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}" if self.domain else self.local

    @property
    def key(self) -> str:
        """
        The lookup form: lower case throughout.
        """
        return str(self).lower()

    @property
    def isDotAtom(self) -> bool:
        """
        Whether the local part is a plain dot-string (no quotes), the only
        kind that can name a mailbox directory.
        """
        return bool(_DOT_STRING.match(self.local))


#: The null reverse-path, C{MAIL FROM:<>}.
NULL_SENDER = Address("", "")


def parsePath(text: str, allowNull: bool = False) -> Address:
    """
    Parse a C{<path>} from MAIL or RCPT.

    A source route (C{<@a,@b:user@c>}) is accepted and ignored (RFC 5321
    §4.1.2 and appendix C).  The angle brackets are required.

    @param allowNull: accept C{<>} (MAIL FROM only).
    @raise AddressError: not a valid path.
    """
    if len(text) < 2 or text[0] != "<" or text[-1] != ">":
        raise AddressError("address must be in angle brackets")
    inner = text[1:-1]
    if not inner:
        if allowNull:
            return NULL_SENDER
        raise AddressError("empty address")
    if inner[0] == "@":
        route, colon, inner = inner.partition(":")
        if not colon:
            raise AddressError("bad source route")
    return parseMailbox(inner)


def parseMailbox(text: str) -> Address:
    """
    Parse C{local@domain} (or the bare C{postmaster}, RFC 5321 §4.1.1.3).

    @raise AddressError: not a valid mailbox.
    """
    if len(text) > 254:
        raise AddressError("address too long")
    local, at, domain = text.rpartition("@")
    if not at:
        if text.lower() == "postmaster":
            return Address(text, "")
        raise AddressError("address must have a domain")
    if not local or len(local) > 64:
        raise AddressError("bad local part")
    if not (_DOT_STRING.match(local) or _QUOTED.match(local)):
        raise AddressError("bad local part")
    if not (_DOMAIN.match(domain) or _LITERAL.match(domain)):
        raise AddressError("bad domain")
    return Address(local, domain.lower())
