"""The one retry policy: Retry-After in both of RFC 9110's forms, else capped exponential backoff."""

import random
from email.utils import format_datetime
from datetime import datetime, timezone

from aidetect.retry import parse_retry_after, retry_delay


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("7") == 7.0 and parse_retry_after(" 2.5 ") == 2.5
    now = 1_800_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 120, timezone.utc), usegmt=True)  # "Fri, 15 Jan 2027 ... GMT"
    assert parse_retry_after(date, now=now) == 120.0
    assert parse_retry_after(format_datetime(datetime.fromtimestamp(now - 5, timezone.utc), usegmt=True), now=now) == 0.0
    for junk in (None, "", "soon", "nan", "-3"):
        assert parse_retry_after(junk) in (None, 0.0)
    assert parse_retry_after("nan") is None and parse_retry_after("soon") is None and parse_retry_after("-3") == 0.0


def test_delay_uses_the_header_else_capped_jittered_backoff():
    assert retry_delay(5, "3") == 3.0
    assert retry_delay(0, "999999", cap=10) == 100.0           # a hostile header is capped at 10x cap
    assert [retry_delay(a, jitter=False, cap=10) for a in range(6)] == [1, 2, 4, 8, 10, 10]
    rng = random.Random(0)
    got = [retry_delay(3, "garbage", cap=60, rng=rng) for _ in range(200)]
    assert all(6.0 <= d < 10.0 for d in got) and len(set(got)) > 100  # 8 s +-25%, not in lock step
