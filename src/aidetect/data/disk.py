"""Images streamed from disk (``data.storage=disk``): for sets bigger than memory.

The decoded uint8 images of a split live in one raw file, row after row ([3, H, W] each),
written while decoding (never held whole in memory) and read a batch at a time with
``os.pread``. Not a memory map on purpose: mapped pages count towards the process's resident
memory as an epoch touches them, while pread goes through the page cache, which the kernel
shares between processes (DDP ranks, parallel sweep jobs) and drops under pressure. Each
rank reads only the rows its ``ShardSampler`` gives it.

Why a raw file rather than LitData or WebDataset shards: the data is already one fixed-size
uint8 array per split, random access by index is all training needs (shuffles stay exact and
seeded), and it needs no new dependency; a GenImage-scale set is one file per split.
"""

import os
import time
from pathlib import Path

import numpy as np
import torch

from aidetect.faults import point


class DiskImages:
    """uint8 images [N, 3, H, W] in a raw file; indexing reads the rows asked for."""

    def __init__(self, path: Path, count: int, shape, index=None):
        self.path, self.count, self.row_shape = Path(path), int(count), tuple(int(s) for s in shape)
        self.row_bytes = int(np.prod(self.row_shape))
        self.index = np.arange(self.count) if index is None else np.asarray(index, dtype=np.int64)
        self._fd, self._pid = None, None

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # one descriptor per process (workers, ranks)
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def __getstate__(self):  # picklable for DataLoader workers: the descriptor is reopened there
        return {**self.__dict__, "_fd": None, "_pid": None}

    @property
    def shape(self):
        return (len(self.index), *self.row_shape)

    def __len__(self):
        return len(self.index)

    def take(self, idx) -> "DiskImages":
        """A lazy subset (no reading)."""
        idx = torch.as_tensor(idx, dtype=torch.long).numpy()
        return DiskImages(self.path, self.count, self.row_shape, self.index[idx])

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, int):
            return self[[idx]][0]
        rows = self.index[idx] if isinstance(idx, slice) else self.index[torch.as_tensor(idx, dtype=torch.long).numpy()]
        out = np.empty((len(rows), self.row_bytes), dtype=np.uint8)
        fd = self._file()
        for k, r in enumerate(rows.tolist()):
            n = os.preadv(fd, [memoryview(out[k])], r * self.row_bytes)
            if n != self.row_bytes:
                raise OSError(f"{self.path}: short read at row {r} ({n} of {self.row_bytes} bytes)")
        return torch.from_numpy(out.reshape(len(rows), *self.row_shape))


def write_disk_cache(path: Path, decoded, total: int):
    """Stream ``decoded`` (an iterator of (index, uint8 [3,H,W] or None, md5, error)) into a raw
    file at ``path`` (atomically: a temp file renamed when complete). Returns
    (row_shape, kept indices, md5s, skipped (index, error))."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shape, kept, md5s, skipped = None, [], [], []
    t0 = time.perf_counter()
    try:
        with open(tmp, "wb") as f:
            for i, arr, md5, err in decoded:
                if err is not None:
                    skipped.append((i, err))
                    continue
                if shape is None:
                    shape = arr.shape
                elif arr.shape != shape:
                    from aidetect.data.images import MixedSizes
                    raise MixedSizes(f"image {i} is {arr.shape[2]}x{arr.shape[1]}, the first was {shape[2]}x{shape[1]}: "
                                     f"set data.image_size=[H,W] to bring every image to one size")
                f.write(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
                kept.append(i), md5s.append(md5)
            f.flush()
            os.fsync(f.fileno())
        point("before_rename")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return shape or (3, 1, 1), kept, md5s, skipped, time.perf_counter() - t0
