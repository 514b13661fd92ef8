"""
The C{twistd mailhub} plugin: a lazy service maker, and the credential
checker factories (C{--auth=mailhub-file:PATH}, C{mailhub-http:URL}),
nothing else.
"""

from twisted.application.service import ServiceMaker

from mailhub.auth.strcred import fileCheckerFactory, httpCheckerFactory  # noqa: F401

mailhub = ServiceMaker(
    "mailhub",
    "mailhub.tap",
    "A mail server: SMTP, submission, POP3, IMAP4 over TLS, Maildir storage and relaying.",
    "mailhub",
)
