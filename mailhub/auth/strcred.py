# -*- test-case-name: tests.auth.test_strcred -*-
"""
The mailhub checkers as C{twisted.cred.strcred} checker factories, so a
checker is named by a string like any other Twisted one::

    mailhub-file:/var/lib/mailhub/users
    mailhub-http:https://auth.example.test/check

L{fileCheckerFactory} and L{httpCheckerFactory} provide L{ICheckerFactory}
and L{IPlugin}: re-exported from C{twisted/plugins/mailhub_plugin.py} they
are found by L{twisted.cred.strcred.makeChecker} and C{twistd --auth}.

This module is imported when Twisted scans its plugins, so it imports
nothing heavy: the checkers (treq, argon2) and the global reactor are
imported inside C{generateChecker}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.cred.credentials import IUsernamePassword
from twisted.cred.strcred import ICheckerFactory
from twisted.plugin import IPlugin
from zope.interface import implementer

if TYPE_CHECKING:
    from mailhub.auth.checkers import HTTPChecker, PasswordFileChecker


@implementer(ICheckerFactory, IPlugin)
class FileCheckerFactory:
    """
    Makes a L{PasswordFileChecker} over a users file (Dovecot
    C{passwd-file} format, hashed passwords), on the global reactor.
    """

    authType = "mailhub-file"
    authHelp = (
        "Check user names (mail addresses) and passwords against a mailhub\n"
        "users file: one 'address:{SCHEME}hash' a line (Dovecot passwd-file\n"
        "format; Argon2id, bcrypt and SHA-crypt hashes). The file is re-read\n"
        "when it changes; hashes are verified in the reactor's thread pool."
    )
    argStringFormat = "The path of the users file, like /var/lib/mailhub/users."
    credentialInterfaces = (IUsernamePassword,)

    def generateChecker(self, argstring: str = "") -> PasswordFileChecker:
        """
        @param argstring: the users file's path; it need not exist yet.
        @return: the checker.
        @raise ValueError: no path given.
        """
        if not argstring:
            raise ValueError("mailhub-file needs the path of the users file: mailhub-file:PATH")
        from twisted.internet import reactor

        from mailhub.auth.checkers import PasswordFileChecker
        from mailhub.auth.userfile import UserFile

        return PasswordFileChecker(UserFile(argstring), reactor)


@implementer(ICheckerFactory, IPlugin)
class HTTPCheckerFactory:
    """
    Makes an L{HTTPChecker} that asks a password service, on the global
    reactor, with the default timeout.
    """

    authType = "mailhub-http"
    authHelp = (
        "Check user names and passwords with an HTTPS password service: each\n"
        "login POSTs {\"username\": ..., \"password\": ...} as JSON to the URL.\n"
        "2xx accepts, 401 or 403 refuses, anything else (or no answer within\n"
        "5 seconds) is a temporary failure. Certificates are verified; plain\n"
        "http:// is allowed only to 127.0.0.0/8, ::1 or localhost."
    )
    argStringFormat = "The service's URL, like https://auth.example.test/check."
    credentialInterfaces = (IUsernamePassword,)

    def generateChecker(self, argstring: str = "") -> HTTPChecker:
        """
        @param argstring: the password service's URL.
        @return: the checker.
        @raise ValueError: the URL is missing, malformed, or C{http://} to
            an address that is not loopback.
        """
        if not argstring:
            raise ValueError("mailhub-http needs the password service's URL: mailhub-http:URL")
        from twisted.internet import reactor

        from mailhub.auth.checkers import HTTPChecker

        return HTTPChecker(argstring, reactor)


#: The C{mailhub-file} checker factory.
fileCheckerFactory = FileCheckerFactory()

#: The C{mailhub-http} checker factory.
httpCheckerFactory = HTTPCheckerFactory()
