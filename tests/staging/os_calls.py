"""A counting, optionally failing stand-in for an ``os`` function, for tests that must see which
copy path ran or make one fail mid-file."""

import errno
import os


class CountedCalls:
    """Calls ``real`` and counts the calls; the ``fail_on``-th (1-based) raises OSError with
    ``errno_number`` instead, as a kernel refusing or a disk failing mid-file would."""

    def __init__(self, real, *, fail_on: int | None = None, errno_number: int = errno.EIO):
        self.real, self.fail_on, self.errno_number, self.count = real, fail_on, errno_number, 0

    def __call__(self, *args):
        self.count += 1
        if self.count == self.fail_on:
            raise OSError(self.errno_number, os.strerror(self.errno_number))
        return self.real(*args)
