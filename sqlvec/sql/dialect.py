"""The `sqlvec` SQL dialect: PostgreSQL plus pgvector's operators and functions.

sqlglot's Postgres dialect gets pgvector wrong in three ways: `a <-> b` parses as the PostGIS
`exp.Distance` at multiplication precedence, `a <=> b` parses as `IS NOT DISTINCT FROM` (a silent
change of meaning), and `<#>` / `<+>` do not tokenize at all. This dialect fixes that the way
sqlglot's own dialects extend each other: by overriding class-level tables merged with
`{**Base.TABLE, ...}`, not by rewriting parser methods.

- One node per metric, all subclasses of `VectorDistance`, so the planner finds vector search with
  `expression.find_all(VectorDistance)` and reads `.metric`, `.this` and `.expression`.
- The function spellings `l2_distance`, `cosine_distance` and `l1_distance` build the same nodes
  as the operators (one form to plan); they are therefore printed back as operators.
- The operators sit at PostgreSQL's "any other operator" precedence: tighter than comparisons,
  looser than `+` and `*`.

Example:
    >>> to_sql(parse_one("SELECT * FROM items ORDER BY l2_distance(embedding, $1) LIMIT 5"))
    'SELECT * FROM items ORDER BY embedding <-> $1 LIMIT 5'

Always render through `to_sql` (or `dialect="sqlvec"`): sqlglot's default generator does not know
these nodes and raises `Unsupported expression type`.
"""

from __future__ import annotations

import re
import typing as t

from sqlglot import exp
from sqlglot.dialects.dialect import rename_func
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.parser import SENTINEL_NONE
from sqlglot.tokenizer_core import TokenizerCore
from sqlglot.tokens import Token, TokenType

from sqlvec.errors import SyntaxError_
from sqlvec.sql import literals
from sqlvec.vectors import Metric

if t.TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlglot.generator import Generator

__all__ = [
    "DISTANCES",
    "L1_DISTANCE",
    "BitDistance",
    "HammingDistance",
    "JaccardDistance",
    "NEG_INNER_PRODUCT",
    "CosineDistance",
    "L1Distance",
    "L2Distance",
    "L2Normalize",
    "NegativeInnerProduct",
    "SqlVec",
    "Subvector",
    "VectorDims",
    "VectorDistance",
    "VectorNorm",
    "parse",
    "parse_one",
    "to_sql",
]

# TokenType is a closed enum with no members for `<#>` and `<+>`, so borrow two that the Postgres
# grammar never emits: SingleStore's `::?` and ClickHouse's `.^` (only those dialects use them).
NEG_INNER_PRODUCT = TokenType.DCOLONQMARK
L1_DISTANCE = TokenType.DOTCARET
# pgvector's bit operators `<~>` (Hamming) and `<%>` (Jaccard): two more the grammar never emits.
HAMMING = TokenType.DCOLONDOLLAR
JACCARD = TokenType.DCOLONPERCENT
BIT_VARYING = TokenType.UINT256


# Expression nodes


class VectorDistance(exp.Expression, exp.Binary):
    """A pgvector distance operator. `exp.Expression` is needed too: `exp.Binary` is a trait."""

    metric: t.ClassVar[Metric]


class L2Distance(VectorDistance):
    """`a <-> b`, also `l2_distance(a, b)`: Euclidean distance."""

    metric = Metric.L2


class CosineDistance(VectorDistance):
    """`a <=> b`, also `cosine_distance(a, b)`: 1 - cosine similarity.

    Not sqlglot's `exp.CosineDistance` (a plain function node): ours is the operator.
    """

    metric = Metric.COSINE


class NegativeInnerProduct(VectorDistance):
    """`a <#> b`: -(a . b), negated so that smaller is nearer, like the other distances."""

    metric = Metric.IP


class L1Distance(VectorDistance):
    """`a <+> b`, also `l1_distance(a, b)`: taxicab distance."""

    metric = Metric.L1


class BitDistance(exp.Expression, exp.Binary):
    """A pgvector distance between bit strings: not a VectorDistance (no hnswlib metric), so the
    planner leaves `ORDER BY b <~> q LIMIT k` to an exact scan."""

    operator: t.ClassVar[str]


