"""
C{twistd mailhub} as a real child process: the plugin is found, and a bad
configuration or a busy port ends start-up with one line, not a traceback.
"""

from __future__ import annotations

import os
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.functional.support import PROJECT_ROOT, writeConfig

#: C{twistd} itself, run by this interpreter (the venv's C{twistd} script
#: does the same).
TWISTD = [
    "-c",
    "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; sys.exit(run())",
]


class TwistdTests(TestCase):
    """
    Run C{twistd} in a child process, from an empty directory, with this
    checkout on C{PYTHONPATH}.
    """

    timeout = 60

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.data = os.path.join(self.directory, "data")

    def twistd(self, *arguments: str) -> Deferred[tuple[bytes, bytes, int]]:
        """
        Run C{twistd ARGUMENTS}.

        @return: fires with its stdout, stderr and exit status.
        """
        path = os.environ.get("PYTHONPATH")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([PROJECT_ROOT] + ([path] if path else []))
        return getProcessOutputAndValue(
            sys.executable, [*TWISTD, *arguments], env=env, path=self.directory
        )

    async def test_helpListsPlugin(self) -> None:
        """
        C{twistd --help} lists the mailhub plugin.
        """
        out, err, status = await self.twistd("--help")
        self.assertEqual(status, 0, err)
        commands = [line.split()[0] for line in out.decode().splitlines() if line.startswith("    ")]
        self.assertIn("mailhub", commands)

    async def test_badConfigurationOneLine(self) -> None:
        """
        C{twistd -n mailhub --config BAD} where C{limits.message_size} is a
        string exits non-zero with one line on stderr naming the file and
        the key, and starts nothing: no log, no data directory.
        """
        config = writeConfig(
            os.path.join(self.directory, "bad.toml"), self.data, limits={"message_size": "big"}
        )
        out, err, status = await self.twistd("-n", "--pidfile=", "mailhub", "--config", config)
        self.assertNotEqual(status, 0)
        lines = err.decode().splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertIn(config, lines[0])
        self.assertIn("limits.message_size", lines[0])
        self.assertEqual(out, b"")
        self.assertFalse(os.path.exists(self.data))

    async def busyPortRun(self) -> tuple[bytes, bytes, int]:
        """
        Start C{twistd -n mailhub} on a port this test is listening on.
        """
        busy = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(busy.stopListening)
        listener = f"tcp:{busy.getHost().port}:interface=127.0.0.1"
        config = writeConfig(
            os.path.join(self.directory, "busy.toml"), self.data, listeners=[listener]
        )
        return await self.twistd("-n", "--pidfile=", "mailhub", "--config", config)

    async def test_busyPortExitsWithoutTraceback(self) -> None:
        """
        A listener whose port is in use ends the process with a non-zero
        status and a message naming the listener, not a traceback.
        """
        out, err, status = await self.busyPortRun()
        self.assertNotEqual(status, 0)
        both = out + err
        self.assertNotIn(b"Traceback", both)
        self.assertIn(b"listeners.smtp[0]", both)

    async def test_busyPortOneLineOnStderr(self) -> None:
        """
        That message is one line on stderr, as for a configuration error
        (and as L{mailhub.service.MailhubService.exitOnListenError} says).
        """
        out, err, status = await self.busyPortRun()
        self.assertNotEqual(status, 0)
        lines = err.decode().splitlines()
        self.assertEqual(len(lines), 1, f"stderr: {err!r}; stdout: {out!r}")
        self.assertIn("listeners.smtp[0]", lines[0])
        self.assertIn("in use", lines[0])

