# -*- test-case-name: tests.test_tap -*-
"""
C{twistd mailhub}: command-line options, and the one place that fetches
the global reactor.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import IService
from twisted.cred import strcred
from twisted.python import usage

from mailhub import config as configuration
from mailhub.errors import ConfigError
from mailhub.logtext import observerForTwistd


class Options(usage.Options, strcred.AuthOptionMixin):
    """
    Options of C{twistd mailhub}.
    """

    synopsis = "[--config FILE] [--data DIR]"
    longdesc = (
        "Serve mail. With no options: the domain localhost on 127.0.0.1, SMTP on "
        "port 2525, data under ./mailhub-data/."
    )
    optParameters = [
        ["config", "c", None, "The configuration file (TOML); see etc/mailhub.toml."],
        ["data", "d", None, "The data directory (overrides the configuration's)."],
    ]


def loadConfig(options: Any) -> configuration.Config:
    """
    The configuration the options ask for.

    @raise ConfigError: it is not usable.
    """
    if options["config"]:
        return configuration.load(options["config"], dataDir=options["data"])
    config = configuration.embedded()
    if options["data"]:
        config = config.withDataDir(options["data"])
    return config


def makeService(options: Any) -> IService:
    """
    Build the service for twistd, or exit with one line naming what is
    wrong in the configuration.
    """
    from twisted.internet import reactor

    from mailhub.service import makeService as build

    try:
        # --auth=... (Twisted's strcred) replaces the configured checkers.
        service = build(loadConfig(options), reactor, checkers=options.get("credCheckers") or None)
    except ConfigError as e:
        sys.stderr.write(f"mailhub: {e}\n")
        raise SystemExit(1)
    service.exitOnListenError = True
    service.controlBySignal = True
    # The same log lines as twistd's, faster, where twistd would write them
    # to standard output.
    service.logObserver = observerForTwistd(getattr(options, "parent", None))
    return service
