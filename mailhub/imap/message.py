# -*- test-case-name: tests.imap.test_message -*-
"""
What IMAP FETCH says about one message: ENVELOPE, BODY and BODYSTRUCTURE,
C{BODY[section]<partial>}, and the decoded text that SEARCH compares.

Pure functions over a message's bytes; no protocol code.  Messages are
stored with CRLF line ends, but a file dropped in by another tool may have
bare LF: every function first turns bare LF into CRLF (L{toCRLF}), so sizes,
line counts and section bytes are those of the CRLF form, the form that
C{RFC822.SIZE} counts and C{BODY[]} sends.

A small MIME parser of our own is used rather than L{email.parser}: IMAP
needs the exact octets of each part (sizes, sections, partial fetches), and
the stdlib parser re-serialises what it parses.

Values in the ENVELOPE and BODYSTRUCTURE lists are C{bytes} (an IMAP
string: to be sent quoted or as a literal, never as an atom), C{int}
(a number) or C{None} (NIL) and nested lists, the shape that
L{twisted.mail.imap4.collapseNestedLists} formats.  Header text is returned
raw, encoded words and 8-bit octets as they are in the message (RFC 3501
§7.4.2: the server does not decode them).
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from typing import Iterator, List, Optional, Sequence, Tuple, Union

from attrs import define, field, frozen

from mailhub.errors import MailhubError

#: Deeper MIME nesting than this is treated as an opaque leaf part, so a
#: hostile message cannot exhaust the stack or the CPU.
MAX_NESTING = 50

#: Longest part number we accept in a section spec (RFC 3501 nz-number is
#: at most 2**32 - 1: ten digits).
_MAX_PART_DIGITS = 10

#: RFC 2045 §5.2: the default content type, and the one used when the
#: Content-Type field is unusable.
_DEFAULT_PARAMS = [("charset", "us-ascii")]

Value = Union[bytes, int, None, list]


class SectionError(MailhubError):
    """
    A C{BODY[...]} section spec is not valid RFC 3501 syntax; the protocol
    answers C{BAD}.

    @ivar reason: what is wrong, for the client.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- line ends, header block -------------------------------------------------

_BARE_LF = re.compile(rb"\r?\n")


def toCRLF(data: bytes) -> bytes:
    """
    Turn bare LF line ends into CRLF; CRLF input is returned as it is (no
    copy).  A lone CR is left alone: it is not a line end.

    @param data: a message or part of one.
    @return: C{data} with every line ending in CRLF.
    """
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return _BARE_LF.sub(b"\r\n", data)


def _split(data: bytes) -> Tuple[bytes, bytes]:
    """
    L{splitHeader} for data already in CRLF form.
    """
    if data.startswith(b"\r\n"):
        return b"\r\n", data[2:]
    end = data.find(b"\r\n\r\n")
    if end < 0:
        # No blank line: the whole message is header, the body is empty.
        return data, b""
    return data[: end + 4], data[end + 4 :]


def splitHeader(data: bytes) -> Tuple[bytes, bytes]:
    """
    Split a message into its header and its body.

    The header includes the blank line that ends it (RFC 3501 §6.4.5:
    C{BODY[HEADER]} does); C{header + body} is always the whole message in
    CRLF form.  A message without a blank line is all header, with an empty
    body; one that starts with a blank line has the header C{b"\\r\\n"}.

    @param data: the message, CRLF or bare-LF line ends.
    @return: C{(header, body)}, both with CRLF line ends.
    """
    return _split(toCRLF(data))


_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n|$)")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")


def _fields(header: bytes) -> List[Tuple[Optional[str], bytes]]:
    """
    The fields of a header block, folded lines kept with the field they
    continue.

    @return: C{(lower-case name, raw bytes of the field including its line
        end)} for each field in order; the name is C{None} for a line that
        is not a field (no colon, or a bad name).  The blank line is not
        included.
    """
    out: List[Tuple[Optional[str], bytes]] = []
    for line in header.split(b"\r\n"):
        if not line:
            break
        raw = line + b"\r\n"
        if line[:1] in (b" ", b"\t") and out:
            name, previous = out[-1]
            out[-1] = (name, previous + raw)
            continue
        colon = line.find(b":")
        fieldName = line[:colon].rstrip(b" \t") if colon > 0 else b""
        if fieldName and _FIELD_NAME.fullmatch(fieldName):
            out.append((fieldName.decode("ascii").lower(), raw))
        else:
            out.append((None, raw))
    if header and not header.endswith(b"\r\n") and out:
        # The last line had no line end; do not invent one in the value.
        name, last = out[-1]
        out[-1] = (name, last[:-2])
    return out


