"""sqlvec: a PostgreSQL-compatible SQL vector database."""

import os
import sys
from types import ModuleType  # (not `import types`: the submodule sqlvec.types would shadow it)

# Arrow's C++ code allocates from its own default pool (mimalloc) whatever pool Python code
# sets: reading a Parquet segment leaves tens of MB of freed pages that mimalloc keeps
# resident, and that a forked worker inherits and never returns. The system allocator, which
# `Database.open` also sets for Python-level calls, hands them back with `malloc_trim`. Read
# once, when pyarrow is first imported, so it is set here, before any module imports it.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


class _NoPandas:
    """An import finder that makes `import pandas` fail while it is installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas":
            raise ModuleNotFoundError("pandas is not loaded in the server", name=name)


def keep_pandas_unloaded() -> None:
    """Make pyarrow stop looking for pandas in this process, without making pandas unimportable.

    pyarrow imports pandas (30 MB resident) the first time it converts Python values: once
    from Python (its pandas shim) and, until pandas has been imported, again from C++ on every
    conversion (to recognise pandas' NA/NaT objects). The server never passes pandas objects
    to pyarrow, so its processes call this before the engine converts anything: the shim's
    one look fails (pandas blocked for that call only), and the C++ look finds an empty
    stand-in module, records "no pandas sentinels" and never looks again. Afterwards
    `import pandas` and `Table.to_pandas()` work as usual; only pandas' NA/NaT values passed to
    `pyarrow.array` in this process would not be taken for nulls. Does nothing when pandas is
    already imported."""
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    blocker = _NoPandas()
    sys.meta_path.insert(0, blocker)
    try:
        pa.array([0])  # the shim's look: fails, and is never made again
    finally:
        sys.meta_path.remove(blocker)
    sys.modules["pandas"] = ModuleType("pandas")  # no NA, NaT, Timestamp...
    try:
        pa.array([0])  # the C++ look: succeeds on the stand-in, and is never made again
    finally:
        del sys.modules["pandas"]
