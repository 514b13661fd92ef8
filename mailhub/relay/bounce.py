# -*- test-case-name: tests.relay.test_bounce -*-
"""
Delivery status notifications: the bounces and delay warnings that the
relay sends back to a message's sender (RFC 3464, in an RFC 6522
C{multipart/report}).

L{makeReport} builds the whole message as bytes with CRLF line ends; the
relay manager queues it with the null reverse-path C{<>} (RFC 3464 §2,
RFC 5321 §4.5.5) to the original sender, after asking L{shouldBounce}.

Everything a remote server said is untrusted: replies are put on one line,
control characters and non-ASCII are made visible escapes, long replies
are cut, and every field is folded, so that no reply can add a header
field, a MIME part or an overlong line to the report.
"""

from __future__ import annotations

import binascii
import email.utils
import hashlib
import re
import textwrap
from datetime import datetime, timezone
from typing import Literal

from mailhub.relay.policy import RetryPolicy
from mailhub.relay.values import QueueEntry, QueuedRecipient

#: What a report says happened to its recipients (RFC 3464 §2.3.3).
Action = Literal["failed", "delayed"]

#: The most of the original message's header that a report returns.
HEADERS_LIMIT = 64 * 1024
#: The most characters of one remote reply that a report repeats.
DIAGNOSTIC_LIMIT = 1000
#: Where header fields are folded when they can be (RFC 5322 §2.1.1).
FOLD_WIDTH = 78
#: The longest piece of a field value without a place to fold: well within
#: RFC 5322's 998 octets a line.
LONGEST_WORD = 900
#: RFC 5322 §2.1.1, RFC 5321 §4.5.3.1.6: no line of a message is longer.
MAX_LINE = 998
#: The width of the human-readable part.
TEXT_WIDTH = 76

SUBJECTS: dict[str, str] = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
}

#: The status of a recipient whose last response carries no code (RFC 3463
#: §3.2, "Other undefined status", permanent or transient).
DEFAULT_STATUS: dict[str, str] = {"failed": "5.0.0", "delayed": "4.0.0"}

# RFC 5321 §4.2: Reply-code, then SP or "-" (or nothing) ...
_REPLY = re.compile(r"([2-5])[0-5][0-9](?:[ -]|$)")
# ... at the start of a response, or after a note ending in ": ".
_REPLY_IN = re.compile(r"(?:^|:\s+)([2-5][0-5][0-9](?:[ -].*)?)$", re.DOTALL)
# ... and RFC 2034 §4 / RFC 3463 §2: class.subject.detail after it.
_LOCAL_STATUS = re.compile(r"(?:^|:\s+)([45]\.[0-9]{1,3}\.[0-9]{1,3})(?:\s|$)")
_ENHANCED = re.compile(r"[2-5][0-5][0-9][ -]([45]\.[0-9]{1,3}\.[0-9]{1,3})(?:\s|$)")
_LINE_END = re.compile(rb"\r\n|\r|\n")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]*|\[[A-Za-z0-9.:\-]+\]")


def shouldBounce(entry: QueueEntry) -> bool:
    """
    Whether the sender of C{entry} may be sent a report about it.

    Never to the null sender C{<>}: a report about a report could start a
    loop (RFC 3464 §2, RFC 5321 §4.5.5).
    """
    return entry.sender.strip() not in ("", "<>")


def originalHeaders(messagePath: str, limit: int = HEADERS_LIMIT) -> bytes:
    """
    The header block of a queued message file: everything before the first
    empty line (CRLF or LF line ends), or the whole file if it has no body.

    At most C{limit} bytes are read; a longer header is cut at the end of
    its last line that fits (or at C{limit} itself, if no line ends before
    it).  This blocks on the file, but reads no more than C{limit} bytes.

    @param messagePath: the message file.
    @param limit: the most bytes returned.
    @return: the header lines with their own line ends, without the empty
        line that ends them.
    @raise OSError: the file cannot be read.
    """
    with open(messagePath, "rb") as f:
        # Two bytes more than the limit see an empty line that starts
        # just past it, and tell a header of exactly C{limit} bytes from a
        # longer one.
        return headersOf(f.read(limit + 2), limit)


