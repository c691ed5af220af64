"""Index expressions: PostgreSQL's text for them (pg_get_indexdef and psql's \\d forms), the
default index names PostgreSQL derives from them, the immutability check, and the key types
vector indexes accept."""

from __future__ import annotations

import pytest
import sqlglot

from sqlvec.errors import SqlVecError
from sqlvec.sql import index_expressions as ix
from sqlvec.sql.dialect import SqlVec


def key(text: str):
    return sqlglot.parse_one(f"SELECT {text}", read=SqlVec).expressions[0]


@pytest.mark.parametrize("text, pretty, plain, column", [
    ("(embedding::halfvec(3))", "embedding::halfvec(3)", "(embedding)::halfvec(3)",
     "(embedding::halfvec(3))"),
    ("((embedding)::halfvec(3))", "embedding::halfvec(3)", "(embedding)::halfvec(3)",
     "(embedding::halfvec(3))"),
    ("CAST(embedding AS halfvec(3))", "embedding::halfvec(3)", "(embedding)::halfvec(3)",
     "(embedding::halfvec(3))"),
    ("(binary_quantize(embedding)::bit(3))", "binary_quantize(embedding)::bit(3)",
     "(binary_quantize(embedding))::bit(3)", "(binary_quantize(embedding)::bit(3))"),
    ("lower(category)", "lower(category)", "lower(category)", "lower(category)"),
])
def test_expressions_print_as_postgresql(text, pretty, plain, column):
    assert ix.deparse(key(text)) == pretty
    assert ix.deparse(key(text), pretty=False) == plain
    assert ix.column_text(key(text), pretty=True) == column


@pytest.mark.parametrize("text, name", [
    ("embedding::halfvec(3)", "embedding"), ("binary_quantize(embedding)::bit(3)",
                                             "binary_quantize"),
    ("lower(category)", "lower"), ("a + b", "expr")])
def test_default_names_as_postgresql_figures_them(text, name):
    assert ix.figure_name(key(text)) == name


def test_only_immutable_functions_may_appear():
    import sqlvec.execution.builtins  # noqa: F401  (the function catalog's declarations)

    ix.check_immutable(key("lower(category)"))
    for text in ("category || random()::text", "now()"):
        with pytest.raises(SqlVecError) as exc:
            ix.check_immutable(key(text))
        assert (exc.value.sqlstate, exc.value.message) == (
            "42P17", "functions in index expression must be marked IMMUTABLE")


def test_vector_key_types():
    assert ix.vector_key_type(key("embedding::halfvec(3)"), "vector") == "halfvec"
    assert ix.vector_key_type(key("binary_quantize(embedding)::bit(3)"), "vector") == "bit"
    assert ix.cast_dims(key("embedding::halfvec(3)")) == 3
    with pytest.raises(SqlVecError) as exc:
        ix.vector_key_type(key("l2_normalize(embedding)"), "vector")
    assert exc.value.sqlstate == "0A000"


def test_a_renamed_column_renames_the_expression():
    assert ix.renamed("(embedding)::halfvec(3)", "embedding", "emb") == (
        "emb::halfvec(3)", "(emb)::halfvec(3)")
