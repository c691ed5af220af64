"""The built-in functions: importing this module loads every module of the executor that
declares functions (catalog/functions.py), then marks the function catalog complete.

The engine imports it once at start (`Database`); nothing in the executor depends on it, so a
module that declares functions never imports another just to be loaded.
"""

from sqlvec.catalog import functions as F
from sqlvec.execution import (  # noqa: F401  (imported for their declarations)
    aggregates,
    catalog_functions,
    expressions,
    functions,
    session_functions,
    table_functions,
    type_functions,
    windows,
)

F.mark_loaded()
