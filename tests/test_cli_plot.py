# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""``astro-mantis plot``: what it checks before it fetches the row's cutouts.

(The figures themselves, from the demo's services and their cache, are tested in
tests/test_cli.py and tests/test_visualization.py.)
"""
import numpy as np
import pytest
from astropy.table import Table

from astro_mantis import Mantis
from astro_mantis.cli import EXIT_BAD_INPUT, EXIT_OK, main
from astro_mantis.pdf import Z_CENTERS, RedshiftPDF


@pytest.fixture
def table_file(tmp_path):
    """A small redshift table (no run meta: cutouts come from the configured services)."""
    pdf = RedshiftPDF(np.exp(-0.5 * ((Z_CENTERS[None] - np.array([[0.3], [0.6]])) / 0.05) ** 2))
    t = Table({"ra": [150.1, 150.2], "dec": [2.2, 2.3], "z_spec": [0.31, 0.58]})
    for name, col in pdf.to_table_columns().items():
        t[name] = col
    t["z_flags"] = np.zeros(2, np.int32)
    path = tmp_path / "t.ecsv"
    t.write(path)
    return path


@pytest.fixture
def fetches(monkeypatch):
    """The cutout fetches asked for (none is made: each answers no cutouts)."""
    asked = []

    def no_fetch(coords, *args, **kwargs):
        asked.append(coords)
        return None
    monkeypatch.setattr(Mantis, "get_cutouts", no_fetch)
    return asked


@pytest.mark.parametrize("argv, words", [
    (["-o", "{tmp}/row.bmp2"], "its format follows the name's suffix"),
    (["-o", "{tmp}/row"], "its format follows the name's suffix"),
    (["-o", "{tmp}/row.png", "--z-col", "zspec"], "--z-col 'zspec' is not a column"),
    (["-o", "{tmp}/row.png", "--prefix", "p_"], "no p_flags column"),
    (["-o", "{tmp}/row.png", "--row", "7"], "row 7 does not exist in a table of 2 rows"),
    (["-o", "{tmp}/nowhere/row.png"], "does not exist"),
])
def test_plot_checks_its_arguments_before_fetching(table_file, fetches, tmp_path, capsys,
                                                   argv, words):
    """Before, the output's format and --z-col were found wrong only after the cutouts
    were fetched (5-8 s against real services); cli.rst says outputs are checked before
    any work."""
    argv = [a.format(tmp=tmp_path) for a in argv]
    row = [] if "--row" in argv else ["--row", "0"]
    status = main(["plot", str(table_file), *row, *argv])
    assert fetches == []  # refused before any fetch
    assert status == EXIT_BAD_INPUT
    assert words in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("row")]


def test_plot_writes_the_figure_once_the_checks_pass(table_file, fetches, tmp_path, capsys):
    out = tmp_path / "row.svg"
    assert main(["plot", str(table_file), "--row", "-1", "-o", str(out), "--z-col",
                 "z_spec"]) == EXIT_OK
    assert len(fetches) == 1 and fetches[0].ra.deg == pytest.approx(150.2)
    assert out.read_text().lstrip().startswith("<?xml")
    assert "row -1 of" in capsys.readouterr().out