def _unfold(raw: bytes) -> bytes:
    """
    The value of a raw field: after the colon, folding CRLFs removed
    (RFC 5322 §2.2.3), surrounding white space stripped.
    """
    value = raw.split(b":", 1)[1] if b":" in raw else raw
    return value.replace(b"\r\n", b"").strip(b" \t")


def headerValues(header: bytes, name: str) -> List[bytes]:
    """
    Every value of one header field, unfolded, in message order.

    @param header: a header block (as from L{splitHeader}).
    @param name: the field name, any case.
    @return: raw values, without the field name.
    """
    wanted = name.lower()
    return [_unfold(raw) for fieldName, raw in _fields(toCRLF(header)) if fieldName == wanted]


# -- MIME entities -------------------------------------------------------------


@define
class _Entity:
    """
    One MIME entity: a message, or a part of one.

    @ivar header: the raw header block, blank line included.
    @ivar body: the raw body octets (for a multipart part: the parts with
        their delimiters).
    @ivar children: the parts of a multipart entity.
    @ivar message: the encapsulated message of a message/rfc822 part.
    """

    header: bytes
    body: bytes
    fields: List[Tuple[Optional[str], bytes]]
    maintype: str
    subtype: str
    params: List[Tuple[str, str]]
    children: List["_Entity"] = field(factory=list)
    message: Optional["_Entity"] = None

    def get(self, name: str) -> Optional[str]:
        """
        The first value of a field, as latin-1 text (every octet kept), or
        C{None} if the field is missing.
        """
        for fieldName, raw in self.fields:
            if fieldName == name:
                return _unfold(raw).decode("latin-1")
        return None

    def param(self, name: str) -> Optional[str]:
        for key, value in self.params:
            if key.lower() == name:
                return value
        return None

    def encoding(self) -> str:
        value = self.get("content-transfer-encoding")
        return value.strip().lower() if value and value.strip() else "7bit"


_TYPE = re.compile(r"\s*([^\s/;()\"]+)\s*/\s*([^\s/;()\"]+)\s*(?:\(.*?\)\s*)?(;.*)?\Z", re.S)
_TOKEN_ONLY = re.compile(r"\s*([^\s;()\"]+)\s*(?:\(.*?\)\s*)?(;.*)?\Z", re.S)
_PARAM = re.compile(r';\s*([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)', re.S)
_CONTINUATION = re.compile(r"(.+?)\*(\d+)(\*?)\Z")


def _params(text: Optional[str]) -> List[Tuple[str, str]]:
    """
    Parse C{; name=value} parameters (RFC 2045 §5.1), merging RFC 2231
    continuations (C{name*0}, C{name*1*}) into one parameter (named
    C{name*} when its value is in RFC 2231 extended form).
    """
    if not text:
        return []
    out: List[Tuple[str, str]] = []
    pieces: dict = {}
    for match in _PARAM.finditer(text):
        name, value = match.group(1), match.group(2).strip()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1] if value.endswith('"') and len(value) > 1 else value[1:])
        cont = _CONTINUATION.match(name)
        if cont:
            key = cont.group(1).lower()
            if key not in pieces:
                pieces[key] = (cont.group(1), {}, len(out))
                out.append(("", ""))  # placeholder keeps the position
            pieces[key][1][int(cont.group(2))] = (value, bool(cont.group(3)))
            continue
        out.append((name, value))
    for baseName, segments, index in pieces.values():
        ordered = [segments[i] for i in sorted(segments)]
        extended = ordered[0][1]
        out[index] = (baseName + ("*" if extended else ""), "".join(v for v, _ in ordered))
    return out


def _contentType(value: Optional[str], default: Tuple[str, str]) -> Tuple[str, str, List[Tuple[str, str]]]:
    """
    Type, subtype (lower case) and parameters of a Content-Type value;
    RFC 2045 §5.2 defaults when it is missing or unusable.
    """
    if value is not None:
        match = _TYPE.match(value)
        if match:
            return match.group(1).lower(), match.group(2).lower(), _params(match.group(3))
    if default == ("text", "plain"):
        return "text", "plain", list(_DEFAULT_PARAMS)
    return default[0], default[1], []