class HammingDistance(BitDistance):
    """`a <~> b`, also `hamming_distance(a, b)`: the number of differing bits."""

    operator = "<~>"
    metric = Metric.HAMMING


class JaccardDistance(BitDistance):
    """`a <%> b`, also `jaccard_distance(a, b)`: 1 - |a AND b| / |a OR b|."""

    operator = "<%>"
    metric = Metric.JACCARD


class VectorDims(exp.Expression, exp.Func):
    """`vector_dims(v)`: the number of dimensions."""

    arg_types = {"this": True}
    _sql_names = ["VECTOR_DIMS"]


class VectorNorm(exp.Expression, exp.Func):
    """`vector_norm(v)`: the Euclidean norm."""

    arg_types = {"this": True}
    _sql_names = ["VECTOR_NORM"]


class L2Normalize(exp.Expression, exp.Func):
    """`l2_normalize(v)`: `v` scaled to unit Euclidean norm."""

    arg_types = {"this": True}
    _sql_names = ["L2_NORMALIZE"]


class Subvector(exp.Expression, exp.Func):
    """`subvector(v, start, count)`: `count` elements from 1-based `start`."""

    arg_types = {"this": True, "start": True, "count": True}
    _sql_names = ["SUBVECTOR"]


DISTANCES: tuple[type[VectorDistance], ...] = (
    L2Distance,
    CosineDistance,
    NegativeInnerProduct,
    L1Distance,
)


def _exact(
    klass: type[exp.Expr], name: str, arity: int
) -> Callable[[Sequence[exp.Expr]], exp.Expr]:
    """Build `klass` from positional arguments, or an `exp.Anonymous` call on a wrong count.

    The anonymous call reaches the binder, which reports PostgreSQL's 42883 (no such function
    signature) instead of a syntax error or silently dropped arguments.
    """

    def build(args: Sequence[exp.Expr]) -> exp.Expr:
        if len(args) != arity:
            return exp.Anonymous(this=name, expressions=list(args))
        node = klass(**dict(zip(klass.arg_types, args)))
        # An operator node spelled as a call keeps the name PostgreSQL gives its column.
        node.meta["function_name"] = name
        return node

    return build


def _anonymous(name: str) -> Callable[[Sequence[exp.Expr]], exp.Expr]:
    def build(args: Sequence[exp.Expr]) -> exp.Expr:
        return exp.Anonymous(this=name, expressions=list(args))
    return build


def _operator_sql(self: Generator, expression: VectorDistance) -> str:
    return self.binary(expression, expression.metric.operator)


def _bit_operator_sql(self: Generator, expression: BitDistance) -> str:
    return self.binary(expression, expression.operator)


class _TokenizerCore(TokenizerCore):
    """PostgreSQL's rule for dollar quotes: the tag is an identifier (`$$`, `$body$`), so a `$`
    followed by a digit is a parameter. sqlglot takes `$1::int,$` as the tag of a quote."""

    __slots__ = ()

    def _scan_string(self, start: str) -> bool:
        if start == "$" and self._peek.isdigit():  # `$1`: a parameter, as sqlglot reads `$1 `
            self._add(self.heredoc_string_alternative)
            return True
        return super()._scan_string(start)


