"""Atomic writes, in one place: a reader, a resumed run or a kill never sees half a file.

Each helper writes a temp file beside the target (same folder, so the rename cannot cross
file systems), flushes it to disk, then renames it over the target in one step.
"""

import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


@contextmanager
def _replacing(path: Path):
    """A binary handle on a temp file that becomes `path` only if the block finishes."""
    from aidetect.faults import point

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # `--out outputs/audit/x.json` on a fresh checkout
    tmp = _tmp(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename, so a crash cannot leave an empty target
        point("before_rename")
        point(f"before_rename:{path.name}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> None:
    with _replacing(path) as f:
        f.write(data)


def save_figure(fig, path: Path, dpi: int = 110) -> None:
    """A matplotlib figure as a PNG, written atomically, and closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write(Path(path), buf.getvalue())


def write_json(path: Path, obj) -> None:
    atomic_write(Path(path), (json.dumps(obj, indent=2, default=str) + "\n").encode())


def torch_save(obj, path: Path) -> None:
    import torch

    with _replacing(path) as f:
        torch.save(obj, f)
