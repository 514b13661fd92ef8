"""
Tests for L{mailhub.auth.strcred}: the C{mailhub-file} and C{mailhub-http}
checker factories.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.cred import strcred
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.plugin import IPlugin
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface.verify import verifyObject

import mailhub
from mailhub.auth.checkers import HTTPChecker, PasswordFileChecker
from mailhub.auth.strcred import fileCheckerFactory, httpCheckerFactory
from mailhub.auth.userfile import UserFile

FACTORIES = (fileCheckerFactory, httpCheckerFactory)


class FactoryTests(SynchronousTestCase):
    """
    The factories provide L{strcred.ICheckerFactory} and L{IPlugin}, and
    make the right checkers.
    """

    def test_interfaces(self) -> None:
        """
        Both provide L{strcred.ICheckerFactory} and L{IPlugin}, for
        user names and passwords.
        """
        for factory in FACTORIES:
            self.assertTrue(verifyObject(strcred.ICheckerFactory, factory))
            self.assertTrue(verifyObject(IPlugin, factory))
            self.assertEqual(tuple(factory.credentialInterfaces), (IUsernamePassword,))
        self.assertEqual(
            [factory.authType for factory in FACTORIES], ["mailhub-file", "mailhub-http"]
        )

    def test_file(self) -> None:
        """
        C{mailhub-file:PATH} makes a L{PasswordFileChecker} over that file
        (which need not exist yet).
        """
        path = self.mktemp()
        checker = fileCheckerFactory.generateChecker(path)
        self.assertIsInstance(checker, PasswordFileChecker)
        self.assertTrue(verifyObject(ICredentialsChecker, checker))
        self.assertIsInstance(checker.users, UserFile)
        self.assertEqual(checker.users.path, path)
        self.assertFalse(os.path.exists(path))

    def test_http(self) -> None:
        """
        C{mailhub-http:URL} makes an L{HTTPChecker} for that URL.
        """
        checker = httpCheckerFactory.generateChecker("https://auth.example.test/check?x=1")
        self.assertIsInstance(checker, HTTPChecker)
        self.assertTrue(verifyObject(ICredentialsChecker, checker))
        self.assertEqual(checker.url, "https://auth.example.test/check?x=1")
        self.successResultOf(checker.close())

    def test_badArguments(self) -> None:
        """
        A missing path or URL, or a URL that would send passwords in the
        clear, is a L{ValueError}.
        """
        self.assertRaises(ValueError, fileCheckerFactory.generateChecker, "")
        for url in ("", "http://auth.example.test/check", "ftp://127.0.0.1/", "auth.example.test"):
            self.assertRaises(ValueError, httpCheckerFactory.generateChecker, url)

    def test_makeChecker(self) -> None:
        """
        L{strcred.makeChecker} splits the description at the first colon
        only, so URLs come through whole.
        """
        self.patch(strcred, "findCheckerFactories", lambda: list(FACTORIES))
        path = self.mktemp()
        checker = strcred.makeChecker("mailhub-file:" + path)
        self.assertIsInstance(checker, PasswordFileChecker)
        self.assertEqual(checker.users.path, path)
        checker = strcred.makeChecker("mailhub-http:http://127.0.0.1:8080/check")
        self.assertIsInstance(checker, HTTPChecker)
        self.assertEqual(checker.url, "http://127.0.0.1:8080/check")
        self.assertRaises(ValueError, strcred.makeChecker, "mailhub-http:http://auth.example.test/")
        self.assertRaises(ValueError, strcred.makeChecker, "mailhub-file")

    def test_plugins(self) -> None:
        """
        Once C{twisted/plugins/mailhub_plugin.py} re-exports the factories,
        Twisted's plugin system finds them by name.
        """
        from twisted.plugins import mailhub_plugin

        if not hasattr(mailhub_plugin, "fileCheckerFactory"):
            raise SkipTest("twisted/plugins/mailhub_plugin.py does not re-export the factories yet")
        self.assertIs(strcred.findCheckerFactory("mailhub-file"), fileCheckerFactory)
        self.assertIs(strcred.findCheckerFactory("mailhub-http"), httpCheckerFactory)
        checker = strcred.makeChecker("mailhub-file:" + self.mktemp())
        self.assertIsInstance(checker, PasswordFileChecker)

    def test_importIsLight(self) -> None:
        """
        Importing the factories (as Twisted's plugin scan does) imports
        neither the checkers, treq, argon2 nor the reactor.
        """
        root = os.path.dirname(os.path.dirname(os.path.abspath(mailhub.__file__)))
        code = (
            "import sys, mailhub.auth.strcred\n"
            "heavy = ['mailhub.auth.checkers', 'treq', 'argon2', 'twisted.internet.reactor']\n"
            "print(sorted(name for name in heavy if name in sys.modules))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
        )
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertEqual(result.stdout.strip(), "[]")
