# -*- test-case-name: tests.smtp.test_server -*-
"""
Every SMTP reply mailhub gives, as a named constant with its RFC 3463
enhanced status code, so that each protocol maps outcomes to replies in one
place.
"""

from __future__ import annotations

from attrs import frozen

from mailhub.errors import DeliveryError


@frozen
class Reply:
    """
    An SMTP reply: code, enhanced status code, text (which may hold
    C{str.format} fields).
    """

    code: int
    enhanced: str
    text: str

    def format(self, **fields: object) -> "Reply":
        return Reply(self.code, self.enhanced, self.text.format(**fields))

    @classmethod
    def fromError(cls, error: DeliveryError) -> "Reply":
        return cls(error.code, error.enhanced, error.text)


# Connection
GREETING = Reply(220, "", "{host} ESMTP mailhub")
BYE = Reply(221, "2.0.0", "Bye")
TIMEOUT = Reply(421, "4.4.2", "{host} Error: timeout exceeded")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "{host} Error: too many errors")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "{host} Error: too many connections from your address")
SHUTTING_DOWN = Reply(421, "4.3.2", "{host} Service shutting down")
NOT_SMTP = Reply(421, "4.7.0", "{host} Error: this is an SMTP server")

# Commands
OK = Reply(250, "2.0.0", "Ok")
SENDER_OK = Reply(250, "2.1.0", "Ok")
RECIPIENT_OK = Reply(250, "2.1.5", "Ok")
QUEUED = Reply(250, "2.0.0", "Ok: queued as {queueId}")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
READY_FOR_TLS = Reply(220, "2.0.0", "Ready to start TLS")
CANNOT_VRFY = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
HELP = Reply(214, "2.0.0", "See RFC 5321")

# Errors of the client
LINE_TOO_LONG = Reply(500, "5.5.2", "Error: line too long")
UNRECOGNIZED = Reply(500, "5.5.2", "Error: command not recognized")
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Error: command not implemented")
SYNTAX = Reply(501, "5.5.4", "Syntax: {usage}")
BAD_SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax")
NEED_HELO = Reply(503, "5.5.1", "Error: send HELO/EHLO first")
NESTED_MAIL = Reply(503, "5.5.1", "Error: nested MAIL command")
NEED_MAIL = Reply(503, "5.5.1", "Error: need MAIL command")
NEED_RCPT = Reply(503, "5.5.1", "Error: need RCPT command")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "Error: no valid recipients")
TLS_ACTIVE = Reply(503, "5.5.1", "Error: TLS already active")
TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")
AUTH_UNAVAILABLE = Reply(503, "5.5.1", "Error: authentication not enabled")
UNKNOWN_PARAMETER = Reply(555, "5.5.4", "Unsupported option: {parameter}")
BAD_BODY = Reply(501, "5.5.4", "Bad BODY parameter: {value}")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed limit")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Error: too many recipients")

# Authentication (RFC 4954)
CHALLENGE = Reply(334, "", "{challenge}")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_FAILED = Reply(535, "5.7.8", "Error: authentication failed")
AUTH_TEMPORARY = Reply(454, "4.7.0", "Temporary authentication failure, try again later")
AUTH_NEEDS_TLS = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
TLS_REQUIRED = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
AUTH_ALREADY = Reply(503, "5.5.1", "Error: already authenticated")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "Error: MAIL transaction in progress")
AUTH_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")
AUTH_CANCELLED = Reply(501, "5.7.0", "Authentication aborted")
AUTH_MALFORMED = Reply(501, "5.5.2", "Error: {reason}")

# Failures of the server
LOCAL_ERROR = Reply(451, "4.3.0", "Error: queue file write error")
