# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the ``astro-mantis explain`` subcommand (astro_mantis.cli.explain)."""
import argparse
import re

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


def main(argv):
    from astro_mantis.cli.main import main as astro_mantis

    return astro_mantis(["explain"] + [str(a) for a in argv])


def test_ood_unreadable_reference_is_input_error(shards, tmp_path, capsys):
    """A reference that exists but cannot be read: exit 2 naming the file and the cause
    (it was a traceback, exit 1)."""
    from astro_mantis.cli import InputError

    text = tmp_path / "text.npz"
    text.write_text("not a reference\n")
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(2))
    truncated = tmp_path / "truncated.ood.npz"
    rng = np.random.default_rng(0)
    ReferenceEmbedding.from_features(rng.normal(size=(20, 4)), 2, 3).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    for bad in (text, other, truncated):
        with pytest.raises(InputError, match=f"cannot read reference {str(bad)!r}: "):
            explain(["ood", shards, "--reference", bad, "--out", tmp_path / "o.ecsv"])
        assert main(["ood", shards, "--reference", bad, "--out", tmp_path / "o.ecsv"]) == 2
        assert str(bad) in capsys.readouterr().err
    assert not (tmp_path / "o.ecsv").exists()


@pytest.mark.parametrize("argv, message", [
    (["-k", 0], "-k: expected a positive integer, got 0"),
    (["--train-rows", 0], "--train-rows: expected a positive integer, got 0"),
    (["--train-rows", -5], "--train-rows: expected a positive integer, got -5"),
    (["--index", -1], "--index: expected an integer of 0 or more, got -1"),
])
def test_examples_counts_are_checked_by_the_parser(shards, tmp_path, capsys, argv, message):
    """-k 0 and --train-rows 0 were tracebacks, --train-rows -5 ran on 15 of 22 rows,
    --index -1 said the split had 0 rows: now argparse refuses them (exit 2)."""
    out = tmp_path / "e.ecsv"
    assert main(["examples", shards, "--out", out, "--train-rows", 4, "--kernel", "ck"]
                + argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_examples_refuses_max_rows_and_reports_index_range(shards, tmp_path):
    from astro_mantis.cli import InputError

    with pytest.raises(InputError, match="--max-rows does not apply to examples"):
        explain(["examples", shards, "--max-rows", 3, "--out", tmp_path / "e.ecsv"])
    # the message gives the split's size (10 test rows), not the rows read so far
    with pytest.raises(InputError, match=r"--index 10 is outside the test split \(10 rows"):
        explain(["examples", shards, "--index", 10, "--train-rows", 4, "--out",
                 tmp_path / "e.ecsv"])


def test_bands_redshift_beyond_the_grid_is_input_error(shards, tmp_path, monkeypatch):
    """``bands --target logp|cde`` on galaxies at z >= 1.6: exit 2 with band_attribution's
    message (it was an uncaught ValueError)."""
    import astro_mantis.training.data as data
    from astro_mantis.cli import InputError

    read = data.read_fused

    def far(*args, **kwargs):
        x, d, z, ids = read(*args, **kwargs)
        return x, d, np.full_like(z, 1.7), ids

    monkeypatch.setattr(data, "read_fused", far)
    for target in ("logp", "cde"):
        with pytest.raises(InputError, match=r"z_spec must be finite and in \[0.0, 1.6\)"):
            explain(["bands", shards, "--max-rows", 1, "--target", target,
                     "--out", tmp_path / "b.ecsv"])
    assert main(["bands", shards, "--max-rows", 1, "--target", "logp",
                 "--out", tmp_path / "b.ecsv"]) == 2


def test_reference_out_round_trip_without_npz_suffix(shards, tmp_path, capsys):
    """``reference --out r1`` writes r1 (not r1.npz), refuses to replace it without
    --overwrite, and ``ood --reference r1`` reads it."""
    from astro_mantis.cli import InputError

    r1 = tmp_path / "r1"
    args = ["reference", shards, "--components", 4, "--k", 3, "--max-rows", 8, "--out", r1]
    assert explain(args) == 0
    assert r1.is_file() and not (tmp_path / "r1.npz").exists()
    assert f"wrote {r1} " in capsys.readouterr().out
    with pytest.raises(InputError, match="--overwrite"):
        explain(args)
    assert explain(args + ["--overwrite"]) == 0
    assert not (tmp_path / "r1.npz").exists()
    assert explain(["ood", shards, "--max-rows", 2, "--reference", r1,
                    "--out", tmp_path / "o.ecsv"]) == 0
    assert len(Table.read(tmp_path / "o.ecsv")) == 2


@pytest.mark.parametrize("argv, message", [
    (["bands", "{data}", "--out", "{tmp}/b.weird"], "cannot tell the format of"),
    (["bands", "{data}", "--out", "{tmp}/no_such_dir/b.ecsv"],
     "the directory of the output, .*no_such_dir.*, does not exist"),
    (["bands", "{data}", "--out", "{tmp}/b.ecsv", "--figure", "{tmp}/b.xyz"],
     "matplotlib does not write '.xyz' files"),
    (["bands", "{data}", "--out", "{tmp}/b.ecsv", "--figure", "{tmp}/nowhere/b.png"],
     "the directory of the output, .*nowhere.*, does not exist"),
    (["ood", "{data}", "--out", "{tmp}/o.txt"], "cannot tell the format of"),
    (["examples", "{data}", "--out", "{tmp}/e.ecsv", "--figure", "{tmp}/e.doc"],
     "matplotlib does not write '.doc' files"),
    (["spectra", "--out", "{tmp}/s.ecsv", "--figure", "{tmp}/s.xyz"],
     "matplotlib does not write '.xyz' files"),
    (["spectra", "--out", "{tmp}/missing/s.ecsv"], "does not exist"),
    (["reference", "{data}", "--out", "{tmp}/missing/r.npz"], "does not exist"),
])
def test_unwritable_outputs_are_refused_before_any_work(shards, tmp_path, capsys, monkeypatch,
                                                        argv, message):
    """Only the existence of the outputs was checked: an unknown suffix, a missing
    directory or a figure format matplotlib does not write raised an uncaught exception
    after all the work (and with a bad figure name, after the table was written)."""
    import astro_mantis.cli.explain as cli

    def no_work(args):
        raise AssertionError("the model was loaded: work started before the checks")

    monkeypatch.setattr(cli, "_model", no_work)
    argv = [a.format(data=shards, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []  # nothing written (no table, no probe)


def test_figure_without_suffix_and_existing_figure(shards, tmp_path, capsys):
    """A figure name without a suffix is written as .png (save_figure); an existing one
    needs --overwrite, checked on that name before any work."""
    (tmp_path / "sp.png").write_bytes(b"old")
    assert main(["spectra", "--out", tmp_path / "sp.ecsv", "--figure", tmp_path / "sp"]) == 2
    assert "sp.png' exists; pass --overwrite" in capsys.readouterr().err
    assert not (tmp_path / "sp.ecsv").exists()
    assert main(["spectra", "--out", tmp_path / "sp.ecsv", "--figure", tmp_path / "sp",
                 "--overwrite"]) == 0
    assert (tmp_path / "sp.png").stat().st_size > 1000


def test_ood_reference_built_for_other_weights(shards, tmp_path, capsys):
    """``ood --reference`` used a reference built for other weights silently."""
    from astro_mantis.models import build_model, save_model

    weights = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = build_model("mantis-mini", widths=(4, 8), depths=(1, 1), hidden=16)
        weights.append(save_model(net, tmp_path / f"w{seed}")[0])
    ref = tmp_path / "r0.npz"
    assert main(["reference", shards, "--weights", weights[0], "--components", 4, "--k", 3,
                 "--out", ref]) == 0
    out = tmp_path / "o.ecsv"
    assert main(["ood", shards, "--weights", weights[1], "--reference", ref, "--max-rows", 3,
                 "--out", out]) == 2
    err = capsys.readouterr().err
    assert "was built for other weights" in err and "--allow-other-weights" in err
    assert not out.exists()
    assert main(["ood", shards, "--weights", weights[0], "--reference", ref, "--max-rows", 3,
                 "--out", out]) == 0
    assert main(["ood", shards, "--weights", weights[1], "--reference", ref, "--max-rows", 3,
                 "--out", out, "--overwrite", "--allow-other-weights"]) == 0
    # the reference stored beside the weights is checked too
    ref.rename(weights[1].with_name("w1.ood.npz"))
    assert main(["ood", shards, "--weights", weights[1], "--max-rows", 3,
                 "--out", out, "--overwrite"]) == 2
    assert "--allow-other-weights" in capsys.readouterr().err


def test_reference_leaves_out_rows_without_data(shards, tmp_path, capsys, monkeypatch):
    """``explain reference`` embedded all-zero (no-data) rows in the reference."""
    import astro_mantis.training.data as data

    read = data.read_fused

    def with_blanks(*args, **kwargs):
        x, d, z, ids = read(*args, **kwargs)
        x = x.copy()
        x[:2] = 0.0
        return x, d, z, ids

    monkeypatch.setattr(data, "read_fused", with_blanks)
    ref = tmp_path / "r.npz"
    assert main(["reference", shards, "--components", 4, "--k", 3, "--out", ref]) == 0
    assert "(6 galaxies, 4 axes; 2 rows without data left out)" in capsys.readouterr().out
    r = ReferenceEmbedding.load(ref)
    assert len(r.points) == 6 and r.meta["n_left_out"] == 2 and r.meta["n_rows"] == 6
