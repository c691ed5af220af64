"""Expressions (sqlglot trees) compiled into functions over Arrow columns.

`Compiler.compile(expression)` returns a `Value`: a function of a `Frame` (the input rows as an
Arrow table) plus the result's SQL type. Compilation is one dispatch table keyed by sqlglot
expression class (`core.HANDLERS`), filled by one module per family:

- `core`: `Compiler` (typing: coerce, unify, conditions; left-deep chains as loops), `Frame`,
  `CompileEnv`, the table itself and the helpers every family uses;
- `leaves`: columns (and system columns), literals, parameters;
- `casts`: CAST and `::`;
- `numeric`: arithmetic over numbers; `temporal`: over dates, times and intervals;
  `vector`: pgvector's distances and vector arithmetic;
- `predicates`: comparisons, AND/OR/NOT, IS, BETWEEN, IN, LIKE, regular expressions;
- `conditionals`: CASE, COALESCE, NULLIF, GREATEST, LEAST;
- `arrays`: ARRAY[...], subscripts, `||`;
- `subqueries`: scalar, EXISTS, IN and ARRAY subqueries;
- `json`: `->`, `->>` and the extract-path functions;
- `calls`: function calls, through the function catalog (`compile_call`).

Everything here is vectorized: pyarrow.compute for scalar logic, NumPy kernels for distances.
Correlated subqueries are the exception (evaluated per distinct outer value); uncorrelated ones
run once per statement.
"""

from sqlvec.execution.expressions import (  # noqa: F401  (each adds its handlers to HANDLERS)
    arrays,
    calls,
    casts,
    conditionals,
    json,
    json_path,
    leaves,
    numeric,
    predicates,
    subqueries,
    temporal,
    vector,
)
from sqlvec.execution.expressions.core import HANDLERS, CompileEnv, Compiler, Frame, constant

__all__ = ["HANDLERS", "CompileEnv", "Compiler", "Frame", "constant"]
