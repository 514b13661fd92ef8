"""
C{mailhub check-config}, run in-process through L{mailhub.cli.main}.
"""

from __future__ import annotations

import io
import os

from twisted.trial.unittest import TestCase

from mailhub.cli import main
from tests.functional.support import DOMAIN, HOSTNAME, OTHER_DOMAIN, writeConfig

LISTENER = "tcp:0:interface=127.0.0.1"


class CheckConfigTests(TestCase):
    """
    The operator's check of a configuration file.
    """

    def setUp(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.data = os.path.join(directory, "data")
        self.path = os.path.join(directory, "mailhub.toml")

    def run_(self, *arguments: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = main(["check-config", *arguments], out, err)
        return status, out.getvalue(), err.getvalue()

    def test_validConfiguration(self) -> None:
        """
        A valid file: status 0, the domains and the listener described,
        nothing on stderr, and nothing made on disk.
        """
        writeConfig(self.path, self.data, listeners=[LISTENER])
        status, out, err = self.run_("--config", self.path)
        self.assertEqual((status, err), (0, ""))
        self.assertIn(f"domains:       {DOMAIN}, {OTHER_DOMAIN}\n", out)
        self.assertIn(f"hostname:      {HOSTNAME}\n", out)
        self.assertIn(LISTENER, out)
        self.assertIn(self.path, out)
        self.assertFalse(os.path.exists(self.data))

    def test_badConfiguration(self) -> None:
        """
        A bad value: status 1, nothing on stdout, one line on stderr naming
        the file and the key.
        """
        writeConfig(self.path, self.data, limits={"message_size": "big"})
        status, out, err = self.run_("--config", self.path)
        self.assertEqual((status, out), (1, ""))
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertIn(self.path, lines[0])
        self.assertIn("limits.message_size", lines[0])

    def test_badListener(self) -> None:
        """
        A listener Twisted cannot parse is found without binding anything:
        status 1, one line naming the listener's key.
        """
        writeConfig(self.path, self.data, listeners=["nonsense:25"])
        status, out, err = self.run_("--config", self.path)
        self.assertEqual((status, out), (1, ""))
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertIn("listeners.smtp[0]", lines[0])
