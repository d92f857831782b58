"""Quality cuts: one expression, the same meaning in SQL (SkyServer) and locally (spAll, files)."""
import numpy as np
import pytest
from astropy.table import Table

from astro_mantis.spectro import QualityCut
from astro_mantis.testing.skyserver import SQLError, execute_sql


@pytest.fixture
def table():
    return Table({
        "zWarning": [0, 4, 0, 0, 16, 0],
        "class": ["GALAXY", "GALAXY", "STAR", "QSO", "GALAXY", "galaxy "],
        "z": [0.1, 0.5, np.nan, 2.0, 0.3, 1.2],
        "plate": [266, 266, 3586, 3586, 3587, 3588],
    })


@pytest.mark.parametrize("expr, expected", [
    ("zWarning == 0 and class == 'GALAXY'", [1, 0, 0, 0, 0, 1]),
    ("zWarning == 0 and class in ('GALAXY', 'QSO')", [1, 0, 0, 1, 0, 1]),
    ("not (zWarning != 0) and z < 1", [1, 0, 0, 0, 0, 0]),
    ("0.2 <= z < 1.5", [0, 1, 0, 0, 1, 1]),
    ("z > -1 or plate >= 3587", [1, 1, 0, 1, 1, 1]),          # NaN compares false
    ("(zWarning == 0) & ~(class == 'STAR')", [1, 0, 0, 1, 0, 1]),
    ("class not in ('STAR', 'QSO')", [1, 1, 0, 0, 1, 1]),
    ("ZWARNING == 0 and CLASS == 'galaxy'", [1, 0, 0, 0, 0, 1]),  # case-insensitive names
])
def test_local_and_sql_agree(table, expr, expected):
    cut = QualityCut(expr)
    local = cut.evaluate(table)
    assert local.tolist() == [bool(e) for e in expected]
    # the SQL translation, run by the loopback SkyServer's SQL engine, selects the same rows
    t = table.copy()
    t["row"] = np.arange(len(t))
    names, cols = execute_sql(f"SELECT row FROM T WHERE {cut.to_sql()}", {"t": t})
    assert sorted(cols[0].tolist()) == np.flatnonzero(expected).tolist()


def test_keywords_as_column_names_and_columns_listed():
    cut = QualityCut("class == 'GALAXY' and zWarning == 0")
    assert cut.columns == ("class", "zWarning")
    assert cut.to_sql() == "(class = 'GALAXY' AND zWarning = 0)"
    assert cut.to_sql(alias="s") == "(s.class = 'GALAXY' AND s.zWarning = 0)"


def test_strings_are_quoted_safely():
    cut = QualityCut('name == "O\'Brien"')
    assert cut.to_sql() == "name = 'O''Brien'"
    names, cols = execute_sql(f"SELECT k FROM t WHERE {cut.to_sql()}",
                              {"t": Table({"name": ["O'Brien", "x"], "k": [1, 2]})})
    assert cols[0].tolist() == [1]


@pytest.mark.parametrize("expr, fragment", [
    ("", "non-empty"),
    ("z", "bare column"),
    ("f(z) > 1", "f(z)"),
    ("z.real > 1", "z.real"),
    ("z + 1 > 2", "z + 1"),
    ("z in zz", "'in' needs"),
    ("1 > 2", "without a column"),
    ("z > 1; DROP TABLE SpecObj", "cannot parse"),
    ("__import__('os') == 1", "__import__"),
    ("0 < z < 1 & zWarning == 0", "bind tighter"),
])
def test_rejected_expressions_say_what_is_wrong(expr, fragment):
    with pytest.raises(ValueError, match="quality cut") as info:
        QualityCut(expr)
    assert fragment in str(info.value)


def test_missing_column_lists_the_columns(table):
    with pytest.raises(KeyError, match="NQ.*zWarning, class, z, plate"):
        QualityCut("NQ >= 3").evaluate(table)


def test_text_against_number_is_an_error(table):
    with pytest.raises(ValueError, match="text column with a number"):
        QualityCut("class == 3").evaluate(table)
    with pytest.raises(SQLError, match="Conversion failed"):
        execute_sql("SELECT z FROM t WHERE class = 3", {"t": table})


def test_masked_values_never_pass():
    t = Table({"zWarning": np.ma.array([0, 0, 1], mask=[False, True, False])})
    assert QualityCut("zWarning == 0").evaluate(t).tolist() == [True, False, False]
    assert QualityCut("zWarning != 0").evaluate(t).tolist() == [False, False, True]