class SqlVec(Postgres):
    """PostgreSQL with pgvector. Registered as "sqlvec" by sqlglot's dialect metaclass."""

    # Subscripts stay as written (1-based): sqlglot would shift `a[2]` to 0-based only where
    # it can infer the operand is an array, which makes the meaning depend on inference.
    INDEX_OFFSET = 0

    EXPRESSION_METADATA = {
        **Postgres.EXPRESSION_METADATA,
        **{klass: {"returns": exp.DType.DOUBLE} for klass in DISTANCES},
        exp.DotProduct: {"returns": exp.DType.DOUBLE},
        VectorNorm: {"returns": exp.DType.DOUBLE},
        VectorDims: {"returns": exp.DType.INT},
        L2Normalize: {"returns": exp.DType.VECTOR},
        Subvector: {"returns": exp.DType.VECTOR},
    }

    class Tokenizer(Postgres.Tokenizer):
        # `<->` (LR_ARROW) and `<=>` (NULLSAFE_EQ) already tokenize; the parser remaps them.
        # `oid`, `regclass`, ... are plain type names here (sqlglot's OBJECT_IDENTIFIER tokens
        # cannot take `[]`, and catalog queries write `$1::oid[]`).
        KEYWORDS = {
            **{k: v for k, v in Postgres.Tokenizer.KEYWORDS.items()
               if v != TokenType.OBJECT_IDENTIFIER},
            "<#>": NEG_INNER_PRODUCT,
            "<+>": L1_DISTANCE,
            "<~>": HAMMING,
            "<%>": JACCARD,
            # `bit varying`: a type token PostgreSQL's grammar never emits stands for varbit
            # (binder.py maps it; the generator prints VARBIT).
            "BIT VARYING": BIT_VARYING,
        }

        def _init_core(self) -> TokenizerCore:
            core = super()._init_core()
            core.__class__ = _TokenizerCore  # same slots: only `_scan_string` differs
            return core

    class Parser(Postgres.Parser):
        # ALTER TABLE ... ADD CHECK (...): an unnamed table constraint, as in PostgreSQL.
        ADD_CONSTRAINT_KEYWORDS = {"CHECK"}

        def _parse_insert(self) -> exp.Expr:
            """INSERT, with PostgreSQL's `OVERRIDING {SYSTEM | USER} VALUE` after the target
            kept as the statement's `overriding` ("SYSTEM" or "USER")."""
            self._overriding = None
            insert = super()._parse_insert()
            if self._overriding is not None and isinstance(insert, exp.Insert):
                insert.set("overriding", exp.var(self._overriding))
            return insert

        def _parse_insert_table(self) -> exp.Expr | None:
            this = super()._parse_insert_table()
            if self._match_text_seq("OVERRIDING"):
                kind = self._match_texts(("SYSTEM", "USER")) and self._prev.text.upper()
                if not kind or not self._match_text_seq("VALUE"):
                    self.raise_error("Expected OVERRIDING SYSTEM VALUE or OVERRIDING USER VALUE")
                if self._match_text_seq("DEFAULT", "VALUES", advance=False):
                    self.raise_error("OVERRIDING does not go with DEFAULT VALUES", self._curr)
                self._overriding = kind
            return this

        def _parse_key_constraint_options(self) -> list[str]:
            """A foreign key's options, with PostgreSQL's column list after `ON DELETE SET
            NULL` / `SET DEFAULT`: kept in the option's text (`ON DELETE SET NULL (a, b)`)."""
            options = []
            while True:
                part = super()._parse_key_constraint_options()
                if not part:
                    break
                options.extend(part)
                if not (part[-1].endswith(" SET NULL") or part[-1].endswith(" SET DEFAULT")) \
                        or not self._match(TokenType.L_PAREN, advance=False):
                    break
                self._advance()
                names = self._parse_csv(self._parse_id_var)
                self._match_r_paren()
                options[-1] += " (" + ", ".join(
                    f'"{n.name}"' if n.args.get("quoted") else n.name.lower()
                    for n in names) + ")"
            return options

        def _parse_index_params(self) -> exp.IndexParameters:
            """sqlglot's, plus PostgreSQL's `NULLS [NOT] DISTINCT` after the columns of
            CREATE UNIQUE INDEX (recorded in the node's meta)."""
            using = (
                self._parse_var(any_token=True)
                if not self._match_text_seq("USING", "INDEX", "TABLESPACE", advance=False)
                and self._match(TokenType.USING)
                else None
            )
            columns = self._parse_wrapped_csv(self._parse_with_operator) \
                if self._match(TokenType.L_PAREN, advance=False) else None
            include = self._parse_wrapped_id_vars() if self._match_text_seq("INCLUDE") else None
            nulls_not_distinct = None
            if self._match_text_seq("NULLS", "NOT", "DISTINCT"):
                nulls_not_distinct = True
            elif self._match_text_seq("NULLS", "DISTINCT"):
                nulls_not_distinct = False
            partition_by = self._parse_partition_by()
            with_storage = self._match(TokenType.WITH) and self._parse_wrapped_properties()
            tablespace = (
                self._parse_id_var()
                if self._match_text_seq("USING", "INDEX", "TABLESPACE")
                or self._match_text_seq("TABLESPACE")
                else None
            )
            where = self._parse_where()
            on = self._parse_field() if self._match(TokenType.ON) else None
            params = self.expression(exp.IndexParameters(
                using=using, columns=columns, include=include, partition_by=partition_by,
                where=where, with_storage=with_storage, tablespace=tablespace, on=on))
            if nulls_not_distinct is not None:
                params.meta["nulls_not_distinct"] = nulls_not_distinct
            return params

        # `<=>` is cosine distance here; `IS NOT DISTINCT FROM` still builds exp.NullSafeEQ.
        EQUALITY = {k: v for k, v in Postgres.Parser.EQUALITY.items() if k != TokenType.NULLSAFE_EQ}

        # `<->` leaves the multiplication level (where sqlglot puts PostGIS's distance) ...
        FACTOR = {k: v for k, v in Postgres.Parser.FACTOR.items() if k != TokenType.LR_ARROW}

        # ... for the level between comparisons and `+`/`-`: PostgreSQL's "any other operator"
        # precedence, shared with its `#` XOR and the JSON arrows.
        BITWISE = {
            **Postgres.Parser.BITWISE,
            TokenType.LR_ARROW: L2Distance,
            TokenType.NULLSAFE_EQ: CosineDistance,
            NEG_INNER_PRODUCT: NegativeInnerProduct,
            L1_DISTANCE: L1Distance,
            HAMMING: HammingDistance,
            JACCARD: JaccardDistance,
        }

        # Calls are parsed by name (`exp.Anonymous`) and resolved against the function catalog
        # (catalog/functions.py), which knows PostgreSQL's names: sqlglot's classes for named
        # functions would also accept other dialects' spellings (`len`, `nvl`, `rand`) and
        # reshape arguments. Kept: pgvector's forms (the vector planner finds distances as
        # operator nodes), `ARRAY(...)`, and our `ALL (...)`.
        FUNCTIONS = {
            **{name: _anonymous(name.lower()) for name in Postgres.Parser.FUNCTIONS},
            "ARRAY": Postgres.Parser.FUNCTIONS["ARRAY"],
            # `x <> ALL ('{a,b}'::text[])`: sqlglot reads `ALL (...)` there as a function call.
            "ALL": lambda args: exp.All(this=args[0]) if len(args) == 1 else exp.Anonymous(
                this="ALL", expressions=args),
            "L2_DISTANCE": _exact(L2Distance, "l2_distance", 2),
            "COSINE_DISTANCE": _exact(CosineDistance, "cosine_distance", 2),
            "L1_DISTANCE": _exact(L1Distance, "l1_distance", 2),
            "HAMMING_DISTANCE": _exact(HammingDistance, "hamming_distance", 2),
            "JACCARD_DISTANCE": _exact(JaccardDistance, "jaccard_distance", 2),
            # pgvector's inner_product is the positive dot product, unlike `<#>`.
            "INNER_PRODUCT": _exact(exp.DotProduct, "inner_product", 2),
            "VECTOR_DIMS": _exact(VectorDims, "vector_dims", 1),
            "VECTOR_NORM": _exact(VectorNorm, "vector_norm", 1),
            "L2_NORMALIZE": _exact(L2Normalize, "l2_normalize", 1),
            "SUBVECTOR": _exact(Subvector, "subvector", 3),
        }

        # Only PostgreSQL's own call grammar (`SUBSTRING(s FROM 2 FOR 3)`, `TRIM(LEADING ...)`,
        # `EXTRACT(year FROM t)`, `POSITION(a IN b)`, `OVERLAY(...)`, CAST and the SQL/XML and
        # SQL/JSON forms) gets a parser of its own; sql/calls.py maps the classes these build
        # to the functions they call. `date_part`, `string_agg`, `decode`, ... are plain calls.
        FUNCTION_PARSERS = {k: v for k, v in Postgres.Parser.FUNCTION_PARSERS.items()
                            if k in ("CAST", "EXTRACT", "OVERLAY", "POSITION", "SUBSTRING", "TRIM",
                                     "NORMALIZE", "XMLELEMENT", "XMLTABLE", "JSON_OBJECT",
                                     "JSON_OBJECTAGG", "JSON_TABLE", "JSON_VALUE")}

        # `a -> 'k'` inside a call's arguments is the JSON operator, not a lambda.
        LAMBDAS = {k: v for k, v in Postgres.Parser.LAMBDAS.items() if k != TokenType.ARROW}

        # E'...' and U&'...' become plain string literals, decoded once from their source
        # text (literals.py): sqlglot's own decoding of E'...' differs from PostgreSQL's.
        STRING_PARSERS = {
            **Postgres.Parser.STRING_PARSERS,
            TokenType.BYTE_STRING: lambda self, token: self._escape_string(token),
            TokenType.UNICODE_STRING: lambda self, token: self._unicode_string(token),
        }
        NUMERIC_PARSERS = {k: v for k, v in Postgres.Parser.NUMERIC_PARSERS.items()
                           if k != TokenType.BYTE_STRING}
        PRIMARY_PARSERS = {**Postgres.Parser.PRIMARY_PARSERS, **STRING_PARSERS}

        def _escape_string(self, token: Token) -> exp.Expr:
            pieces = [self._quoted_text(token, 2)]
            # A constant goes on in the next quotes after white space with a newline.
            while self._curr and self._curr.token_type == TokenType.STRING and \
                    _NEWLINE.search(self.sql, self._prev.end + 1, self._curr.start):
                pieces.append(self._quoted_text(self._curr, 1))
                self._advance()
            return self.expression(exp.Literal.string(literals.escape_string(pieces)), token)

        def _unicode_string(self, token: Token) -> exp.Expr:
            escape = "\\"
            if self._match_text_seq("UESCAPE"):
                quoted = self._curr
                if quoted is None or quoted.token_type != TokenType.STRING:
                    self.raise_error("Expected a string after UESCAPE")
                self._advance()
                escape = literals.check_uescape(quoted.text, self.sql[quoted.start:quoted.end + 1],
                                                quoted.start + 1)
            raw, start = self._quoted_text(token, 3)
            return self.expression(
                exp.Literal.string(literals.unicode_string(raw, start, escape)), token)

        def _quoted_text(self, token: Token, prefix: int) -> tuple[str, int]:
            """A string token's text between its quotes as written, and where it starts
            (`prefix`: the characters before it, `E'` or `U&'` or `'`)."""
            start = token.start + prefix
            return self.sql[start:token.end], start

        def _parse_types(self, check_func: bool = False, schema: bool = False,
                         allow_identifiers: bool = True,
                         with_collation: bool = False) -> exp.Expr | None:
            """Not a type at `ARRAY [`: that is the array constructor. sqlglot tries it as a
            type first, parsing its elements before backing off, which made nested
            constructors cost 2^depth (`ARRAY[ARRAY[...]]` 25 deep took minutes)."""
            if self._curr and self._curr.token_type == TokenType.ARRAY and self._next and \
                    self._next.token_type == TokenType.L_BRACKET:
                return None
            return super()._parse_types(check_func=check_func, schema=schema,
                                        allow_identifiers=allow_identifiers,
                                        with_collation=with_collation)

        def _parse_generated_as_identity(self) -> exp.Expr:
            """`GENERATED ... AS IDENTITY (options)`: the option list's text is kept whole in
            the constraint's `meta["sequence_options"]` (sqlglot reads only some options, in
            one order); sequence_ddl reads it as PostgreSQL does."""
            start = self._index
            by_default = self._match_text_seq("BY", "DEFAULT")
            if by_default or self._match_text_seq("ALWAYS"):
                if self._match(TokenType.ALIAS) and self._match_text_seq("IDENTITY") and \
                        self._match(TokenType.L_PAREN):
                    constraint = exp.GeneratedAsIdentityColumnConstraint(this=not by_default)
                    constraint.meta["sequence_options"] = self._text_to_closing_paren()
                    return self.expression(constraint)
            self._retreat(start)
            return super()._parse_generated_as_identity()

        def _text_to_closing_paren(self) -> str:
            """The statement's text up to the parenthesis closing one just read (consumed)."""
            tokens, depth = self._tokens, 1
            for close in range(self._index, len(tokens)):
                depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(
                    tokens[close].token_type, 0)
                if depth == 0:
                    break
            else:
                self.raise_error("Expecting )")
                return ""
            first = self._index
            self._retreat(close + 1)
            return self.sql[tokens[first].start:tokens[close - 1].end + 1] if close > first else ""

        def _parse_drop(self, exists: bool = False, kind: str | None = None) -> exp.Expr:
            """`DROP SEQUENCE [IF EXISTS] a, b [CASCADE | RESTRICT]`: several sequences, as
            PostgreSQL takes them (sqlglot reads a list of names only after TABLE and VIEW)."""
            if kind is not None or not self._curr or self._curr.text.upper() != "SEQUENCE":
                return super()._parse_drop(exists=exists, kind=kind)
            self._advance()
            if_exists = exists or self._parse_exists()
            names = self._parse_csv(lambda: self._parse_table_parts(schema=True))
            behaviour = self._match_texts(("CASCADE", "RESTRICT")) and self._prev.text.upper()
            return self.expression(exp.Drop(exists=if_exists, tables=names, kind="SEQUENCE",
                                            cascade=behaviour == "CASCADE",
                                            restrict=behaviour == "RESTRICT"))

        def _parse_comment(self, allow_exists: bool = True) -> exp.Expr:
            """`COMMENT ON ... IS NULL` removes a comment (as `IS ''` does): Alembic drops
            comments that way; sqlglot accepts only a string there."""
            self._in_comment = True
            try:
                return super()._parse_comment(allow_exists=allow_exists)
            finally:
                self._in_comment = False

        def _parse_string(self) -> exp.Expr | None:
            if getattr(self, "_in_comment", False) and self._match(TokenType.NULL):
                return exp.null()
            return super()._parse_string()

        def raise_error(self, message: str, token: Token = SENTINEL_NONE) -> None:
            """Record the offset PostgreSQL would point at, next to sqlglot's line/col.

            sqlglot falls back to the previous token when the statement ran out, so its
            line/col cannot tell `SELECT 1 +` (end of input) from `SELECT 1)`.
            """
            offending = token or self._curr
            if offending:
                offset = offending.start
            else:  # past the last token of this statement: "at end of input" or the `;`
                offset = self._prev.end + 1 if self._prev else 0
            try:
                super().raise_error(message, token)
            except ParseError as error:
                error.errors[-1]["offset"] = offset
                raise
            if self.errors:
                self.errors[-1]["offset"] = offset

    class Generator(Postgres.Generator):
        TRANSFORMS = {
            **Postgres.Generator.TRANSFORMS,
            **{klass: _operator_sql for klass in DISTANCES},
            HammingDistance: _bit_operator_sql, JaccardDistance: _bit_operator_sql,
            exp.DotProduct: rename_func("INNER_PRODUCT"),
        }
        TYPE_MAPPING = {**Postgres.Generator.TYPE_MAPPING, exp.DType.UINT256: "VARBIT"}


