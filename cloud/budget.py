"""The decoded-pixel budget: how many pixels all Infer calls together may hold decoded at once.

The per-request limits (max_pixels, max_side) bound one image; 40 concurrent requests each within
them still took the server to 7.2 GB. A request asks the budget for its image's pixels (known
from the header, before decoding) and gives them back when its model has finished with the image;
a request that cannot get them before its deadline (at most ``max_wait_s``) is refused with
RESOURCE_EXHAUSTED. Decoded images then never exceed 3 bytes x ``limit`` in all.
"""

from __future__ import annotations

import threading
import time


class PixelBudget:
    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"pixel budget must be positive, got {limit}")
        self.limit = limit
        self._in_use = 0
        self._cond = threading.Condition()

    @property
    def in_use(self) -> int:
        with self._cond:
            return self._in_use

    def acquire(self, pixels: int, timeout: float) -> bool:
        """Take ``pixels`` of the budget, waiting at most ``timeout`` seconds; False if it could not.

        Waiters are served as pixels come back, whichever fits first: a small image does not
        wait behind a large one.
        """
        if pixels > self.limit:
            return False
        end = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            while self._in_use + pixels > self.limit:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            self._in_use += pixels
            return True

    def release(self, pixels: int) -> None:
        with self._cond:
            self._in_use -= pixels
            self._cond.notify_all()
