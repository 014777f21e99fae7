"""Fault injection for tests: deterministic kill points, not sleeps and luck.

    AIDETECT_FAULT=after_last_checkpoint@2 python train.py ...   # SIGKILL after the 2nd last.ckpt

``point(name)`` is called at the places where an interruption matters (after a checkpoint,
between writing a temp file and renaming it, between generated images...). With
``AIDETECT_FAULT=<name>[@<n>]`` set, the n-th time (default: the first) the process passes
``<name>`` it kills itself with SIGKILL: no cleanup, no finally blocks, as a power cut or a
pre-empted job would. Unset (always, outside tests), it costs one dictionary lookup.
"""

import os
import signal
from collections import Counter

_passed: Counter = Counter()


def point(name: str) -> None:
    spec = os.environ.get("AIDETECT_FAULT")
    if not spec:
        return
    want, _, nth = spec.partition("@")
    if want != name:
        return
    _passed[name] += 1
    if _passed[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