_DIALECT = SqlVec()
_NEWLINE = re.compile(r"[\n\r]")


def parse(sql: str) -> list[exp.Expr]:
    """Parse every statement of `sql` (empty statements are dropped).

    Raises:
        SyntaxError_: 42601, worded and positioned as PostgreSQL does
            (`syntax error at or near "X"` with a 1-based character position).
    """
    misplaced = _misplaced_start(sql, 0)
    if misplaced is not None:
        raise misplaced
    try:
        tokens = _DIALECT.tokenize(sql)
        statements = _DIALECT.parser().parse(tokens, sql)
    except ParseError as error:
        raise _syntax_error(sql, error) from None
    except TokenError as error:
        raise _token_error(sql, error) from None
    if len(statements) > 1:
        for start in _statement_starts(sql)[1:]:
            misplaced = _misplaced_start(sql, start)
            if misplaced is not None:
                raise misplaced
    out = [_bare_parameters(_unqualified_calls(statement))
           for statement in statements if statement is not None]
    for statement in out:
        _mark_operators(statement, tokens)
    return out


# Binary operators whose errors PostgreSQL positions at the operator (`operator does not
# exist: text = integer`), by the token type of their symbol.
_OPERATOR_TOKENS: dict[type, frozenset[TokenType]] = {
    exp.EQ: frozenset({TokenType.EQ}), exp.NEQ: frozenset({TokenType.NEQ}),
    exp.LT: frozenset({TokenType.LT}), exp.LTE: frozenset({TokenType.LTE}),
    exp.GT: frozenset({TokenType.GT}), exp.GTE: frozenset({TokenType.GTE}),
    exp.Add: frozenset({TokenType.PLUS}), exp.Sub: frozenset({TokenType.DASH}),
    exp.Mul: frozenset({TokenType.STAR}), exp.Div: frozenset({TokenType.SLASH}),
    exp.Mod: frozenset({TokenType.MOD}), exp.Pow: frozenset({TokenType.CARET}),
}


