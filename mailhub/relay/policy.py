# -*- test-case-name: tests.relay.test_policy -*-
"""
When to try a queued message again, when to warn its sender that it is
late, and when to give up on it.

The policy is a pure value: it reads no clock.  The relay manager passes in
the reactor's C{seconds()} as C{now}, and asks, after each attempt:

    1. L{RetryPolicy.classify} for each recipient's L{Outcome}: sent,
       failed (bounce it now) or pending;
    2. if recipients are still pending, L{RetryPolicy.expired}: if C{True},
       they are bounced; otherwise it schedules L{RetryPolicy.nextAttempt};
    3. L{RetryPolicy.shouldWarn}: send a delay warning (once).

The defaults are DESIGN.md's "Retry" contract: first retry after 5 minutes,
then doubling, capped at 30 minutes between tries, a delay warning after
4 hours, give up after 5 days.
"""

from __future__ import annotations

import math
from typing import Literal

from attrs import Attribute, field, frozen

from mailhub.relay.values import Outcome, QueueEntry

MINUTE = 60.0
HOUR = 60 * MINUTE
DAY = 24 * HOUR

#: The default delay before the first retry.
FIRST_RETRY = 5 * MINUTE
#: The default growth of the delay from one retry to the next.
FACTOR = 2.0
#: The default cap on the delay between two tries.
MAX_RETRY = 30 * MINUTE
#: The default age at which the sender hears that the message is late.
DELAY_WARNING = 4 * HOUR
#: The default age at which the relay gives up and bounces.
LIFETIME = 5 * DAY

#: What L{RetryPolicy.classify} makes of an outcome: the recipient's new
#: state, one of L{mailhub.relay.values}' C{SENT}, C{FAILED}, C{PENDING}.
Classification = Literal["sent", "failed", "pending"]


def _positive(instance: object, attribute: Attribute, value: float) -> None:
    """
    An attrs validator: C{value} is a finite number greater than zero.
    """
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a positive number of seconds, not {value!r}")


def _positiveOrNone(instance: object, attribute: Attribute, value: float | None) -> None:
    if value is not None:
        _positive(instance, attribute, value)


def _factor(instance: object, attribute: Attribute, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 1):
        raise ValueError(f"{attribute.name} must be a number of at least 1, not {value!r}")


@frozen
class RetryPolicy:
    """
    The retry schedule of the relay queue.

    All times are seconds; C{now} and L{QueueEntry.created} are seconds
    since the epoch from the reactor's clock.

    @ivar firstRetry: the delay after the first attempt.
    @ivar factor: each further delay is this many times the one before.
    @ivar maxRetry: the longest delay between two tries.
    @ivar delayWarning: the age of a message at which its sender is told
        that it is still being retried, or C{None} for no warnings.
    @ivar lifetime: the age at which the relay gives up; the last try is
        made at that age.
    """

    firstRetry: float = field(default=FIRST_RETRY, validator=_positive)
    factor: float = field(default=FACTOR, validator=_factor)
    maxRetry: float = field(default=MAX_RETRY, validator=_positive)
    delayWarning: float | None = field(default=DELAY_WARNING, validator=_positiveOrNone)
    lifetime: float = field(default=LIFETIME, validator=_positive)

    def retryDelay(self, attempts: int) -> float:
        """
        The delay after attempt number C{attempts}, before the lifetime is
        taken into account: C{firstRetry * factor ** (attempts - 1)}, at
        most C{maxRetry}.

        @param attempts: how many attempts have been made.
        @return: seconds; C{0.0} when no attempt has been made yet.
        """
        if attempts < 1:
            return 0.0
        try:
            delay = self.firstRetry * self.factor ** (attempts - 1)
        except OverflowError:
            return self.maxRetry
        return min(delay, self.maxRetry)

    def retryUntil(self, entry: QueueEntry) -> float:
        """
        When the relay gives up on C{entry}: the time of its last try, and
        the C{Will-Retry-Until} of a delay warning (RFC 3464 §2.3.9).
        """
        return entry.created + self.lifetime

    def nextAttempt(self, entry: QueueEntry, now: float) -> float:
        """
        When to try C{entry} next, after attempt number C{entry.attempts}
        has been made (and failed for some recipients) at C{now}.

        The schedule never runs past the lifetime: the last delay is cut
        short so that the last try happens when the lifetime ends.  It is
        never before C{now}.

        @param entry: the queue entry, with C{attempts} already counting the
            attempt just made.
        @param now: the reactor's current time.
        @return: seconds since the epoch; C{now} if no attempt has been made.
        """
        latest = min(now + self.retryDelay(entry.attempts), self.retryUntil(entry))
        return max(now, latest)

    def expired(self, entry: QueueEntry, now: float) -> bool:
        """
        Whether C{entry}'s lifetime is over, so that its pending recipients
        are to be bounced instead of tried again.

        Ask after an attempt: the attempt scheduled at the lifetime's end
        (see L{nextAttempt}) is the last one, and is still made.

        @param entry: the queue entry.
        @param now: the reactor's current time.
        """
        return now >= self.retryUntil(entry)

    def shouldWarn(self, entry: QueueEntry, now: float) -> bool:
        """
        Whether to send the sender a delay warning now: warnings are on,
        none has been sent for C{entry}, it is at least C{delayWarning}
        old, some recipients are still pending, and it has not expired (a
        bounce is due instead).

        Whether the sender can be written to at all (the null sender
        C{<>} cannot) is L{mailhub.relay.bounce.shouldBounce}'s question.

        @param entry: the queue entry.
        @param now: the reactor's current time.
        """
        if self.delayWarning is None or entry.warned or not entry.pending:
            return False
        if self.expired(entry, now):
            return False
        return now - entry.created >= self.delayWarning

    def classify(self, outcome: Outcome) -> Classification:
        """
        The state a recipient takes after C{outcome}.

        @return: C{"sent"} for a 2xx reply; C{"failed"} when retrying cannot
            help (the outcome says so, or the remote answered 5xx);
            C{"pending"} otherwise (4xx, connection and DNS trouble).
        """
        if outcome.delivered:
            return "sent"
        # RFC 5321 §4.2.1: a 5yz reply is a permanent negative completion;
        # DESIGN.md: a 5xx from the remote bounces that recipient at once.
        if outcome.permanent or 500 <= outcome.code < 600:
            return "failed"
        return "pending"
