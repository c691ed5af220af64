"""sqlvec: a PostgreSQL-compatible SQL vector database."""

import os

# Arrow's C++ code allocates from its own default pool (mimalloc) whatever pool Python code
# sets: reading a Parquet segment leaves tens of MB of freed pages that mimalloc keeps
# resident, and that a forked worker inherits and never returns. The system allocator, which
# `Database.open` also sets for Python-level calls, hands them back with `malloc_trim`. Read
# once, when pyarrow is first imported, so it is set here, before any module imports it.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