def _mark_operators(statement: exp.Expr, tokens: list[Token]) -> None:
    """Record in `meta["operator_start"]` where each binary operator's symbol starts: the
    first token of its kind between the end of its left operand and the start of its right
    one (sqlglot keeps positions for names and constants only)."""
    nodes = [n for n in statement.find_all(exp.Neg, *_OPERATOR_TOKENS)]
    if not nodes:
        return
    spans = _spans(statement)
    index = {token.start: i for i, token in enumerate(tokens)}
    for node in nodes:
        if isinstance(node, exp.Neg):  # the nearest minus sign before its operand
            first = _span_of(spans, node.this)[0]
            if first is not None and first in index:
                for i in range(index[first] - 1, -1, -1):
                    if tokens[i].token_type == TokenType.DASH:
                        node.meta["operator_start"] = tokens[i].start
                        break
            continue
        first = _span_of(spans, node.expression)[0]
        if first is None or first not in index:
            continue
        last = _span_of(spans, node.this)[1]
        after = last if last is not None else -1
        kinds = _OPERATOR_TOKENS[type(node)]
        found = None
        for i in range(index[first] - 1, -1, -1):
            token = tokens[i]
            if token.end <= after:
                break
            if token.token_type in kinds:
                found = token.start
        if found is not None:
            node.meta["operator_start"] = found


