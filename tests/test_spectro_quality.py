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
    assert QualityCut("not zWarning == 0").evaluate(t).tolist() == [False, False, True]
    assert QualityCut("~(zWarning == 0)").evaluate(t).tolist() == [False, False, True]


def _sqlite_rows(table, where):
    """The row numbers a real SQL engine (SQLite, NULL for NaN and masked values) selects.

    The loopback SkyServer's engine has no NULL (it reads NaN as a number and drops
    masks), so SQL's three-valued logic is checked against SQLite.
    """
    import sqlite3

    names = table.colnames
    con = sqlite3.connect(":memory:")
    try:
        con.execute(f"CREATE TABLE t (row INTEGER, {', '.join(names)})")
        for k in range(len(table)):
            values = []
            for name in names:
                col = table[name]
                if np.ma.is_masked(col[k]):
                    values.append(None)
                else:
                    v = np.asarray(col)[k].item()
                    values.append(None if isinstance(v, float) and np.isnan(v) else v)
            con.execute(f"INSERT INTO t VALUES ({', '.join('?' * (len(names) + 1))})",
                        [k] + values)
        return sorted(r[0] for r in con.execute(f"SELECT row FROM t WHERE {where}"))
    finally:
        con.close()


@pytest.mark.parametrize("expr, expected", [
    ("not z < 1", [2]),                        # NaN and masked z: unknown, negated still unknown
    ("~(z < 1)", [2]),
    ("not (z >= 1)", [0, 5]),
    ("z != 1", [0, 2, 5]),
    ("not z == 1", [0, 2, 5]),
    ("not (z < 1 or zWarning == 0)", [2]),       # row 1: unknown or false is unknown
    ("not (z < 1 and zWarning == 0)", [1, 2, 3, 5]),  # rows 1, 3: unknown and false is false
    ("z < 1 or zWarning == 0", [0, 4, 5]),       # row 4: unknown or true is true
    ("not zWarning in (0, 4)", [5]),
    ("zWarning not in (0, 4)", [5]),
    ("not not z < 1", [0, 5]),
    ("not 0 < z < 1", [2]),
    ("(zWarning == 0) & ~(z > 1)", [0]),  # row 4: true and unknown
])
def test_negation_of_unknown_values_never_passes(expr, expected):
    """``not``/``~`` follow SQL's three-valued logic: a row whose operand is unknown
    (NaN or masked) passes neither a condition nor its negation."""
    t = Table({"z": np.ma.array([0.5, np.nan, 2.0, 0.0, np.nan, 0.5],
                                mask=[False, False, False, True, False, False]),
               "zWarning": [0, 4, 4, 4, 0, 16]})
    cut = QualityCut(expr)
    assert np.flatnonzero(cut.evaluate(t)).tolist() == expected
    assert _sqlite_rows(t, cut.to_sql()) == expected  # what SQL itself answers
    # and the loopback SkyServer's SQL engine answers as SQL does (it once used
    # two-valued logic: a NOT of a comparison with a NULL selected the row)
    t["row"] = np.arange(len(t))
    names, cols = execute_sql(f"SELECT row FROM t WHERE {cut.to_sql()}", {"t": t})
    assert sorted(cols[0].tolist()) == expected