def headersOf(message: bytes, limit: int = HEADERS_LIMIT) -> bytes:
    """
    L{originalHeaders} of a message in memory.
    """
    data = message[: limit + 2]
    if data.startswith((b"\n", b"\r\n")):
        return b""
    ends = [i for i in (data.find(b"\n\n"), data.find(b"\n\r\n")) if i >= 0]
    if ends:
        end = min(ends) + 1
        if end <= limit:
            return data[:end]
    if len(data) <= limit:
        return data
    cut = data.rfind(b"\n", 0, limit)
    return data[: cut + 1] if cut >= 0 else data[:limit]


def makeReport(
    entry: QueueEntry,
    recipients: list[QueuedRecipient],
    action: Action,
    *,
    reportingMTA: str,
    now: float,
    originalHeaders: bytes,
    messageId: str,
    arrival: float | None = None,
    retryUntil: float | None = None,
) -> bytes:
    """
    A delivery status notification about some recipients of C{entry}, for
    its sender: a complete message with CRLF line ends.

    @param entry: the queued message reported on.
    @param recipients: the recipients reported on, with their last
        response and the host that gave it.
    @param action: C{"failed"} (a bounce: delivery was given up) or
        C{"delayed"} (a warning: still being retried).
    @param reportingMTA: this host's name, for C{From:} and C{Reporting-MTA}.
    @param now: the reactor's time: the report's C{Date} and the recipients'
        C{Last-Attempt-Date}.
    @param originalHeaders: the header of the reported message, returned
        in the third part (cut to L{HEADERS_LIMIT} at a field's end).
    @param messageId: the report's Message-ID, without angle brackets.
    @param arrival: when the message arrived; C{entry.created} if C{None}.
    @param retryUntil: for C{"delayed"}, when the relay gives up; if
        C{None}, the end of the default L{RetryPolicy}'s lifetime.
    @return: the message.
    @raise ValueError: no recipients, an unknown action, or a host name or
        Message-ID that cannot be put in a header.
    """
    if action not in SUBJECTS:
        raise ValueError(f"unknown action {action!r}")
    if not recipients:
        raise ValueError("a report needs at least one recipient")
    host = reportingMTA.strip()
    if _HOST.fullmatch(host) is None:
        raise ValueError(f"not a host name: {reportingMTA!r}")
    msgId = _token(messageId.strip().strip("<>"))
    if not msgId:
        raise ValueError(f"not a Message-ID: {messageId!r}")
    arrivalDate = entry.created if arrival is None else arrival
    until = None
    if action == "delayed":
        until = RetryPolicy().retryUntil(entry) if retryUntil is None else retryUntil

    headers, truncated = _headerBlock(originalHeaders, HEADERS_LIMIT)
    headersEncoding = "7bit"
    if not _is7bit(headers):
        # RFC 2045 §6.7: keeps 8-bit and overlong header lines intact
        # through any transport.
        headersEncoding = "quoted-printable"
        headers = binascii.b2a_qp(headers, istext=True)

    parts = [
        (
            [
                _field("Content-Description", "Notification"),
                _field("Content-Type", "text/plain; charset=us-ascii"),
                _field("Content-Transfer-Encoding", "7bit"),
            ],
            _humanText(entry, recipients, action, host, arrivalDate, until, truncated).encode(
                "ascii"
            ),
        ),
        (
            [
                _field("Content-Description", "Delivery report"),
                _field("Content-Type", "message/delivery-status"),
                _field("Content-Transfer-Encoding", "7bit"),
            ],
            _deliveryStatus(entry, recipients, action, host, now, arrivalDate, until).encode(
                "ascii"
            ),
        ),
        (
            [
                _field("Content-Description", "Undelivered Message Headers"),
                _field("Content-Type", "text/rfc822-headers"),
                _field("Content-Transfer-Encoding", headersEncoding),
            ],
            headers,
        ),
    ]
    boundary = _boundary(entry, msgId, now, [body for _, body in parts])

    head = [
        _field("From", f"Mail Delivery System <MAILER-DAEMON@{host}>"),
        _field("To", f"<{_headerAddress(entry.sender)}>"),
        _field("Subject", SUBJECTS[action]),
        _field("Date", _date(now)),
        _field("Message-ID", f"<{msgId}>"),
        # RFC 3834 §5: a report is an automatic response.
        _field("Auto-Submitted", "auto-replied"),
        _field("MIME-Version", "1.0"),
        # RFC 6522 §3, RFC 3464 §2.
        _field(
            "Content-Type",
            f'multipart/report; report-type=delivery-status; boundary="{boundary}"',
        ),
    ]
    out = [
        # RFC 6532: an internationalised sender's address stays UTF-8.
        "".join(head).encode("utf-8"),
        b"\r\nThis is a MIME-encapsulated message.\r\n",
    ]
    for fields, body in parts:
        out.append(f"\r\n--{boundary}\r\n".encode("ascii"))
        out.append("".join(fields).encode("ascii"))
        out.append(b"\r\n")
        out.append(body)
    out.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(out)