_Span = tuple[int | None, int | None]


def _spans(statement: exp.Expr) -> dict[int, _Span]:
    """(first start, last end) of the positions sqlglot kept in each node's subtree, by node
    id: one pass from the leaves up, so a chain of 10,000 operators costs linear time."""
    order = list(statement.walk())  # every parent before its children
    spans: dict[int, _Span] = {}
    for node in reversed(order):
        first = node.meta.get("start") if node._meta else None
        last = node.meta.get("end") if node._meta else None
        for child in node.iter_expressions():
            lo, hi = spans.get(id(child), (None, None))
            if lo is not None and (first is None or lo < first):
                first = lo
            if hi is not None and (last is None or hi > last):
                last = hi
        spans[id(node)] = (first, last)
    return spans


def _span_of(spans: dict[int, _Span], node: exp.Expr | None) -> _Span:
    return (None, None) if node is None else spans.get(id(node), (None, None))


def _is_builtin_qualified_call(node: exp.Expr) -> bool:
    return (isinstance(node, exp.Dot) and isinstance(node.this, exp.Identifier)
            and node.this.name.lower() == "pg_catalog"
            and isinstance(node.expression, (exp.Func, exp.Anonymous)))


def _unqualified_calls(statement: exp.Expr) -> exp.Expr:
    """`pg_catalog.f(x)` is `f(x)`: every built-in function lives in pg_catalog, which is always
    on the search path (pg_dump qualifies every call, aggregates included)."""
    if not any(_is_builtin_qualified_call(n) for n in statement.find_all(exp.Dot)):
        return statement
    return statement.transform(
        lambda n: n.expression if _is_builtin_qualified_call(n) else n, copy=False)


