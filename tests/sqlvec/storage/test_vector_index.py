"""The protocol's shared rules: WITH options as PostgreSQL's reloptions, settings as its GUCs
(messages checked against PostgreSQL 16: `fillfactor` and `geqo_threshold` give the same forms),
and the recall curve every index's calibration is built from."""

from __future__ import annotations

import numpy as np
import pytest

from sqlvec.errors import InvalidParameterValue
from sqlvec.storage.hnsw import HnswIndex, HnswParams
from sqlvec.storage.vector_index import IndexOption, IndexSetting, check_options, recall_curve
from sqlvec.vectors import Metric

LISTS = IndexOption("lists", 100, 1, 32768)
PROBES = IndexSetting("ivf.probes", 1, 1, 32768, "Number of lists to probe.")


@pytest.mark.parametrize(("value", "expected"), [
    (7, 7), ("7", 7), (" 9 ", 9), ("50.5", 50), ("51.5", 52), ("0x10", 16)])
def test_option_values_parse_as_postgresql_parse_int(value, expected):
    assert LISTS.parse(value) == expected


@pytest.mark.parametrize(("value", "message", "detail"), [
    ("abc", 'invalid value for integer option "lists": abc', None),
    (None, 'invalid value for integer option "lists": true', None),  # WITH (lists)
    (True, 'invalid value for integer option "lists": true', None),
    ("1e99", 'invalid value for integer option "lists": 1e99', None),
    (0, 'value 0 out of bounds for option "lists"', 'Valid values are between "1" and "32768".'),
    ("40000", 'value 40000 out of bounds for option "lists"',
     'Valid values are between "1" and "32768".'),
])
def test_option_errors_are_postgresql_reloption_errors(value, message, detail):
    with pytest.raises(InvalidParameterValue) as exc:
        LISTS.parse(value)
    assert (exc.value.sqlstate, exc.value.message, exc.value.detail) == ("22023", message, detail)


def test_check_options_names_unknown_and_repeated_parameters():
    assert check_options(HnswIndex, [("M", "8"), ("ef_construction", 40)]) == \
        {"m": 8, "ef_construction": 40}
    assert check_options(HnswIndex, []) == {}
    with pytest.raises(InvalidParameterValue, match='^unrecognized parameter "lists"$'):
        check_options(HnswIndex, [("lists", 3)])
    with pytest.raises(InvalidParameterValue, match='^parameter "m" specified more than once$'):
        check_options(HnswIndex, [("m", 8), ("m", 9)])


def test_settings_parse_as_postgresql_integer_gucs():
    assert PROBES.parse("10") == 10 and PROBES.parse("'3'") == 3 and PROBES.parse("2.6") == 3
    with pytest.raises(InvalidParameterValue) as exc:
        PROBES.parse("abc")
    assert exc.value.message == 'invalid value for parameter "ivf.probes": "abc"'
    with pytest.raises(InvalidParameterValue) as exc:
        PROBES.parse("0")
    assert exc.value.message == '0 is outside the valid range for parameter "ivf.probes" ' \
                                "(1 .. 32768)"
    assert exc.value.sqlstate == "22023"


def test_settings_read_from_a_session_with_default():
    assert PROBES.read(None) == 1 and PROBES.read({}) == 1
    assert PROBES.read({"ivf.probes": "12"}) == 12
    assert PROBES.read({"ivf.probes": "junk"}) == 1


def test_recall_curve_rises_and_stops_at_full_recall():
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(3_000, 16)).astype(np.float32)
    index = HnswIndex.build(rows, HnswParams(Metric.L2, m=4, ef_construction=8))
    curve = recall_curve(index, Metric.L2, rows, None, (10, 40, 160, 400, 1000))
    efs = [e for e, _ in curve]
    recalls = [r for _, r in curve]
    assert efs == [10, 40, 160, 400, 1000][: len(efs)]
    assert recalls == sorted(recalls) and 0.0 <= recalls[0] < recalls[-1] <= 1.0
    # Too few usable rows to measure: no curve, rather than a made-up one.
    valid = np.zeros(3_000, bool)
    valid[:5] = True
    assert recall_curve(index, Metric.L2, rows, valid, (10, 40)) == []
