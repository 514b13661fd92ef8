"""
The C{twistd mailhub} plugin: a lazy service maker, nothing else.
"""

from twisted.application.service import ServiceMaker

mailhub = ServiceMaker(
    "mailhub",
    "mailhub.tap",
    "A mail server: SMTP, submission, POP3, IMAP4 over TLS, Maildir storage and relaying.",
    "mailhub",
)