def _humanText(
    entry: QueueEntry,
    recipients: list[QueuedRecipient],
    action: str,
    host: str,
    arrival: float,
    until: float | None,
    truncated: bool,
) -> str:
    """
    The first part of a report, for the person who sent the message.
    """
    paragraphs = [f"This is the mail system at host {host}."]
    if action == "failed":
        paragraphs.append(
            "I'm sorry to have to inform you that your message could not be "
            "delivered to the recipients below. The mail system has given up "
            "on them; the reasons follow."
        )
    else:
        assert until is not None
        paragraphs.append(
            "Your message has not been delivered yet to the recipients below. "
            "This is only a warning: you do not need to send the message "
            f"again. The mail system will keep trying until {_date(until)}."
        )
    paragraphs.append(
        f"The message was accepted on {_date(arrival)} with queue id {_token(entry.id)}."
    )
    text = [_wrap(p) for p in paragraphs]
    for recipient in recipients:
        reason = _text(recipient.response, DIAGNOSTIC_LIMIT) or "no further information"
        remote = _token(recipient.remoteMTA)
        if remote and recipient.response:
            reason = f"host {remote} said: {reason}"
        text.append(_wrap(f"<{_text(recipient.address)}>: {reason}", indent="    "))
    if truncated:
        text.append(_wrap(f"The header of your message below was cut to {HEADERS_LIMIT} octets."))
    return "\r\n\r\n".join(text) + "\r\n"


def _wrap(paragraph: str, indent: str = "") -> str:
    """
    C{paragraph} (see L{_text}) as lines of at most L{TEXT_WIDTH}
    characters, joined with CRLF; later lines start with C{indent}.
    """
    lines = textwrap.wrap(
        paragraph, TEXT_WIDTH, subsequent_indent=indent, break_on_hyphens=False
    )
    return "\r\n".join(lines)


