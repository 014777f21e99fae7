"""One retry policy for every HTTP client in the project (the image collector, the Replicate
generator, the pool downloader): honour the server's ``Retry-After`` when it sends one, else
exponential backoff with jitter, capped. Kept free of any HTTP library so each client passes its
own header value in.
"""

import email.utils
import random
import time


def parse_retry_after(value, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 10.2.3: delay-seconds or an
    HTTP-date), or None when absent or unreadable. A date in the past gives 0."""
    if value is None:
        return None
    value = str(value).strip()
    if not value:
        return None
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        secs = when.timestamp() - (time.time() if now is None else now)
    if secs != secs:  # NaN
        return None
    return max(0.0, secs)


def retry_delay(attempt: int, retry_after=None, cap: float = 60.0, jitter: bool = True,
                rng: random.Random | None = None) -> float:
    """Seconds before retry number ``attempt`` (0-based): the server's ``Retry-After`` if readable
    (capped at 10x ``cap``, so a hostile header cannot park a run for a day), else
    min(cap, 2**attempt), times a jitter in [0.75, 1.25) so parallel clients do not retry in step."""
    told = parse_retry_after(retry_after)
    if told is not None:
        return min(told, 10 * cap)
    base = min(cap, 2.0 ** attempt)
    return base * (0.75 + 0.5 * (rng or random).random()) if jitter else base
