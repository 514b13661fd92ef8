# -*- test-case-name: tests.test_logtext -*-
"""
The log as text, as twistd writes it, made cheaper for the lines mailhub
writes for every message.

twistd logs through L{twisted.logger.textFileLogObserver}: each event
becomes C{"TIME [SYSTEM] TEXT"}, its time formatted with the local
time-zone offset worked out afresh and its text rendered by a
L{string.Formatter} written in Python.  Two such lines per relayed message
cost about a tenth of the reactor's time under load.  L{formatClassicText}
writes the same lines, byte for byte, making the time once a second and
rendering a plain format with L{str.format_map}; any event it is not sure
of (a traceback, a flattened event, a call in a format, a format that does
not render) it leaves to Twisted's own formatter.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Callable, TextIO

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)


class ClassicText:
    """
    L{formatEventAsClassicLogText} with C{timeFormat}, faster for plain
    events (see the module's description).
    """

    def __init__(self, timeFormat: str = timeFormatRFC3339) -> None:
        self._timeFormat = timeFormat
        self._second: int | None = None
        self._stamp = ""

    def _time(self, when: float | None) -> str:
        if when is None:
            return formatTime(None)
        # The second that datetime.fromtimestamp (which Twisted's
        # formatTime uses) puts C{when} in: it rounds to the nearest
        # microsecond first.  The format has whole seconds, so every time
        # in that second reads the same, time-zone offset included.
        fraction, whole = math.modf(when)
        micro = round(fraction * 1e6)
        second = int(whole) + (1 if micro >= 1_000_000 else -1 if micro < 0 else 0)
        if second != self._second:
            self._stamp = formatTime(second, self._timeFormat)
            self._second = second
        return self._stamp

    def __call__(self, event: LogEvent) -> str | None:
        form = event.get("log_format")
        if type(form) is not str or "log_failure" in event or "log_flattened" in event:
            return self._twisted(event)
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
        elif type(system) is not str:
            return self._twisted(event)
        try:
            text = form.format_map(event)
        except Exception:
            # A call ("{f()}"), a missing field, a field that will not
            # format: Twisted's formatter says what it says about them.
            return self._twisted(event)
        if not text:
            return None
        line = f"{self._time(event.get('log_time'))} [{system}] {text}"
        return line.replace("\n", "\n\t") + "\n"

    def _twisted(self, event: LogEvent) -> str | None:
        return formatEventAsClassicLogText(event, formatTime=self._time)


def textObserver(outFile: TextIO, timeFormat: str = timeFormatRFC3339) -> ILogObserver:
    """
    An observer writing what C{textFileLogObserver(outFile, timeFormat)}
    would.
    """
    return FileLogObserver(outFile, ClassicText(timeFormat))


def observerForTwistd(twistdOptions: Any, stdout: TextIO | None = None) -> ILogObserver | None:
    """
    The observer to give twistd's application when twistd would log as
    text to standard output (C{-n} without C{--logfile}, or
    C{--logfile=-}): the same lines, faster.  C{None} (twistd's own) for
    anything else: a log file (with twistd's rotation), syslog, or an
    observer named with C{--logger}.

    @param twistdOptions: twistd's own options (the plugin's options'
        C{parent}), or C{None}.
    """
    if twistdOptions is None:
        return None
    get: Callable[[str], Any] = getattr(twistdOptions, "get", lambda key: None)
    if get("logger") or get("syslog"):
        return None
    logfile = get("logfile")
    if not get("nodaemon") or logfile not in (None, "", "-"):
        return None
    return textObserver(stdout if stdout is not None else sys.stdout)