def _bare_parameters(statement: exp.Expr) -> exp.Expr:
    """`($1)` and `(($1))` are `$1`: parentheses around a parameter change nothing, and every
    rule that types a parameter by its context (`emb <-> $1`, `id = $1`, `VALUES ($1)`) then
    sees the parameter itself."""
    wrapped = [node for node in statement.find_all(exp.Paren)
               if isinstance(node.unnest(), exp.Parameter) and not isinstance(node.parent, exp.Paren)]
    for node in wrapped:
        node.replace(node.unnest())
    return statement


def parse_one(sql: str) -> exp.Expr:
    """Parse a string holding exactly one statement (a prepared statement's rule)."""
    statements = parse(sql)
    if len(statements) > 1:
        raise SyntaxError_("cannot insert multiple commands into a prepared statement")
    if not statements:
        raise SyntaxError_("empty query", position=1 if sql else None)
    return statements[0]


def to_sql(expression: exp.Expr, **options: object) -> str:
    """Render `expression` as sqlvec SQL (the operators, not the function forms); `options`
    are sqlglot's generator options (`normalize_functions="lower"` prints `count(*)`)."""
    return expression.sql(dialect=_DIALECT, **options)


# Errors


# The words a PostgreSQL statement can begin with (besides `(`): a statement starting with
# anything else is a syntax error at its first word, as in `selec 1`.
_STATEMENT_WORDS = frozenset("""
    ABORT ALTER ANALYSE ANALYZE BEGIN CALL CHECKPOINT CLOSE CLUSTER COMMENT COMMIT COPY CREATE
    DEALLOCATE DECLARE DELETE DISCARD DO DROP END EXECUTE EXPLAIN FETCH GRANT IMPORT INSERT
    LISTEN LOAD LOCK MERGE MOVE NOTIFY PREPARE REASSIGN REFRESH REINDEX RELEASE RESET REVOKE
    ROLLBACK SAVEPOINT SECURITY SELECT SET SHOW START TABLE TRUNCATE UNLISTEN UPDATE VACUUM
    VALUES WITH
""".split())
_BLANKS = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", re.S)
_WORD = re.compile(r"[^\W\d]\w*|\d[\w.]*")


