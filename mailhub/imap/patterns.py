# -*- test-case-name: tests.imap.test_mailbox -*-
"""
LIST patterns (RFC 3501 §6.3.8), shared by the Maildir backend and the
server's extended LIST.
"""

from __future__ import annotations

import re


def patternRegexp(pattern: str, delimiter: str) -> "re.Pattern[str]":
    """
    A LIST pattern as a regular expression for C{fullmatch}: C{*} anything,
    C{%} anything but C{delimiter}; case-sensitive (RFC 3501 §5.1: only
    INBOX is not, which callers handle).  Twisted's C{wildcardToRegexp} is
    neither anchored nor case-sensitive.
    """
    out = []
    for piece in re.split(r"([*%])", pattern):
        if piece == "*":
            out.append(".*")
        elif piece == "%":
            out.append(f"[^{re.escape(delimiter)}]*")
        else:
            out.append(re.escape(piece))
    return re.compile("".join(out), re.S)
