# -*- test-case-name: tests.test_errors -*-
"""
The exceptions of mailhub: one root, L{MailhubError}.
"""

from __future__ import annotations


class MailhubError(Exception):
    """
    The root of every exception that mailhub raises on purpose.
    """


class MessageExpunged(MailhubError):
    """
    A message is no longer in its folder: another session, POP3 or another
    tool removed it after this session last looked (RFC 2180 §4.1).
    """


class MailboxGone(MessageExpunged):
    """
    A folder itself is gone, its messages with it: another session or tool
    deleted or renamed it while a session had it selected.
    """


class ConfigError(MailhubError):
    """
    The configuration is not usable.

    C{str()} of it is one line naming the file, the key and what is wrong.

    @ivar source: the file the configuration came from, or C{None} for the
        embedded default or the command line.
    @ivar key: the dotted key that is wrong (C{"limits.message_size"}), or
        C{None} when the file as a whole is wrong (unreadable, not TOML).
    @ivar problem: what is wrong, for a person.
    """

    def __init__(self, source: str | None, key: str | None, problem: str) -> None:
        super().__init__(source, key, problem)
        self.source = source
        self.key = key
        self.problem = problem

    def __str__(self) -> str:
        parts = [self.source or "configuration"]
        if self.key:
            parts.append(self.key)
        parts.append(self.problem)
        return ": ".join(parts)


class DeliveryError(MailhubError):
    """
    A message could not be delivered to a recipient (or to all of them).

    @ivar permanent: C{True} if trying again cannot help (a C{5xx} reply),
        C{False} for a temporary failure (a C{4xx} reply).
    @ivar code: the SMTP reply code to give.
    @ivar enhanced: the RFC 3463 enhanced status code, like C{"4.3.0"}.
    @ivar text: a short human-readable reason, safe to show to a peer (no
        paths, no tracebacks).
    """

    def __init__(self, permanent: bool, code: int, enhanced: str, text: str) -> None:
        super().__init__(permanent, code, enhanced, text)
        self.permanent = permanent
        self.code = code
        self.enhanced = enhanced
        self.text = text

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


class TemporaryAuthError(MailhubError):
    """
    A credential check could not be completed (the password service is
    down, a timeout): the protocol answers "try again later", never "wrong
    password".
    """
