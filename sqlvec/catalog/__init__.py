"""The catalog: schemas, sequences, roles and settings (`catalog.py`, `settings.py`), the
function catalog (`functions.py`), and the virtual pg_catalog / information_schema tables
(`virtual.py`, the registry; `pg_catalog.py`, `pg_stat.py` and `information_schema.py`,
imported here so that the registry is complete; `objects.py`, the model they are built from)."""

from sqlvec.catalog import (  # noqa: F401  (register their tables)
    information_schema,
    pg_catalog,
    pg_stat,
)
