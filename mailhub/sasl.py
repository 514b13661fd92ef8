# -*- test-case-name: tests.test_sasl -*-
"""
The SASL mechanisms mailhub offers, PLAIN (RFC 4616) and LOGIN, as small
state machines that any protocol (SMTP AUTH, POP3 AUTH, IMAP AUTHENTICATE)
drives with base64 lines.
"""

from __future__ import annotations

import base64
import binascii

from twisted.cred.credentials import UsernamePassword

from mailhub.errors import MailhubError

#: What each mechanism's server challenges are, as sent (before base64).
_LOGIN_PROMPTS = (b"Username:", b"Password:")


class SASLError(MailhubError):
    """
    The client's SASL exchange is malformed (not base64, wrong shape) or
    was cancelled.

    @ivar cancelled: the client sent C{*} (RFC 4954 §4).
    """

    def __init__(self, text: str, cancelled: bool = False) -> None:
        super().__init__(text)
        self.cancelled = cancelled


def decode(line: bytes) -> bytes:
    """
    Decode one base64 client response; C{=} is the empty response, C{*}
    cancels.

    @raise SASLError: not valid base64, or cancelled.
    """
    line = line.strip()
    if line == b"*":
        raise SASLError("authentication cancelled", cancelled=True)
    if line == b"=":
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise SASLError("cannot decode response") from None


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SASLError("credentials are not UTF-8") from None


class Mechanism:
    """
    One SASL exchange.  C{challenge()} is what to send next (raw bytes, to
    be base64-encoded) or C{None} when the exchange is complete and
    C{credentials} is set.
    """

    name = b""
    credentials: UsernamePassword | None = None

    def respond(self, response: bytes) -> bytes | None:
        """
        Take one decoded client response; return the next challenge or
        C{None} when done.

        @raise SASLError: malformed.
        """
        raise NotImplementedError()


class Plain(Mechanism):
    """
    RFC 4616: one response C{authzid NUL authcid NUL passwd}.  An authzid
    other than the authcid is refused (no proxy authorisation).
    """

    name = b"PLAIN"

    def first(self) -> bytes:
        return b""

    def respond(self, response: bytes) -> bytes | None:
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise SASLError("malformed PLAIN response")
        authzid, authcid, password = (_text(p) for p in parts)
        if not authcid or (authzid and authzid != authcid):
            raise SASLError("malformed PLAIN response")
        self.credentials = UsernamePassword(authcid.encode("utf-8"), password.encode("utf-8"))
        return None


class Login(Mechanism):
    """
    The LOGIN mechanism (draft-murchison-sasl-login): user name, then
    password, each prompted for.
    """

    name = b"LOGIN"

    def __init__(self) -> None:
        self._user: bytes | None = None

    def first(self) -> bytes:
        return _LOGIN_PROMPTS[0]

    def respond(self, response: bytes) -> bytes | None:
        if self._user is None:
            self._user = _text(response).encode("utf-8")
            return _LOGIN_PROMPTS[1]
        self.credentials = UsernamePassword(self._user, _text(response).encode("utf-8"))
        return None


MECHANISMS = {b"PLAIN": Plain, b"LOGIN": Login}
