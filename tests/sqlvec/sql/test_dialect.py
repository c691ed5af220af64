"""The sqlvec dialect, pinned case by case: this file is what catches a sqlglot upgrade."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.tokens import TokenType

from sqlvec.errors import SyntaxError_
from sqlvec.sql.dialect import (
    DISTANCES,
    L1_DISTANCE,
    NEG_INNER_PRODUCT,
    CosineDistance,
    HammingDistance,
    JaccardDistance,
    L1Distance,
    L2Distance,
    L2Normalize,
    NegativeInnerProduct,
    SqlVec,
    Subvector,
    VectorDims,
    VectorDistance,
    VectorNorm,
    parse,
    parse_one,
    to_sql,
)
from sqlvec.vectors import BIT_METRICS, Metric


def validate_identity(sql: str, write_sql: str | None = None) -> exp.Expr:
    """Parse, print back (as `write_sql`, default unchanged) and check the print re-parses equal."""
    tree = parse_one(sql)
    printed = to_sql(tree)
    assert printed == (write_sql or sql)
    assert parse_one(printed) == tree
    return tree


def select(sql: str) -> exp.Expr:
    """The first projection of a SELECT."""
    return parse_one(sql).selects[0]


# Round trips

IDENTITY = [
    # every operator
    "SELECT a <-> b",
    "SELECT a <=> b",
    "SELECT a <#> b",
    "SELECT a <+> b",
    # precedence, as PostgreSQL's "any other operator"
    "SELECT a <-> b + c",
    "SELECT a <-> b * 2",
    "SELECT x <=> y < 0.5",
    "SELECT (a <-> b) * 2",
    "SELECT 1 - (embedding <=> $1) AS similarity FROM items",
    "SELECT (embedding <#> $1) * -1 AS inner_product FROM items",
    "SELECT a <-> b <-> c",
    "SELECT a IS NOT DISTINCT FROM b",
    "SELECT a <=> b IS NOT DISTINCT FROM c",
    # queries the engine must plan
    "SELECT * FROM items ORDER BY embedding <-> $1 LIMIT 5",
    "SELECT embedding <-> '[1,2,3]' AS d FROM items ORDER BY d",
    "SELECT * FROM items WHERE embedding <=> $1 < 0.5",
    "SELECT * FROM items WHERE category = 'a' ORDER BY embedding <+> $1 LIMIT 10",
    "SELECT id FROM items ORDER BY embedding <#> '[1,2,3]' LIMIT 3",
    # other pgvector functions keep their names
    "SELECT INNER_PRODUCT(a, b)",
    "SELECT VECTOR_DIMS(v)",
    "SELECT VECTOR_NORM(v)",
    "SELECT L2_NORMALIZE(v)",
    "SELECT SUBVECTOR(v, 1, 3)",
    # types, DDL, settings
    "SELECT CAST(x AS VECTOR(3))",
    "CREATE TABLE items (id INT PRIMARY KEY, embedding VECTOR(3))",
    "CREATE INDEX IF NOT EXISTS idx ON items USING hnsw(embedding vector_cosine_ops)",
    "CREATE INDEX ON items USING hnsw(embedding vector_l2_ops) WITH (m=16, ef_construction=64)",
    "SET hnsw.ef_search = 100",
    # jsonb arrows live at the same precedence level and still work
    "SELECT meta -> 'a', meta ->> 'b' FROM items WHERE meta ->> 'c' = 'x'",
]


@pytest.mark.parametrize("sql", IDENTITY)
def test_identity(sql: str) -> None:
    validate_identity(sql)


NORMALIZED = [
    # the function forms of the distances normalize to the operators
    ("SELECT l2_distance(a, b)", "SELECT a <-> b"),
    ("SELECT cosine_distance(a, b)", "SELECT a <=> b"),
    ("SELECT l1_distance(a, b)", "SELECT a <+> b"),
    ("SELECT inner_product(a, b)", "SELECT INNER_PRODUCT(a, b)"),
    # other dialects' spellings are plain calls (PostgreSQL has no dot_product: 42883)
    ("SELECT dot_product(a, b)", "SELECT DOT_PRODUCT(a, b)"),
    ("SELECT a<#>b, a<+>b, a<->b, a<=>b", "SELECT a <#> b, a <+> b, a <-> b, a <=> b"),
    ("SELECT '[1,2,3]'::vector(3)", "SELECT CAST('[1,2,3]' AS VECTOR(3))"),
    ("SELECT '[1,2]'::vector::real[]", "SELECT CAST(CAST('[1,2]' AS VECTOR) AS REAL[])"),
    ("SELECT $1::vector", "SELECT CAST($1 AS VECTOR)"),
    (
        "CREATE TABLE items (id int, embedding vector(3))",
        "CREATE TABLE items (id INT, embedding VECTOR(3))",
    ),
    (
        "CREATE INDEX ON items USING hnsw (embedding vector_l2_ops) "
        "WITH (m = 16, ef_construction = 64)",
        "CREATE INDEX ON items USING hnsw(embedding vector_l2_ops) WITH (m=16, ef_construction=64)",
    ),
    (
        "CREATE INDEX IF NOT EXISTS idx ON items USING hnsw (embedding vector_cosine_ops)",
        "CREATE INDEX IF NOT EXISTS idx ON items USING hnsw(embedding vector_cosine_ops)",
    ),
    ("SET hnsw.ef_search TO 100", "SET hnsw.ef_search = 100"),
    # `<+` followed by something else than `>` is still less-than
    ("SELECT a <+1", "SELECT a < 1"),
]


@pytest.mark.parametrize(("sql", "write_sql"), NORMALIZED)
def test_normalized(sql: str, write_sql: str) -> None:
    validate_identity(sql, write_sql)


def test_registered_with_sqlglot() -> None:
    assert isinstance(Dialect.get_or_raise("sqlvec"), SqlVec)
    tree = sqlglot.parse_one("SELECT a <#> b", read="sqlvec")
    assert isinstance(tree.selects[0], NegativeInnerProduct)
    assert tree.sql(dialect="sqlvec") == "SELECT a <#> b"


# Nodes


@pytest.mark.parametrize("klass", DISTANCES)
def test_operator_builds_its_node(klass: type[VectorDistance]) -> None:
    node = select(f"SELECT emb {klass.metric.operator} q")
    assert type(node) is klass
    assert isinstance(node, VectorDistance)
    assert (node.this.name, node.expression.name) == ("emb", "q")


def test_one_node_per_metric() -> None:
    assert {klass.metric for klass in DISTANCES} == set(Metric) - BIT_METRICS
    assert {HammingDistance.metric, JaccardDistance.metric} == BIT_METRICS
    for klass, operator in ((HammingDistance, "<~>"), (JaccardDistance, "<%>")):
        assert type(select(f"SELECT b {operator} q")) is klass
    assert [klass.metric.operator for klass in DISTANCES] == ["<->", "<=>", "<#>", "<+>"]


@pytest.mark.parametrize(
    ("function", "klass"),
    [("l2_distance", L2Distance), ("cosine_distance", CosineDistance), ("l1_distance", L1Distance)],
)
def test_function_form_builds_the_operator_node(function: str, klass: type) -> None:
    node = select(f"SELECT {function}(emb, q)")
    assert type(node) is klass
    assert node == select(f"SELECT emb {klass.metric.operator} q")


def test_cosine_distance_is_ours_not_sqlglots() -> None:
    assert CosineDistance is not exp.CosineDistance
    assert not isinstance(select("SELECT cosine_distance(a, b)"), exp.CosineDistance)


@pytest.mark.parametrize(
    ("sql", "klass", "args"),
    [
        ("SELECT inner_product(a, b)", exp.DotProduct, {"this": "a", "expression": "b"}),
        ("SELECT vector_dims(v)", VectorDims, {"this": "v"}),
        ("SELECT vector_norm(v)", VectorNorm, {"this": "v"}),
        ("SELECT l2_normalize(v)", L2Normalize, {"this": "v"}),
        ("SELECT subvector(v, 2, 3)", Subvector, {"this": "v", "start": "2", "count": "3"}),
    ],
)
def test_function_nodes(sql: str, klass: type, args: dict[str, str]) -> None:
    node = select(sql)
    assert type(node) is klass
    assert {key: node.args[key].name for key in args} == args


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT l2_distance(a)",
        "SELECT cosine_distance(a, b, c)",
        "SELECT inner_product(a)",
        "SELECT vector_dims(a, b)",
        "SELECT subvector(v, 1)",
    ],
)
def test_wrong_argument_count_is_left_to_the_binder(sql: str) -> None:
    # An anonymous call reaches the binder, which reports 42883 like PostgreSQL.
    assert type(select(sql)) is exp.Anonymous


def test_planner_finds_distances_by_base_class() -> None:
    tree = parse_one("SELECT a <+> b FROM t WHERE c <=> d < 1 ORDER BY e <-> f LIMIT 2")
    found = {type(node): node.metric for node in tree.find_all(VectorDistance)}
    assert found == {L1Distance: Metric.L1, CosineDistance: Metric.COSINE, L2Distance: Metric.L2}


# Precedence: the tree shape, not only the text


def test_term_binds_tighter_than_distance() -> None:
    node = select("SELECT a <-> b + c")
    assert type(node) is L2Distance
    assert type(node.expression) is exp.Add


def test_factor_binds_tighter_than_distance() -> None:
    node = select("SELECT a <-> b * 2")
    assert type(node) is L2Distance
    assert type(node.expression) is exp.Mul


def test_distance_binds_tighter_than_comparison() -> None:
    node = select("SELECT x <=> y < 0.5")
    assert type(node) is exp.LT
    assert type(node.this) is CosineDistance
    where = parse_one("SELECT * FROM items WHERE embedding <=> $1 < 0.5").args["where"].this
    assert type(where) is exp.LT
    assert type(where.this) is CosineDistance


def test_distance_binds_tighter_than_equality_and_between() -> None:
    assert type(select("SELECT a <-> b = 1").this) is L2Distance
    assert type(select("SELECT a <#> b BETWEEN 0 AND 1").this) is NegativeInnerProduct


def test_distances_are_left_associative() -> None:
    node = select("SELECT a <-> b <+> c")
    assert type(node) is L1Distance
    assert type(node.this) is L2Distance


def test_parentheses_are_kept() -> None:
    node = select("SELECT (a <-> b) * 2")
    assert type(node) is exp.Mul
    assert type(node.this) is exp.Paren
    assert type(node.this.this) is L2Distance


def test_is_not_distinct_from_is_still_null_safe_eq() -> None:
    node = select("SELECT a IS NOT DISTINCT FROM b")
    assert type(node) is exp.NullSafeEQ
    assert to_sql(node) == "a IS NOT DISTINCT FROM b"
    assert type(select("SELECT a IS DISTINCT FROM b")) is exp.NullSafeNEQ
    assert type(select("SELECT a <=> b")) is CosineDistance


def test_json_arrows_unchanged() -> None:
    node = select("SELECT meta -> 'a' ->> 'b'")
    assert type(node) is exp.JSONExtractScalar
    assert type(node.this) is exp.JSONExtract


# Upstream behaviour this dialect exists to fix: if one of these starts failing, sqlglot changed
# and the dialect should be reviewed.


def test_upstream_postgres_still_misreads_pgvector() -> None:
    assert type(sqlglot.parse_one("SELECT a <=> b", read="postgres").selects[0]) is exp.NullSafeEQ
    assert type(sqlglot.parse_one("SELECT a <-> b", read="postgres").selects[0]) is exp.Distance
    for sql in ("SELECT a <#> b", "SELECT a <+> b"):
        with pytest.raises(ParseError):
            sqlglot.parse_one(sql, read="postgres")


# Tokens


@pytest.mark.parametrize(("text", "token_type"), [("<#>", NEG_INNER_PRODUCT), ("<+>", L1_DISTANCE)])
def test_borrowed_token_type_has_one_spelling(text: str, token_type: TokenType) -> None:
    tokenizer = SqlVec.Tokenizer
    spellings = [
        key
        for table in (tokenizer.KEYWORDS, tokenizer.SINGLE_TOKENS)
        for key, value in table.items()
        if value == token_type
    ]
    assert spellings == [text]
    assert [token.token_type for token in SqlVec().tokenize(f"a {text} b")] == [
        TokenType.VAR,
        token_type,
        TokenType.VAR,
    ]


@pytest.mark.parametrize("token_type", [NEG_INNER_PRODUCT, L1_DISTANCE])
def test_borrowed_token_type_unused_by_postgres(token_type: TokenType) -> None:
    assert token_type not in Postgres.Tokenizer.KEYWORDS.values()
    assert token_type not in Postgres.Tokenizer.SINGLE_TOKENS.values()
    for name in dir(Postgres.Parser):
        table = getattr(Postgres.Parser, name)
        if isinstance(table, (dict, set, frozenset)):
            assert token_type not in table, name


# Types


@pytest.mark.parametrize("klass", DISTANCES)
def test_distances_annotate_as_double(klass: type[VectorDistance]) -> None:
    tree = annotate_types(parse_one(f"SELECT a {klass.metric.operator} b"), dialect="sqlvec")
    assert tree.selects[0].type.this == exp.DType.DOUBLE


@pytest.mark.parametrize(
    ("sql", "dtype"),
    [
        ("SELECT l2_distance(a, b)", exp.DType.DOUBLE),
        ("SELECT inner_product(a, b)", exp.DType.DOUBLE),
        ("SELECT vector_norm(v)", exp.DType.DOUBLE),
        ("SELECT vector_dims(v)", exp.DType.INT),
        ("SELECT l2_normalize(v)", exp.DType.VECTOR),
        ("SELECT subvector(v, 1, 2)", exp.DType.VECTOR),
        ("SELECT '[1,2,3]'::vector(3)", exp.DType.VECTOR),
    ],
)
def test_function_types(sql: str, dtype: exp.DType) -> None:
    assert annotate_types(parse_one(sql), dialect="sqlvec").selects[0].type.this == dtype


# Statements and errors


def test_multiple_statements_split_on_semicolons_outside_literals() -> None:
    statements = parse("SELECT 'a;b'; SELECT $$c;d$$;\n; SELECT \"e;f\" FROM t;")
    assert [to_sql(s) for s in statements] == [
        "SELECT 'a;b'",
        "SELECT 'c;d'",
        'SELECT "e;f" FROM t',
    ]


def test_empty_input_has_no_statements() -> None:
    assert parse("") == []
    assert parse(" ; ;") == []


def test_parse_one_rejects_several_statements() -> None:
    with pytest.raises(SyntaxError_) as info:
        parse_one("SELECT 1; SELECT 2")
    assert info.value.sqlstate == "42601"


@pytest.mark.parametrize(
    ("sql", "message", "position"),
    [
        ("SELECT * FROM", "syntax error at end of input", 14),
        ("SELECT 1 +", "syntax error at end of input", 11),
        ("SELECT (1", "syntax error at end of input", 10),
        ("SELECT 1)", 'syntax error at or near ")"', 9),
        ("SELECT 1 +; SELECT 2", 'syntax error at or near ";"', 11),
        ("SELECT a b c FROM t", 'syntax error at or near "c"', 12),
        ("SELECT a FROM t\n  WHERE x = = 1", 'syntax error at or near "="', 29),
        ("SELECT 1; SELECT * FROM WHERE", 'syntax error at or near "WHERE"', 25),
        ("SELECT a <-> FROM t", 'syntax error at or near "FROM"', 14),
        ("SELECT 'abc", 'unterminated quoted string at or near "\'abc"', 8),
        ('SELECT "ab', 'unterminated quoted identifier at or near ""ab"', 8),
        ("SELECT $$ab", 'unterminated dollar-quoted string at or near "$$ab"', 8),
    ],
)
def test_syntax_errors(sql: str, message: str, position: int) -> None:
    with pytest.raises(SyntaxError_) as info:
        parse(sql)
    assert info.value.sqlstate == "42601"
    assert info.value.message == message
    assert info.value.position == position


def test_nested_array_constructors_parse_in_linear_time() -> None:
    """sqlglot tries `ARRAY[` as a type before backing off to the constructor, which doubled
    the work per level: 40 levels would not finish. The dialect never reads it as a type."""
    import threading

    depth = 40
    result: list[exp.Expr] = []
    worker = threading.Thread(target=lambda: result.append(
        parse_one("SELECT " + "ARRAY[" * depth + "1" + "]" * depth)), daemon=True)
    worker.start()
    worker.join(60)
    assert result, "nested ARRAY[] did not parse"
    node = result[0].expressions[0]
    for _ in range(depth):
        assert isinstance(node, exp.Array)
        node = node.expressions[0]
    assert node == exp.Literal.number(1)
    validate_identity("SELECT ARRAY[]::INT[]", "SELECT CAST(ARRAY[] AS INT[])")
    validate_identity("SELECT CAST(ARRAY[1] AS INT[])")


@pytest.mark.parametrize("sql", ["SELECT $1::int,$2::int", "SELECT $1,$2", "SELECT ($1||$2)",
                                 "SELECT f($1,$10)"])
def test_a_dollar_before_a_digit_is_a_parameter_not_a_dollar_quote(sql: str) -> None:
    """A dollar quote's tag cannot start with a digit: `$1::int,$` is not one."""
    tree = parse_one(sql)
    assert {p.name for p in tree.find_all(exp.Parameter)} >= {"1"}