def _multipartBodies(body: bytes, boundary: bytes) -> List[bytes]:
    """
    The parts of a multipart body (RFC 2046 §5.1.1): the CRLF before a
    delimiter belongs to the delimiter; preamble and epilogue are dropped; a
    missing close delimiter ends the last part at the end of the body.
    """
    text = b"\r\n" + body
    delimiter = re.compile(rb"\r\n--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r\n|\Z)")
    found = list(delimiter.finditer(text))
    parts = []
    for i, match in enumerate(found):
        if match.group(1):
            break
        start = match.end() + 2 if text.startswith(b"\r\n", match.end()) else match.end()
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        parts.append(text[start:max(start, end)])
    return parts


def _parse(data: bytes, default: Tuple[str, str] = ("text", "plain"), depth: int = 0) -> _Entity:
    """
    Parse an entity (data in CRLF form) and, recursively, its parts.
    """
    header, body = _split(data)
    fields = _fields(header)
    entity = _Entity(header, body, fields, *_contentType(None, default))
    entity.maintype, entity.subtype, entity.params = _contentType(entity.get("content-type"), default)
    if depth >= MAX_NESTING:
        return entity
    if entity.maintype == "multipart":
        boundary = entity.param("boundary")
        if not boundary:
            # RFC 2045 §5.2: a multipart without a boundary is unusable.
            entity.maintype, entity.subtype, entity.params = "text", "plain", list(_DEFAULT_PARAMS)
            return entity
        childDefault = ("message", "rfc822") if entity.subtype == "digest" else ("text", "plain")
        bodies = _multipartBodies(body, boundary.encode("latin-1"))
        # RFC 3501 §7.4.2 grammar needs one part at least: an empty text part
        # stands for none, as Dovecot does.
        entity.children = [_parse(b, childDefault, depth + 1) for b in bodies] or [_parse(b"\r\n", ("text", "plain"), depth + 1)]
    elif (entity.maintype, entity.subtype) == ("message", "rfc822") and entity.encoding() in ("7bit", "8bit", "binary"):
        entity.message = _parse(body, ("text", "plain"), depth + 1)
    return entity


def _lines(data: bytes) -> int:
    """
    Text lines in C{data}: CRLFs, plus one for a last line without one.
    """
    return data.count(b"\r\n") + (1 if data and not data.endswith(b"\r\n") else 0)


# -- ENVELOPE ------------------------------------------------------------------------

#: Dovecot's placeholders for the parts an address lacks, so that an
#: address is never mistaken for a group marker (which has a NIL host).
MISSING_MAILBOX = b"MISSING_MAILBOX"
MISSING_DOMAIN = b"MISSING_DOMAIN"

_SPECIALS = '<>@,;:."[]()\\'


def _addressTokens(text: str) -> List[Tuple[str, str, bool]]:
    """
    RFC 5322 tokens: C{(kind, text, spaceBefore)}, kind C{"w"} for a word
    (atom, quoted string unquoted, domain literal), C{"s"} for a special;
    comments are dropped.
    """
    out: List[Tuple[str, str, bool]] = []
    i, n, space = 0, len(text), False
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            space = True
            i += 1
        elif c == "(":
            depth = 0
            while i < n:
                if text[i] == "\\":
                    i += 2
                    continue
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
                if depth == 0:
                    break
            space = True
        elif c == '"':
            j, buf = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            out.append(("q", "".join(buf), space))
            i, space = j + 1, False
        elif c == "[":
            j = text.find("]", i)
            j = n - 1 if j < 0 else j
            out.append(("w", text[i : j + 1], space))
            i, space = j + 1, False
        elif c in "<>@,;:.":
            out.append(("s", c, space))
            i, space = i + 1, False
        else:
            j = i
            while j < n and text[j] not in " \t\r\n" and text[j] not in _SPECIALS:
                j += 1
            j = max(j, i + 1)
            out.append(("w", text[i:j], space))
            i, space = j, False
    return out


def _join(tokens: Sequence[Tuple[str, str, bool]], spaces: bool) -> str:
    out = []
    for kind, text, space in tokens:
        if out and spaces and space:
            out.append(" ")
        out.append(text)
    return "".join(out)