def _deliveryStatus(
    entry: QueueEntry,
    recipients: list[QueuedRecipient],
    action: str,
    host: str,
    now: float,
    arrival: float,
    until: float | None,
) -> str:
    """
    The C{message/delivery-status} part: one group of per-message fields,
    then one group per recipient, separated by empty lines (RFC 3464 §2.1).
    """
    # RFC 3464 §2.2
    groups = [
        [
            _field("Reporting-MTA", f"dns; {host}"),
            # RFC 3464 §2.2.4 (Final-Log-ID's kin): an extension field.
            _field("X-Mailhub-Queue-ID", _token(entry.id) or "unknown"),
            _field("Arrival-Date", _date(arrival)),
        ]
    ]
    # RFC 3464 §2.3
    for recipient in recipients:
        fields = [
            _field("Final-Recipient", _recipientAddress(recipient.address)),
            _field("Action", action),
            _field("Status", recipientStatus(recipient.response, action)),
        ]
        remote = _token(recipient.remoteMTA)
        if remote:
            fields.append(_field("Remote-MTA", f"dns; {remote}"))
        reply = remoteReply(_text(recipient.response, DIAGNOSTIC_LIMIT))
        if reply:
            # RFC 3464 §2.3.6: "smtp" says the text is an SMTP reply.
            fields.append(_field("Diagnostic-Code", f"smtp; {reply}"))
        if entry.attempts > 0:
            fields.append(_field("Last-Attempt-Date", _date(now)))
        if until is not None:
            fields.append(_field("Will-Retry-Until", _date(until)))
        groups.append(fields)
    return "\r\n".join("".join(fields) for fields in groups)


def remoteReply(response: str) -> str:
    """
    The SMTP reply in a recipient's response: all of it if it starts with
    a reply code (C{"550 5.1.1 no such user"}), or what follows a note
    that ends in C{": "} (C{"giving up after 9 attempts: 451 4.7.1 ..."}),
    or C{""} when there is none (C{"connection refused"}).
    """
    found = _REPLY_IN.search(response.strip())
    return "" if found is None else found.group(1)


def recipientStatus(response: str, action: str) -> str:
    """
    The RFC 3463 status code of a recipient for its report: the enhanced
    code of its SMTP reply (L{remoteReply}) if it has one
    (C{"550 5.1.1 ..."}), else the class of the reply code (C{"550 ..."}
    gives C{"5.0.0"}), else the enhanced code our own reason starts with
    (C{"5.1.10 ... has a null MX"}), else the default of C{action}
    (L{DEFAULT_STATUS}).

    @param response: the recipient's last response.
    @param action: C{"failed"} or C{"delayed"}.
    """
    remote = remoteReply(response)
    enhanced = _ENHANCED.match(remote)
    if enhanced is not None:
        return enhanced.group(1)
    reply = _REPLY.match(remote)
    if reply is not None and reply.group(1) in "45":
        return f"{reply.group(1)}.0.0"
    # Our own reason for a failure no remote answered (no such domain, a
    # null MX, a route back to us): it starts with its enhanced code
    # (L{mailhub.relay.manager.describe}).
    local = _LOCAL_STATUS.search(response.strip())
    if local is not None:
        return local.group(1)
    return DEFAULT_STATUS[action]


def _text(text: str, limit: int | None = None) -> str:
    """
    C{text} made safe for a header field or a line of text: one line, runs
    of whitespace (CR and LF among them) as one space, other control
    characters as C{?}, non-ASCII as C{\\x{HEX}} (the escape of RFC 6533
    §3), at most C{limit} characters (then ending in C{...}).
    """
    pieces: list[str] = []
    length = 0
    for char in " ".join(text.split()):
        code = ord(char)
        if 0x20 <= code < 0x7F:
            piece = char
        elif code < 0x20 or code == 0x7F:
            piece = "?"
        else:
            piece = f"\\x{{{code:02X}}}"
        if limit is not None and length + len(piece) > limit - 3:
            return "".join(pieces).rstrip() + "..."
        pieces.append(piece)
        length += len(piece)
    return "".join(pieces)


def _token(text: str) -> str:
    """
    C{text} made safe, without any whitespace: for host names and ids.
    """
    return _text(text, DIAGNOSTIC_LIMIT).replace(" ", "")