@pytest.mark.parametrize("sql, text", [("SELECT $$a$1,$2$$", "a$1,$2"),
                                       ("SELECT $q$x$1$q$", "x$1"),
                                       ("SELECT $_1$y$_1$", "y")])
def test_dollar_quotes_still_quote(sql: str, text: str) -> None:
    assert parse_one(sql).expressions[0].name == text


def test_comment_is_null_removes_a_comment() -> None:
    """`COMMENT ON … IS NULL` (Alembic drops comments so) parses; NULL stays a value elsewhere."""
    tree = parse_one("COMMENT ON COLUMN s.t.c IS NULL")
    assert isinstance(tree, exp.Comment) and isinstance(tree.expression, exp.Null)
    assert parse_one("COMMENT ON TABLE t IS 'x'").expression == exp.Literal.string("x")
    assert isinstance(parse_one("SELECT NULL").expressions[0], exp.Null)
    with pytest.raises(SyntaxError_):
        parse_one("COMMENT ON TABLE t IS 1 + NULL")


@pytest.mark.parametrize("sql", [
    "SELECT id FROM t ORDER BY emb <-> ($1)",
    "SELECT id FROM t ORDER BY emb <-> (($1))",
    "SELECT id FROM t WHERE ((($1))) < id",
    "INSERT INTO t VALUES (($1), ($2))",
])
def test_parentheses_around_a_parameter_are_dropped(sql):
    tree = parse_one(sql)
    assert not [p for p in tree.find_all(exp.Paren) if isinstance(p.unnest(), exp.Parameter)]
    assert all(isinstance(p.parent, (exp.Binary, exp.Tuple, exp.Ordered))
               for p in tree.find_all(exp.Parameter))


def test_parentheses_around_an_expression_with_a_parameter_stay():
    tree = parse_one("SELECT ($1 + 1) * 2")
    assert isinstance(tree.find(exp.Mul).this, exp.Paren)