def _b(text: Optional[str]) -> Optional[bytes]:
    return None if text is None else text.encode("latin-1")


def _addrSpec(tokens: Sequence[Tuple[str, str, bool]]) -> Tuple[bytes, bytes]:
    at = max((i for i, t in enumerate(tokens) if t[:2] == ("s", "@")), default=-1)
    local = _join(tokens[:at] if at >= 0 else tokens, spaces=False)
    domain = _join(tokens[at + 1 :], spaces=False) if at >= 0 else ""
    return _b(local) or MISSING_MAILBOX, _b(domain) or MISSING_DOMAIN


def _phrase(tokens: Sequence[Tuple[str, str, bool]]) -> Optional[bytes]:
    return _b(_join(tokens, spaces=True)) or None


def addressList(value: bytes) -> Optional[list]:
    """
    An address list as RFC 3501 §7.4.2 ENVELOPE address structures:
    C{[name, adl, mailbox, host]} each; a group is C{[None, None, name,
    None]}, its members, then C{[None, None, None, None]}.

    @param value: a raw, unfolded header value (encoded words kept).
    @return: the addresses, or C{None} (NIL) if there are none.
    """
    tokens = _addressTokens(value.decode("latin-1"))
    out: list = []
    words: List[Tuple[str, str, bool]] = []
    inGroup = skipping = False
    i = 0
    while i < len(tokens):
        kind, text, _ = tokens[i]
        i += 1
        special = text if kind == "s" else None
        if special in (",", ";"):
            if words and not skipping:
                out.append([None, None, *_addrSpec(words)])
            words, skipping = [], False
            if special == ";" and inGroup:
                out.append([None, None, None, None])
                inGroup = False
        elif skipping:
            continue
        elif special == "<":
            name = _phrase(words)
            inner = []
            while i < len(tokens) and tokens[i][:2] != ("s", ">"):
                inner.append(tokens[i])
                i += 1
            i += 1
            adl = None
            if inner and inner[0][:2] == ("s", "@"):
                colon = next((k for k, t in enumerate(inner) if t[:2] == ("s", ":")), len(inner))
                adl = _b(_join(inner[:colon], spaces=False))
                inner = inner[colon + 1 :]
            out.append([name, adl, *_addrSpec(inner)])
            words, skipping = [], True
        elif special == ":" and not inGroup and not any(t[:2] == ("s", "@") for t in words):
            out.append([None, None, _phrase(words) or b"", None])
            words, inGroup = [], True
        else:
            words.append(tokens[i - 1])
    if words and not skipping:
        out.append([None, None, *_addrSpec(words)])
    if inGroup:
        out.append([None, None, None, None])
    return out or None


def _envelope(entity: _Entity) -> list:
    def raw(name: str) -> Optional[bytes]:
        value = entity.get(name)
        return None if value is None else value.encode("latin-1")

    def addresses(name: str) -> Optional[list]:
        value = raw(name)
        return None if value is None else addressList(value)

    sender = addresses("from")
    return [
        raw("date"),
        raw("subject"),
        sender,
        addresses("sender") or sender,  # RFC 3501 §7.4.2: default to From
        addresses("reply-to") or sender,
        addresses("to"),
        addresses("cc"),
        addresses("bcc"),
        raw("in-reply-to"),
        raw("message-id"),
    ]


def envelope(data: bytes) -> list:
    """
    The ENVELOPE of a message (RFC 3501 §7.4.2): date, subject, from,
    sender, reply-to, to, cc, bcc, in-reply-to, message-id.

    Only the header is read.  Values are raw (encoded words kept); a
    missing field is C{None}; sender and reply-to default to from.

    @param data: the message, or just its header block.
    @return: a list of ten values in the order above.
    """
    header, _ = splitHeader(data)
    return _envelope(_Entity(header, b"", _fields(header), "text", "plain", []))