def _recipientAddress(address: str) -> str:
    """
    A C{Final-Recipient} value (RFC 3464 §2.3.2): C{rfc822; } and the
    address, or for an address that is not printable ASCII, C{utf-8; }
    and its C{utf-8-addr-xtext} form (RFC 6533 §3).
    """
    if all(0x21 <= ord(c) < 0x7F for c in address) and address:
        return f"rfc822; {address}"
    escaped = "".join(
        c if 0x21 <= ord(c) < 0x7F and c not in "+=\\" else f"\\x{{{ord(c):02X}}}" for c in address
    )
    return f"utf-8; {escaped}"


def _headerAddress(address: str) -> str:
    """
    An envelope address for C{To:}: whitespace, control characters and
    angle brackets dropped; non-ASCII kept (RFC 6532).
    """
    return "".join(c for c in address if ord(c) > 0x20 and ord(c) != 0x7F and c not in "<>")


def _field(name: str, value: str) -> str:
    """
    One header field with its CRLF, folded at spaces to L{FOLD_WIDTH}
    where it can (RFC 5322 §2.2.3); a word longer than L{LONGEST_WORD} is
    split so that no line passes L{MAX_LINE}.

    @param value: a value without CR or LF (see L{_text}).
    """
    words: list[str] = []
    for word in value.split(" "):
        words.extend(word[i : i + LONGEST_WORD] for i in range(0, max(len(word), 1), LONGEST_WORD))
    lines: list[str] = []
    line = f"{name}:"
    first = True
    for word in words:
        if not first and len(line) + 1 + len(word) > FOLD_WIDTH:
            lines.append(line)
            line = ""
        line += " " + word
        first = False
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _date(when: float) -> str:
    """
    C{when} (seconds since the epoch) as an RFC 5322 §3.3 date-time in UTC.
    """
    return email.utils.format_datetime(datetime.fromtimestamp(when, timezone.utc))


def _headerBlock(headers: bytes, limit: int) -> tuple[bytes, bool]:
    """
    C{headers} up to the first empty line, with CRLF line ends, cut to at
    most C{limit} bytes at the end of a field where it can be.

    @return: the header lines, and whether anything was cut off.
    """
    lines = _LINE_END.split(headers)
    if b"" in lines:
        lines = lines[: lines.index(b"")]
    kept = 0
    size = 0
    for line in lines:
        if size + len(line) + 2 > limit:
            break
        size += len(line) + 2
        kept += 1
    if kept == len(lines):
        return b"".join(line + b"\r\n" for line in lines), False
    if kept == 0:
        return lines[0][: max(limit - 2, 0)] + b"\r\n", True
    # Cut before the last field that did not fit whole, unless that would
    # leave nothing.
    cut = kept
    while cut > 0 and lines[cut][:1] in (b" ", b"\t"):
        cut -= 1
    if cut == 0:
        cut = kept
    return b"".join(line + b"\r\n" for line in lines[:cut]), True


def _is7bit(data: bytes) -> bool:
    """
    Whether C{data} is RFC 2045 §2.7 7bit data: ASCII, no NUL, no bare CR
    or LF, lines of at most L{MAX_LINE} octets.
    """
    if any(byte >= 0x80 or byte == 0 for byte in data):
        return False
    lines = data.split(b"\r\n")
    return all(len(line) <= MAX_LINE and b"\r" not in line and b"\n" not in line for line in lines)


def _boundary(entry: QueueEntry, messageId: str, now: float, bodies: list[bytes]) -> str:
    """
    A MIME boundary that occurs in none of C{bodies} (RFC 2046 §5.1.1),
    the same for the same report.
    """
    seed = hashlib.sha256(f"{entry.id}\0{messageId}\0{now!r}".encode("utf-8", "replace"))
    for counter in range(1000):
        boundary = f"=_mailhub_{seed.hexdigest()[:24]}_{counter}"
        if not any(boundary.encode("ascii") in body for body in bodies):
            return boundary
    raise ValueError("no MIME boundary found")  # pragma: no cover
