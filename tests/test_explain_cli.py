# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the ``astro-mantis explain`` subcommand (astro_mantis.cli.explain)."""
import argparse

import numpy as np
import pytest
import torch
from astropy.table import Table

from astro_mantis.explain import ReferenceEmbedding
from astro_mantis.cli.explain import add_parser

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from astro_mantis.simulate.dataset import make_dataset

    path = tmp_path_factory.mktemp("explain_cli")
    make_dataset(40, path, seed=31, split=(0.55, 0.2, 0.25), shard_size=20, progress=False)
    return path


def explain(argv):
    parser = argparse.ArgumentParser(prog="astro-mantis")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["explain"] + [str(a) for a in argv])
    return args.func(args)


def test_bands_reference_ood_examples_spectra(shards, tmp_path, capsys):
    out = tmp_path / "bands.ecsv"
    assert explain(["bands", shards, "--max-rows", 2, "--method", "ig", "--target", "cde",
                    "--out", out, "--figure", tmp_path / "shares.png"]) == 0
    t = Table.read(out)
    assert len(t) == 2 and t.colnames[:2] == ["id", "z"] and "phi_W2" in t.colnames
    assert t.meta["target"] == "cde" and (tmp_path / "shares.png").stat().st_size > 1000
    ref = tmp_path / "ref.ood.npz"
    assert explain(["reference", shards, "--components", 8, "--k", 3, "--out", ref]) == 0
    r = ReferenceEmbedding.load(ref)
    assert len(r.points) == 8 and r.meta["split"] == "validation"  # the default split
    assert r.widths is not None and len(r.combined) == 8
    assert explain(["ood", shards, "--reference", ref, "--out", tmp_path / "ood.ecsv"]) == 0
    o = Table.read(tmp_path / "ood.ecsv")
    assert len(o) == 10 and ((o["z_ood"] >= 0) & (o["z_ood"] <= 1)).all()
    assert set(np.unique(o["z_flags"])) <= {0, 256}
    assert explain(["examples", shards, "--index", 1, "--train-rows", 20, "--kernel", "ck",
                    "-k", 2, "--out", tmp_path / "ex.ecsv",
                    "--figure", tmp_path / "ex.png"]) == 0
    ex = Table.read(tmp_path / "ex.ecsv")
    assert list(ex["role"]) == ["supporting"] * 2 + ["opposing"] * 2
    assert explain(["spectra", "--out", tmp_path / "sp.ecsv",
                    "--figure", tmp_path / "sp.png"]) == 0
    sp = Table.read(tmp_path / "sp.ecsv")
    assert "fc1" in list(sp["layer"]) and sp["n_outliers"].sum() > 0
    assert "wrote" in capsys.readouterr().out


def test_bad_input(shards, tmp_path, capsys):
    from astro_mantis.cli import InputError

    existing = tmp_path / "x.ecsv"
    existing.write_text("")
    with pytest.raises(InputError, match="--overwrite"):
        explain(["spectra", "--out", existing])
    with pytest.raises(InputError, match="does not exist"):
        explain(["bands", tmp_path / "none", "--out", tmp_path / "b.ecsv"])
    with pytest.raises(InputError, match="unknown model"):
        explain(["spectra", "--model", "nope", "--out", tmp_path / "c.ecsv"])
    with pytest.raises(InputError, match="reference"):
        explain(["ood", shards, "--reference", tmp_path / "none.npz", "--out",
                 tmp_path / "d.ecsv"])
    with pytest.raises(InputError, match="--index"):
        explain(["examples", shards, "--index", 50, "--out", tmp_path / "e.ecsv"])
    with pytest.raises(InputError, match="positive"):
        explain(["bands", shards, "--max-rows", 0, "--out", tmp_path / "f.ecsv"])
    assert explain([]) == 2
    assert "reference" in capsys.readouterr().out


def test_guide_figure_script_loads_its_benchmark():
    """docs/make_explain_figures.py runs benchmarks/bench_explain.py, which imports its
    neighbour ``_machine``: the script must put benchmarks/ on the path (it once did
    not, and failed before drawing anything)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "docs" / "make_explain_figures.py"
    if not script.exists():
        pytest.skip("needs the source tree (docs/ and benchmarks/)")
    run = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                         text=True, timeout=300, cwd=script.parents[1])
    assert run.returncode == 0, run.stderr
    assert "--test-data" in run.stdout and "--reference" in run.stdout