def nestedList(items: Sequence[Value]) -> bytes:
    """
    ENVELOPE and BODYSTRUCTURE values (L{envelope}, L{bodyStructure}) as
    IMAP text, without the outer parentheses: what Twisted's
    C{collapseNestedLists} makes of them (C{bytes} quoted, or a literal when
    they hold CR or LF or are over 1000 octets; C{None} as NIL; numbers;
    lists in parentheses), without its per-item overhead.
    """
    out = []
    for item in items:
        if item is None:
            out.append(b"NIL")
        elif isinstance(item, (bytes, str)):
            if isinstance(item, str):
                item = item.encode("ascii")
            if b"\n" in item or b"\r" in item or len(item) > 1000:
                out.append(b"{%d}\r\n%b" % (len(item), item))
            elif b'"' in item or b"\\" in item:
                out.append(b'"' + item.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"')
            else:
                out.append(b'"' + item + b'"')
        elif isinstance(item, int):
            out.append(b"%d" % (item,))
        else:
            out.append(b"(" + nestedList(item) + b")")
    return b" ".join(out)


# -- BODY / BODYSTRUCTURE -------------------------------------------------------------


def _paramList(params: List[Tuple[str, str]]) -> Optional[list]:
    out: list = []
    for name, value in params:
        out += [name.upper().encode("latin-1"), value.encode("latin-1")]
    return out or None


def _disposition(entity: _Entity) -> Optional[list]:
    value = entity.get("content-disposition")
    match = _TOKEN_ONLY.match(value) if value else None
    if not match:
        return None
    return [match.group(1).upper().encode("latin-1"), _paramList(_params(match.group(2)))]


def _language(entity: _Entity) -> Optional[list]:
    value = entity.get("content-language")
    tags = [t.strip() for t in re.sub(r"\([^)]*\)", "", value).split(",")] if value else []
    return [t.encode("latin-1") for t in tags if t] or None


def _structure(entity: _Entity, extensible: bool) -> list:
    if entity.children:
        out: list = [_structure(child, extensible) for child in entity.children]
        out.append(entity.subtype.upper().encode("latin-1"))
        if extensible:
            out += [_paramList(entity.params), _disposition(entity), _language(entity), _b(entity.get("content-location"))]
        return out
    params = list(entity.params)
    if entity.maintype == "text" and entity.param("charset") is None:
        params.insert(0, ("charset", "us-ascii"))  # RFC 2045 §5.2 default
    out = [
        entity.maintype.upper().encode("latin-1"),
        entity.subtype.upper().encode("latin-1"),
        _paramList(params),
        _b(entity.get("content-id")),
        _b(entity.get("content-description")),
        entity.encoding().upper().encode("latin-1"),
        len(entity.body),
    ]
    if entity.message is not None:
        out += [_envelope(entity.message), _structure(entity.message, extensible), _lines(entity.body)]
    elif entity.maintype == "text":
        out.append(_lines(entity.body))
    if extensible:
        out += [_b(entity.get("content-md5")), _disposition(entity), _language(entity), _b(entity.get("content-location"))]
    return out


def bodyStructure(data: bytes, extensible: bool = True) -> list:
    """
    The BODYSTRUCTURE (or, with C{extensible=False}, the BODY) of a message
    (RFC 3501 §7.4.2), nested to any depth (L{MAX_NESTING} at most).

    A single part is C{[type, subtype, params, id, description, encoding,
    size]}, then C{lines} for C{text/*}, or C{envelope, body, lines} for
    C{message/rfc822}; then, if extensible, C{md5, disposition, language,
    location}.  A multipart is its parts, then the subtype, then, if
    extensible, C{params, disposition, language, location}.  Type, subtype,
    encoding and parameter names are upper case; C{text/*} parts without a
    charset get C{("CHARSET" "US-ASCII")}; sizes are octets of the CRLF
    form; lines count a last line without CRLF.

    @param data: the message.
    @param extensible: C{True} for BODYSTRUCTURE, C{False} for BODY.
    """
    return _structure(_parse(toCRLF(data)), extensible)


# -- BODY[section]<partial> -----------------------------------------------------------

_SECTION_TEXTS = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME")
_SECTION = re.compile(r"\s*([^\s(]*)\s*(?:\((.*)\))?\s*\Z", re.S)
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")


@frozen
class Section:
    """
    A parsed section spec (RFC 3501 §6.4.5).

    @ivar part: the part numbers, C{()} for the message itself.
    @ivar text: C{"HEADER"}, C{"HEADER.FIELDS"}, C{"HEADER.FIELDS.NOT"},
        C{"TEXT"}, C{"MIME"} or C{None} (the whole part).
    @ivar fields: the header names of C{HEADER.FIELDS[.NOT]}, as given.
    """

    part: Tuple[int, ...]
    text: Optional[str]
    fields: Tuple[str, ...] = ()

    def __str__(self) -> str:
        spec = ".".join([str(n) for n in self.part] + ([self.text] if self.text else []))
        if self.fields:
            spec += " (" + " ".join(self.fields) + ")"
        return spec


def parseSection(spec: Union[str, bytes]) -> Section:
    """
    Parse what is between the brackets of C{BODY[...]}.

    @raise SectionError: if C{spec} is not valid.
    """
    if isinstance(spec, bytes):
        spec = spec.decode("latin-1")
    match = _SECTION.match(spec)
    if not match:
        raise SectionError(f"bad section {spec!r}")
    head, fieldText = match.group(1), match.group(2)
    pieces = head.split(".") if head else []
    part: List[int] = []
    while pieces and re.fullmatch(r"[0-9]+", pieces[0]):
        number = pieces.pop(0)
        if len(number) > _MAX_PART_DIGITS or number.startswith("0"):
            raise SectionError(f"bad part number {number!r}")
        part.append(int(number))
    text = ".".join(pieces).upper() or None
    if text is not None and text not in _SECTION_TEXTS:
        raise SectionError(f"bad section {spec!r}")
    if text == "MIME" and not part:
        raise SectionError("MIME needs a part number")
    fields: Tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        if fieldText is None:
            raise SectionError(f"{text} needs a list of header names")
        fields = tuple(name.strip('"') for name in fieldText.split())
        if not fields or not all(_HEADER_NAME.match(name) for name in fields):
            raise SectionError(f"bad header list in {spec!r}")
    elif fieldText is not None:
        raise SectionError(f"unexpected header list in {spec!r}")
    return Section(tuple(part), text, fields)


def _locate(top: _Entity, part: Sequence[int]) -> Optional[_Entity]:
    """
    Follow part numbers (RFC 3501 §6.4.5): a multipart's parts are
    numbered from 1; a message/rfc822 part's numbers refer to the parts of
    its encapsulated message; a message that is not multipart has one
    part, 1, its body.
    """
    current, isMessage = top, True
    for number in part:
        if not isMessage and current.message is not None:
            current, isMessage = current.message, True
        if current.children:
            if number > len(current.children):
                return None
            current, isMessage = current.children[number - 1], False
        elif isMessage and number == 1:
            isMessage = False
        else:
            return None
    return current


def _headerFields(header: bytes, names: Sequence[str], keep: bool) -> bytes:
    wanted = {name.lower() for name in names}
    out = [
        raw if raw.endswith(b"\r\n") else raw + b"\r\n"
        for name, raw in _fields(header)
        if (name in wanted) == keep and (name is not None or not keep)
    ]
    return b"".join(out) + b"\r\n"  # RFC 3501 §6.4.5: blank line included


def section(data: bytes, spec: Union[str, bytes, Section]) -> bytes:
    """
    The octets of C{BODY[spec]}.

    A part that does not exist gives C{b""}: RFC 3501 lets the server send
    an empty string there, and clients handle it better than NIL.
    C{HEADER}, C{TEXT} and C{HEADER.FIELDS[.NOT]} after part numbers exist
    only for message/rfc822 parts.

    @param data: the message (bare LF accepted; the result is CRLF).
    @param spec: a section spec, or a parsed L{Section}.
    @raise SectionError: if C{spec} is malformed.
    """
    parsed = spec if isinstance(spec, Section) else parseSection(spec)
    data = toCRLF(data)
    if not parsed.part and parsed.text is None:
        return data
    top = _parse(data)
    entity = _locate(top, parsed.part)
    if entity is None:
        return b""
    if parsed.text is None:
        return entity.body
    if parsed.text == "MIME":
        return entity.header
    if parsed.part:
        if entity.message is None:
            return b""
        entity = entity.message
    if parsed.text == "HEADER":
        return entity.header
    if parsed.text == "TEXT":
        return entity.body
    return _headerFields(entity.header, parsed.fields, parsed.text == "HEADER.FIELDS")


def partial(data: bytes, start: int, length: int) -> bytes:
    """
    The C{<start.length>} slice of a section's octets (RFC 3501 §6.4.5): an
    origin past the end gives C{b""}.
    """
    if start < 0 or length < 0:
        raise SectionError("negative partial range")
    return data[start : start + length]


def bodyLabel(spec: Union[str, bytes, Section], start: Optional[int] = None) -> bytes:
    """
    The FETCH response label for a C{BODY[...]} or C{BODY.PEEK[...]}
    request (RFC 3501 §7.4.2): C{BODY[spec]}, and for a partial fetch
    C{<origin>} -- the origin octet only, never the length.  (Twisted's
    IMAP4Server gets this wrong and sends the whole message.)

    @param spec: the section spec.
    @param start: the origin octet of a partial fetch, or C{None}.
    """
    parsed = spec if isinstance(spec, Section) else parseSection(spec)
    label = b"BODY[" + str(parsed).encode("latin-1") + b"]"
    if start is not None:
        label += b"<%d>" % (start,)
    return label


def fetchBody(
    data: bytes, spec: Union[str, bytes, Section], start: Optional[int] = None, length: Optional[int] = None
) -> Tuple[bytes, bytes]:
    """
    Everything a FETCH of C{BODY[spec]<start.length>} answers: the label and
    the octets (only the requested slice for a partial fetch).

    @return: C{(label, octets)}.
    @raise SectionError: on a bad spec or a range without both ends.
    """
    parsed = spec if isinstance(spec, Section) else parseSection(spec)
    payload = section(data, parsed)
    if start is None:
        if length is not None:
            raise SectionError("partial length without origin")
        return bodyLabel(parsed), payload
    if length is None:
        raise SectionError("partial origin without length")
    return bodyLabel(parsed, start), partial(payload, start, length)


# -- decoded text, for SEARCH -----------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def _decodeBytes(data: bytes, charset: Optional[str]) -> str:
    try:
        return data.decode(charset or "utf-8", "replace")
    except LookupError:
        return data.decode("latin-1")


def _decodeWord(match: "re.Match[str]") -> str:
    charset = match.group(1).split("*", 1)[0]  # RFC 2231 §5 language suffix
    text = match.group(3).encode("latin-1", "replace")
    try:
        if match.group(2) in "bB":
            octets = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
        else:
            octets = quopri.decodestring(text.replace(b"_", b" "), header=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    return _decodeBytes(octets, charset)


def _rawText(raw: Union[bytes, str]) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")  # RFC 6532 raw UTF-8 headers
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def decodeHeader(raw: Union[bytes, str]) -> str:
    """
    A header value as text, for comparison: unfolded, RFC 2047 encoded
    words decoded (white space between adjacent ones dropped), raw 8-bit
    octets read as UTF-8 or else latin-1.  Undecodable words are kept as
    they are.
    """
    text = _rawText(raw).replace("\r\n", "").replace("\n", "")
    out, position, previous = [], 0, False
    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        if not (previous and not between.strip()):
            out.append(between)
        out.append(_decodeWord(match))
        position, previous = match.end(), True
    out.append(text[position:])
    return "".join(out)


def _decodedBody(entity: _Entity) -> str:
    encoding = entity.encoding()
    body = entity.body
    try:
        if encoding == "base64":
            body = binascii.a2b_base64(re.sub(rb"[^A-Za-z0-9+/]", b"", body) + b"==")
        elif encoding == "quoted-printable":
            body = quopri.decodestring(body)
    except (binascii.Error, ValueError):
        pass
    return _decodeBytes(body, entity.param("charset"))


def _texts(entity: _Entity) -> Iterator[str]:
    if entity.children:
        for child in entity.children:
            yield from _texts(child)
    elif entity.message is not None:
        yield headerText(entity.message.header)
        yield from _texts(entity.message)
    elif entity.maintype == "text":
        yield _decodedBody(entity)


def headerText(header: bytes) -> str:
    """
    A header block as decoded text (L{decodeHeader} on each field), for
    SEARCH TEXT.
    """
    return "\r\n".join(decodeHeader(raw) for _, raw in _fields(toCRLF(header)))


def bodyText(data: bytes) -> str:
    """
    The searchable text of a message's body: every C{text/*} part,
    transfer encoding (base64, quoted-printable) and charset decoded, and
    the headers and text of encapsulated messages.  Non-text parts
    (images, attachments of other types) are left out.

    @param data: the whole message (the Content-Type is needed).
    """
    return "\r\n".join(_texts(_parse(toCRLF(data))))
