# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The benchmark scripts in benchmarks/: their options, their lists and what they print.

The benchmarks themselves are run by hand (their figures go into benchmarks/README.rst);
these tests check the cheap parts that have gone wrong before.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if not BENCH.is_dir():
    pytest.skip("needs the source tree (benchmarks/)", allow_module_level=True)

SCRIPTS = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def _load(name, monkeypatch):
    """Import benchmarks/<name>.py as a script run from the repository root would:
    with benchmarks/ on the path (for its neighbour ``_machine``)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_answers_help(script):
    run = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                         text=True, timeout=300, cwd=BENCH.parent)
    assert run.returncode == 0, run.stderr
    assert "usage:" in run.stdout


@pytest.mark.parametrize("script", [p for p in SCRIPTS if p.name != "bundled_targets.py"],
                         ids=lambda p: p.name)
def test_every_benchmark_prints_its_cpu(script):
    """Every benchmark prints the CPU it ran on, through benchmarks/_machine.py or
    astro_mantis's ``machine_summary`` (bundled_targets.py measures nothing: it reads
    evaluation files and a card)."""
    text = script.read_text()
    assert "from _machine import" in text or "machine_summary" in text


def test_run_all_runs_or_lists_every_script(monkeypatch, capsys):
    """Every script is either in run_all's small set or in its one list of what is left
    out (with a reason); bench_real_population.py needs no prepared data and runs."""
    run_all = _load("run_all", monkeypatch)
    assert "real_population" in run_all.SMALL
    assert all(why.strip() for why in run_all.LEFT_OUT.values())
    for script in SCRIPTS:
        if script.name == "run_all.py":
            continue
        small = script.name.startswith("bench_") and script.stem[6:] in run_all.SMALL
        assert small != (script.name in run_all.LEFT_OUT), script.name
    assert run_all.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "bench_real_population.py --n 100" in out
    assert all(name in out for name in run_all.LEFT_OUT)


def test_explain_refuses_unknown_sections(tmp_path, monkeypatch, capsys):
    """``--only`` with a section name it does not know: exit 2 naming it (it used to run
    nothing and exit 0)."""
    bench = _load("bench_explain", monkeypatch)
    (tmp_path / "manifest.json").write_text("{}")  # so that no data set is rendered
    with pytest.raises(SystemExit) as exc:
        bench.main(["--data", str(tmp_path), "--only", "bogus"])
    assert exc.value.code == 2
    assert "bogus" in capsys.readouterr().err


def test_simulate_keep_keeps_the_data_sets(tmp_path, monkeypatch, capsys):
    """``--keep DIR`` writes the data sets into DIR and leaves them there (they were
    written into a temporary directory inside DIR and deleted); a DIR holding anything
    is refused, since make_dataset would resume what is there instead of rendering."""
    pytest.importorskip("galsim")
    bench = _load("bench_simulate", monkeypatch)
    keep = tmp_path / "kept"
    keep.mkdir()
    assert bench.main(["--n", "2", "--workers", "1", "--shard-size", "2", "--project", "10",
                       "--keep", str(keep)]) == 0
    assert (keep / "nominal_workers1" / "manifest.json").is_file()
    assert list((keep / "nominal_workers1").glob("*/shard_*.npz"))
    with pytest.raises(SystemExit) as exc:
        bench.main(["--n", "2", "--workers", "1", "--keep", str(keep)])
    assert exc.value.code == 2
    assert "--keep" in capsys.readouterr().err


def test_inference_never_prints_more_than_the_peak(monkeypatch):
    """A network faster than the measured peak is reported as such, never as a
    fraction above 100 % (the matrix-product peak once printed 284 %)."""
    bench = _load("bench_inference", monkeypatch)
    assert bench.of_peak(0.5).strip() == "50.0 % of peak"
    for frac in (1.01, 2.848):
        text = bench.of_peak(frac)
        assert "%" not in text and "not a ceiling" in text


def test_tta_nll_calibrated_differs_with_the_map(monkeypatch):
    """bundled_tta's ``nll`` is taken before the PIT map, so two rows that differ only
    in their map share it; ``nll_calibrated`` is taken on the PDF each row predicts."""
    from astro_mantis.pdf import RedshiftPDF

    bench = _load("bundled_tta", monkeypatch)
    rng = np.random.default_rng(0)
    z = rng.uniform(0.12, 0.18, 200)
    logits = rng.normal(0.0, 1.0, (200, 400))
    logits[:, 30:45] += 4.0  # mass around z = 0.12-0.18
    pdf = RedshiftPDF.from_logits(logits)
    other = pdf.remap_cdf(np.array([0.0, 0.3, 1.0]), np.array([0.0, 0.5, 1.0]))
    k = np.searchsorted(pdf.edges, z, side="right") - 1
    expected = -np.mean(np.log(pdf.probabilities()[np.arange(200), k]))
    assert bench.calibrated_nll(pdf, z) == pytest.approx(expected)
    a, b = bench.figures(pdf, z, logits), bench.figures(other, z, logits)
    assert a["nll"] == b["nll"]
    assert a["nll_calibrated"] != pytest.approx(b["nll_calibrated"])


def test_point_estimates_files_record_command_and_cpu(tmp_path, monkeypatch):
    """``--out`` with ``--name``: NAME.json and NAME.rst, each recording the command
    line and the CPU (the README's redo command once named files the script did not
    write)."""
    bench = _load("bench_point_estimates", monkeypatch)

    class Evaluation:
        def as_dict(self):
            return {"model": "m", "overall": {"nmad": 0.02}}

        def to_rst(self):
            return "tables\n"

    command = "python benchmarks/bench_point_estimates.py --data D --name mantis-mini_test"
    paths = bench.write_evaluation(Evaluation(), tmp_path, "mantis-mini_test", command,
                                   "Some CPU")
    assert paths == {"json": tmp_path / "mantis-mini_test.json",
                     "rst": tmp_path / "mantis-mini_test.rst"}
    record = json.loads(paths["json"].read_text())
    assert record["command"] == command and record["cpu"] == "Some CPU"
    assert record["overall"] == {"nmad": 0.02}
    rst = paths["rst"].read_text()
    assert command in rst and "Some CPU" in rst and rst.endswith("tables\n")
