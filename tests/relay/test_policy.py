"""
Tests for L{mailhub.relay.policy}: the retry schedule, the lifetime, delay
warnings and the classification of outcomes.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from mailhub.relay.policy import DAY, HOUR, MINUTE, RetryPolicy
from mailhub.relay.values import FAILED, PENDING, SENT, Outcome, QueueEntry, QueuedRecipient

CREATED = 1_700_000_000.0


def checkTable(
    testCase: SynchronousTestCase, rows: Iterable[Any], check: Callable[[Any], None]
) -> None:
    """
    Call C{check(row)} for every row, and fail once at the end naming every
    row that failed (trial's C{subTest} stops at the first failure and does
    not say which).
    """
    failed = []
    rows = list(rows)
    for row in rows:
        try:
            check(row)
        except Exception as e:
            failed.append(f"{row!r}: {type(e).__name__}: {e}")
    if failed:
        testCase.fail(f"{len(failed)} of {len(rows)} rows failed:\n" + "\n".join(failed))


def entry(attempts: int = 0, warned: bool = False, states: tuple[str, ...] = (PENDING,)) -> QueueEntry:
    """
    A queue entry created at L{CREATED} with one recipient per state.
    """
    return QueueEntry(
        id="Q1",
        sender="alice@example.test",
        recipients=tuple(
            QueuedRecipient(f"r{i}@remote.test", state=state) for i, state in enumerate(states)
        ),
        created=CREATED,
        nextAttempt=CREATED,
        attempts=attempts,
        warned=warned,
    )


class DefaultsTests(SynchronousTestCase):
    """
    The defaults are DESIGN.md's "Retry" contract.
    """

    def test_defaults(self) -> None:
        policy = RetryPolicy()
        self.assertEqual(
            (policy.firstRetry, policy.factor, policy.maxRetry, policy.delayWarning, policy.lifetime),
            (300.0, 2.0, 1800.0, 4 * 3600.0, 5 * 86400.0),
        )

    def test_frozen(self) -> None:
        policy = RetryPolicy()
        self.assertRaises(AttributeError, setattr, policy, "lifetime", 1.0)

    def test_invalid(self) -> None:
        """
        Delays must be positive and finite, the factor at least 1.
        """
        rows = [
            {"firstRetry": 0},
            {"firstRetry": -1.0},
            {"maxRetry": float("inf")},
            {"lifetime": float("nan")},
            {"delayWarning": 0.0},
            {"factor": 0.5},
            {"factor": float("inf")},
            {"firstRetry": "300"},
        ]
        checkTable(self, rows, lambda kwargs: self.assertRaises(ValueError, RetryPolicy, **kwargs))

    def test_configurable(self) -> None:
        policy = RetryPolicy(firstRetry=60.0, factor=3.0, maxRetry=600.0, delayWarning=None, lifetime=DAY)
        self.assertEqual(
            [policy.retryDelay(n) for n in range(1, 6)], [60.0, 180.0, 540.0, 600.0, 600.0]
        )
        self.assertIsNone(policy.delayWarning)


class ScheduleTests(SynchronousTestCase):
    """
    L{RetryPolicy.nextAttempt}: 5, 10, 20, 30, 30 ... minutes, never past
    the lifetime.
    """

    def test_schedule(self) -> None:
        policy = RetryPolicy()
        now = CREATED + 1000.0
        rows = [
            (1, 5),
            (2, 10),
            (3, 20),
            (4, 30),
            (5, 30),
            (6, 30),
            (50, 30),
        ]
        checkTable(
            self,
            rows,
            lambda row: self.assertEqual(
                policy.nextAttempt(entry(row[0]), now), now + row[1] * MINUTE
            ),
        )

    def test_noAttemptYet(self) -> None:
        """
        An entry not tried yet is due at once.
        """
        self.assertEqual(RetryPolicy().nextAttempt(entry(0), CREATED + 5.0), CREATED + 5.0)

    def test_hugeAttempts(self) -> None:
        """
        A count of attempts that would overflow the exponent gives the cap.
        """
        policy = RetryPolicy()
        self.assertEqual(policy.retryDelay(10_000), 30 * MINUTE)
        self.assertEqual(policy.nextAttempt(entry(10_000), CREATED), CREATED + 30 * MINUTE)

    def test_factorOne(self) -> None:
        policy = RetryPolicy(factor=1.0)
        self.assertEqual([policy.retryDelay(n) for n in (1, 2, 10)], [300.0] * 3)

    def test_lifetimeEnd(self) -> None:
        """
        The last delay is cut short so that the last try happens when the
        lifetime ends; never before C{now}.
        """
        policy = RetryPolicy()
        end = CREATED + 5 * DAY
        rows = [
            (end - 31 * MINUTE, end - MINUTE),
            (end - 10 * MINUTE, end),
            (end - 1.0, end),
            (end, end),
            (end + 60.0, end + 60.0),
        ]
        checkTable(
            self, rows, lambda row: self.assertEqual(policy.nextAttempt(entry(10), row[0]), row[1])
        )
        self.assertEqual(policy.retryUntil(entry()), end)

    def test_wholeSchedule(self) -> None:
        """
        Following the schedule from the first attempt reaches the lifetime's
        end exactly, then expiry; every gap is at most C{maxRetry}.
        """
        policy = RetryPolicy(lifetime=3 * HOUR)
        current = entry()
        now = CREATED
        times = []
        while True:
            current = evolve(current, attempts=current.attempts + 1)
            times.append(now)
            if policy.expired(current, now):
                break
            now = policy.nextAttempt(current, now)
        gaps = [b - a for a, b in zip(times, times[1:])]
        self.assertEqual(gaps[:4], [5 * MINUTE, 10 * MINUTE, 20 * MINUTE, 30 * MINUTE])
        self.assertTrue(all(0 < gap <= 30 * MINUTE for gap in gaps))
        self.assertEqual(times[-1], CREATED + 3 * HOUR)
        self.assertEqual(len(times), 9)

    def test_expired(self) -> None:
        policy = RetryPolicy(lifetime=DAY)
        rows = [
            (0.0, False),
            (DAY - 0.001, False),
            (DAY, True),
            (2 * DAY, True),
        ]
        checkTable(
            self,
            rows,
            lambda row: self.assertEqual(policy.expired(entry(3), CREATED + row[0]), row[1]),
        )


class WarningTests(SynchronousTestCase):
    """
    L{RetryPolicy.shouldWarn}: once, after C{delayWarning}, while something
    is pending, unless switched off.
    """

    def test_table(self) -> None:
        on = RetryPolicy()
        off = RetryPolicy(delayWarning=None)
        early = RetryPolicy(delayWarning=MINUTE)
        rows = [
            # policy, age, warned, states, expected
            (on, 0.0, False, (PENDING,), False),
            (on, 4 * HOUR - 1, False, (PENDING,), False),
            (on, 4 * HOUR, False, (PENDING,), True),
            (on, 2 * DAY, False, (SENT, PENDING), True),
            (on, 4 * HOUR, True, (PENDING,), False),
            (on, 4 * HOUR, False, (SENT, FAILED), False),
            (on, 5 * DAY, False, (PENDING,), False),
            (off, 4 * HOUR, False, (PENDING,), False),
            (off, 4 * DAY, False, (PENDING,), False),
            (early, MINUTE, False, (PENDING,), True),
        ]

        def check(row: tuple[RetryPolicy, float, bool, tuple[str, ...], bool]) -> None:
            policy, age, warned, states, expected = row
            self.assertEqual(policy.shouldWarn(entry(2, warned, states), CREATED + age), expected)

        checkTable(self, rows, check)


class ClassifyTests(SynchronousTestCase):
    """
    L{RetryPolicy.classify}: sent, failed, or still pending.
    """

    def test_table(self) -> None:
        policy = RetryPolicy()
        rows = [
            (Outcome(250, "2.0.0 Ok", False), SENT),
            (Outcome(251, "2.1.5 forwarded", False), SENT),
            (Outcome(550, "5.1.1 unknown user", True, "mx.test", "5.1.1"), FAILED),
            (Outcome(554, "5.7.1 rejected", False), FAILED),
            (Outcome(0, "domain does not exist", True, "", "5.1.2"), FAILED),
            (Outcome(0, "null MX", True, "", "5.1.10"), FAILED),
            (Outcome(451, "4.7.1 greylisted", False), PENDING),
            (Outcome(421, "4.3.2 shutting down", False), PENDING),
            (Outcome(0, "connection refused", False), PENDING),
            (Outcome(0, "timeout", False), PENDING),
        ]
        checkTable(self, rows, lambda row: self.assertEqual(policy.classify(row[0]), row[1]))
