"""Faults of the device under the storage engine, injected at the system-call boundary."""

from __future__ import annotations

import os


class FaultyDisk:
    """Makes the log's writes or fsyncs fail like a real device: a short write, then ENOSPC."""

    def __init__(self, monkeypatch) -> None:
        self.real_writev, self.real_fsync = os.writev, os.fsync
        self.real_fdatasync = os.fdatasync
        self.write_error: int | None = None
        self.fsync_error: int | None = None
        monkeypatch.setattr(os, "writev", self.writev)
        monkeypatch.setattr(os, "fsync", self.fsync)
        monkeypatch.setattr(os, "fdatasync", self.fdatasync)

    def writev(self, fd, buffers):
        if self.write_error is None:
            return self.real_writev(fd, buffers)
        first = bytes(buffers[0])
        if len(first) > 1:  # the device takes part of the data before it is full
            return self.real_writev(fd, [first[: len(first) // 2]])
        raise OSError(self.write_error, os.strerror(self.write_error))

    def fsync(self, fd):
        if self.fsync_error is not None:
            raise OSError(self.fsync_error, os.strerror(self.fsync_error))
        return self.real_fsync(fd)

    def fdatasync(self, fd):
        if self.fsync_error is not None:
            raise OSError(self.fsync_error, os.strerror(self.fsync_error))
        return self.real_fdatasync(fd)
