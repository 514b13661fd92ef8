"""
Tests for L{mailhub.logtext}: the same lines as Twisted's text observer.
"""

from __future__ import annotations

import io
import os
import time

from hypothesis import given, strategies as st
from twisted.application.service import Application, IServiceCollection, MultiService
from twisted.logger import (
    ILogObserver,
    LogLevel,
    formatEventAsClassicLogText,
    formatTime,
    textFileLogObserver,
    timeFormatRFC3339,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mailhub import logtext
from mailhub.logtext import ClassicText, observerForTwistd, textObserver


def twisted(event: dict) -> str | None:
    return formatEventAsClassicLogText(event, formatTime=lambda when: formatTime(when, timeFormatRFC3339))


class Thing:
    def __init__(self) -> None:
        self.name = "thing"

    def __repr__(self) -> str:
        return "<Thing>"

    def call(self) -> str:
        return "called"


def failure() -> Failure:
    try:
        1 / 0
    except ZeroDivisionError:
        return Failure()
    raise AssertionError("unreachable")


NOW = 1_790_000_000.25


class ClassicTextTests(SynchronousTestCase):
    """
    L{ClassicText} says exactly what Twisted's classic text says.
    """

    def setUp(self) -> None:
        self.format = ClassicText()
        tz = os.environ.get("TZ")
        self.addCleanup(self.setZone, tz)

    def setZone(self, zone: str | None) -> None:
        if zone is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = zone
        time.tzset()

    def assertSame(self, event: dict) -> None:
        self.assertEqual(self.format(dict(event)), twisted(dict(event)), event)

    def test_events(self) -> None:
        """
        Plain events, and every kind of event it leaves to Twisted.
        """
        base = {"log_time": NOW, "log_namespace": "mailhub.smtp.server.ESMTPServer", "log_level": LogLevel.info}
        thing = Thing()
        for changes in [
            {"log_format": "received id={queueId} size={size}", "queueId": "6B09", "size": 10240},
            {"log_format": "plain text"},
            {"log_format": "with {{braces}} and {x!r} {x!s:>6} {n:05d}", "x": "v", "n": 42},
            {"log_format": "attribute {t.name} item {d[k]} repr {t!r}", "t": thing, "d": {"k": 1}},
            {"log_format": "a call {t.call()}", "t": thing},
            {"log_format": "missing {nothing}"},
            {"log_format": "positional {0}"},
            {"log_format": "two\nlines {x}", "x": "and\na third"},
            {"log_format": ""},
            {"log_format": None},
            {"log_format": b"bytes {x}", "x": 1},
            {"log_format": "failed {x}", "x": 1, "log_failure": failure()},
            {"log_format": "system", "log_system": "pool-3"},
            {"log_format": "odd system", "log_system": 42},
            {"log_format": "no level", "log_level": None},
            {"log_format": "no time", "log_time": None},
            {"log_format": "no namespace", "log_namespace": None},
            {"log_format": "a bad field {x:d}", "x": "text"},
            {"log_format": "unicode {x}", "x": "Grüße"},
        ]:
            event = dict(base, **changes)
            event = {k: v for k, v in event.items() if v is not None or k in ("log_time", "log_format")}
            self.assertSame(event)
        self.assertSame({})
        self.assertSame({"log_format": "bare"})

    def test_plainIsItsOwn(self) -> None:
        """
        A plain event is formatted without Twisted's formatter, and the
        time is made once for a second's events.
        """
        calls = []
        self.patch(self.format, "_twisted", lambda event: calls.append(event))
        made = []
        self.patch(logtext, "formatTime", lambda when, form=None: made.append(when) or "T")
        for offset in (0.0, 0.1, 0.7, 1.2):
            line = self.format({"log_format": "id={x}", "x": 1, "log_time": NOW + offset, "log_namespace": "n"})
            self.assertEqual(line, "T [n#-] id=1\n")
        self.assertEqual(calls, [])
        self.assertEqual(made, [int(NOW), int(NOW) + 1])

    def test_timeZones(self) -> None:
        """
        The offset is the event's second's, in whatever zone is set, and
        a time is formatted in the second datetime rounds it to.
        """
        for zone in ("UTC", "Europe/Berlin", "America/St_Johns", "Asia/Kolkata"):
            self.setZone(zone)
            self.format = ClassicText()
            # Around a daylight-saving change in Berlin (2026-03-29 01:00 UTC).
            for when in (1774746000 - 1, 1774746000 - 0.0000004, 1774746000, 1774746000.9999996, NOW, -0.5, 0.0):
                self.assertSame({"log_format": "x", "log_time": when})

    @given(
        st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False),
        st.text(max_size=20),
        st.text(alphabet="abc{}!r:0>5", max_size=12),
    )
    def test_anything(self, when: float, value: str, form: str) -> None:
        """
        Any time, any value, any format string (most of them broken).
        """
        self.assertSame({"log_format": form, "log_time": when, "a": value, "b": 7, "c": [value]})

    def test_observerWrites(self) -> None:
        """
        L{textObserver} writes what C{textFileLogObserver} writes.
        """
        ours, theirs = io.StringIO(), io.StringIO()
        event = {"log_format": "hello {who}", "who": "world", "log_time": NOW, "log_namespace": "n", "log_level": LogLevel.warn}
        textObserver(ours)(dict(event))
        textFileLogObserver(theirs)(dict(event))
        self.assertEqual(ours.getvalue(), theirs.getvalue())
        self.assertTrue(ILogObserver.providedBy(textObserver(ours)))


class TwistdOptionsTests(SynchronousTestCase):
    """
    L{observerForTwistd} takes over only where twistd would write text to
    standard output.
    """

    def test_choices(self) -> None:
        out = io.StringIO()
        for options, expected in [
            ({"nodaemon": True, "logfile": None}, True),
            ({"nodaemon": True, "logfile": "-"}, True),
            ({"nodaemon": True, "logfile": ""}, True),
            ({"nodaemon": True, "logfile": "/var/log/mailhub.log"}, False),
            ({"nodaemon": False, "logfile": None}, False),
            ({"nodaemon": True, "logfile": None, "syslog": True}, False),
            ({"nodaemon": True, "logfile": None, "logger": "x.y"}, False),
        ]:
            observer = observerForTwistd(options, out)
            self.assertEqual(observer is not None, expected, options)
        self.assertIsNone(observerForTwistd(None))

    def test_application(self) -> None:
        """
        The service gives its observer to twistd's application, unless
        the application has one; it still joins the application.
        """
        from mailhub.service import MailhubService

        observer = textObserver(io.StringIO())
        for existing in (None, textObserver(io.StringIO())):
            application = Application("mailhub")
            if existing is not None:
                application.setComponent(ILogObserver, existing)
            service = MailhubService.__new__(MailhubService)
            MultiService.__init__(service)
            service.logObserver = observer
            service.setServiceParent(application)
            self.assertIs(application.getComponent(ILogObserver), existing or observer)
            self.assertIn(service, list(IServiceCollection(application)))