def _misplaced_start(sql: str, start: int) -> SyntaxError_ | None:
    """The error for a statement (at `start` in `sql`) that begins with a word no statement
    begins with, or None."""
    at = _BLANKS.match(sql, start).end()  # type: ignore[union-attr]
    word = _WORD.match(sql, at)
    if word is None or word.group().upper() in _STATEMENT_WORDS:
        return None
    return SyntaxError_(f'syntax error at or near "{word.group()}"', position=at + 1)


def _statement_starts(sql: str) -> list[int]:
    return [0] + [token.end + 1 for token in _tokens(sql) if token.token_type == TokenType.SEMICOLON]


def _syntax_error(sql: str, error: ParseError) -> SyntaxError_:
    info = error.errors[0] if error.errors else {}
    offset = info.get("offset")
    if offset is None:
        offset = _offset_from_line_col(sql, info.get("line"), info.get("col"))
    if offset is None:
        return SyntaxError_("syntax error")
    for start in _statement_starts(sql):
        if start > offset:
            break
        misplaced = _misplaced_start(sql, start)
        if misplaced is not None:  # an earlier error in text order, as PostgreSQL reports
            return misplaced
    token = _token_at_or_after(sql, offset)
    if token is None:
        return SyntaxError_("syntax error at end of input", position=len(sql) + 1)
    text = sql[token.start : token.end + 1]
    return SyntaxError_(f'syntax error at or near "{text}"', position=token.start + 1)


def _offset_from_line_col(sql: str, line: int | None, col: int | None) -> int | None:
    """The start of the token whose last character is at sqlglot's 1-based (line, col)."""
    if not line or not col:
        return None
    lines = sql.split("\n")
    if line > len(lines):
        return None
    end = sum(len(text) + 1 for text in lines[: line - 1]) + col - 1
    for token in _tokens(sql):
        if token.end == end:
            return token.start
    return None


def _token_at_or_after(sql: str, offset: int) -> Token | None:
    for token in _tokens(sql):
        if token.end >= offset:
            return token
    return None


def _tokens(sql: str) -> list[Token]:
    try:
        return _DIALECT.tokenize(sql)
    except TokenError:
        return []


# sqlglot's tokenizer reports "Missing <delimiter> from <line>:<offset>" for unterminated quotes.
_MISSING = re.compile(r"Missing (?P<delimiter>\S+) from \d+:(?P<offset>\d+)")

_UNTERMINATED = {"'": "quoted string", '"': "quoted identifier"}


def _token_error(sql: str, error: TokenError) -> SyntaxError_:
    match = _MISSING.search(str(error.__cause__ or error))
    if match is None:
        return SyntaxError_("syntax error")
    delimiter = match["delimiter"]
    offset = int(match["offset"])
    what = _UNTERMINATED.get(delimiter[-1], "dollar-quoted string")
    return SyntaxError_(f'unterminated {what} at or near "{sql[offset:]}"', position=offset + 1)
