# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""astro_mantis.scale: LSDB / Dask partitions against the single-process job, row for row.

A small HATS catalog is built from the bundled sample sky (``lsdb.from_dataframe``), the
cutouts come from the loopback survey server, and the distributed runs go through a
2-worker `dask.distributed.LocalCluster` of processes (whose ``conf`` knows nothing of
the server unless the scale functions pass it on).
"""
import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("lsdb")
distributed = pytest.importorskip("distributed")

import astropy.units as u  # noqa: E402
import dask  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import lsdb  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from astropy.table import Table  # noqa: E402

from astro_mantis import MantisFlag, add_redshift_columns, conf  # noqa: E402
from astro_mantis import scale  # noqa: E402
from astro_mantis.simulate import SampleSky  # noqa: E402
from astro_mantis.spectro import SpecFlag, match_spectroscopic  # noqa: E402
from astro_mantis.table import column_names  # noqa: E402
from astro_mantis.testing import SurveyServer  # noqa: E402

DUST = ("ebv_csfd", "ebv_planck")
KW = dict(ebv=DUST, precision="float32")
N = 36


@pytest.fixture(scope="module")
def sky():
    return SampleSky()


@pytest.fixture(scope="module")
def frame(sky):
    cat = sky.catalog
    rows = np.arange(N)
    df = pd.DataFrame({"ra": np.array(cat["ra"][rows]), "dec": np.array(cat["dec"][rows]),
                       "ebv_csfd": np.array(cat["ebv_csfd"][rows]),
                       "ebv_planck": np.array(cat["ebv_planck"][rows]),
                       "ident": np.arange(N)})
    # a repeated position (processed once per partition, same values) and a row south of
    # the Pan-STARRS footprint (flagged, still estimated from the other surveys)
    extra = df.iloc[[3]].assign(ident=N)
    south = df.iloc[[5]].assign(ident=N + 1, dec=-40.0)
    return pd.concat([df, extra, south], ignore_index=True)


@pytest.fixture(scope="module")
def server(sky, tmp_path_factory):
    """The loopback services, configured in this process only, with a cache of their own."""
    with SurveyServer(sky=sky) as srv, srv.configure(conf), \
            conf.set_temp("cache_dir", str(tmp_path_factory.mktemp("cache"))), \
            conf.set_temp("backoff", 0.01), conf.set_temp("timeout", 10.0):
        yield srv


@pytest.fixture(scope="module")
def reference(frame, server, tmp_path_factory):
    """Single-process add_redshift_columns on the whole table (its own cache)."""
    t = Table({c: frame[c].to_numpy() for c in frame.columns})
    with conf.set_temp("cache_dir", str(tmp_path_factory.mktemp("refcache"))):
        add_redshift_columns(t, progress=False, **KW)
    return t


@pytest.fixture(scope="module")
def catalog(frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lsdb.from_dataframe(frame, ra_column="ra", dec_column="dec", lowest_order=2,
                                   highest_order=6, partition_rows=10)


@pytest.fixture(scope="module")
def client():
    """Two worker processes, one thread each (their conf is the default one)."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    with cluster, distributed.Client(cluster) as c:
        yield c


def _check_equal(result, reference, prefix="z_"):
    """Every reference row exactly once in ``result`` (by ident), same values and flags."""
    ident = result["ident"].to_numpy()
    assert len(ident) == len(reference) and len(np.unique(ident)) == len(ident)
    back = scale.redshift_table(result, prefix)
    ref = reference[np.asarray(ident)]
    pdf, ref_pdf = back[f"{prefix}pdf"], ref["z_pdf"]
    assert np.array_equal(pdf.mask, ref_pdf.mask)
    assert np.allclose(pdf.filled(0), ref_pdf.filled(0), rtol=1e-4, atol=1e-4)
    assert np.array_equal(np.asarray(back[f"{prefix}flags"]), np.asarray(ref["z_flags"]))
    for key in ("mean", "median", "mode", "std", "lo68", "hi68"):
        a, b = back[f"{prefix}{key}"], ref[f"z_{key}"]
        assert np.array_equal(a.mask, b.mask)
        assert np.allclose(a.filled(0), b.filled(0), atol=1e-4), key


def test_reference_is_informative(reference):
    # the comparison below means something: real estimates, one flagged row
    flags = np.asarray(reference["z_flags"])
    assert np.sum((flags & MantisFlag.NOT_ESTIMATED) == 0) == len(reference)
    assert np.ptp(np.asarray(reference["z_mean"])) > 0.1
    assert np.sum(flags != flags[0]) >= 1


def test_lsdb_on_two_worker_processes_equals_single_process(catalog, reference, server,
                                                            client):
    assert catalog.npartitions >= 4
    out = scale.add_redshift_columns_lsdb(catalog, **KW)
    assert isinstance(out, lsdb.Catalog)
    assert out.get_healpix_pixels() == catalog.get_healpix_pixels()
    names = column_names()
    assert out.columns.tolist() == catalog.columns.tolist() + names[:-1] + ["z_ood", names[-1]]
    result = out.compute(progress_bar=False)
    before = catalog.compute(progress_bar=False)
    # same rows, same partitions (HEALPix index) and order
    assert np.array_equal(result.index.to_numpy(), before.index.to_numpy())
    assert np.array_equal(result["ident"].to_numpy(), before["ident"].to_numpy())
    _check_equal(result, reference)
    assert result["z_pdf"].dtype == pd.ArrowDtype(
        __import__("pyarrow").list_(__import__("pyarrow").float32(), 400))
    # the partitions ran in the workers (the cluster's processes, not this one), each
    # loading the model once for all its partitions
    loads = client.run(scale.worker_model_loads)
    assert sum(len(v) for v in loads.values()) >= 1
    assert all(len(v) <= 1 for v in loads.values())
    assert scale.worker_model_loads() == []
    # provenance: the single-process table meta, on the catalog
    prov = scale.provenance(out)
    for key in ("model", "sha256", "vers", "survey", "ebv", "pos", "srv", "nbins"):
        assert prov[key] == reference.meta[f"z_{key}"], key
    assert prov["prec"] == "float32"


def test_worker_killed_during_the_run_is_retried(catalog, reference, server, client,
                                                 tmp_path):
    """SIGKILL one worker while it processes a partition: nothing lost or duplicated."""
    pids = client.run(os.getpid)
    cache = tmp_path / "fresh-cache"  # nothing cached: the partitions take a while
    server.latency = 0.05
    killed = {}

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                killed["worker"] = busy[0]
                killed["pid"] = pids[busy[0]]
                os.kill(pids[busy[0]], signal.SIGKILL)
                return
            time.sleep(0.02)

    try:
        out = scale.add_redshift_columns_lsdb(catalog, settings={"cache_dir": str(cache)},
                                              **KW)
        thread = threading.Thread(target=killer)
        thread.start()
        result = out.compute(progress_bar=False)
        thread.join()
    finally:
        server.latency = 0.0
    assert killed, "no worker was busy: the kill did not happen during the run"
    client.wait_for_workers(2, timeout=60)
    assert killed["pid"] not in client.run(os.getpid).values()
    _check_equal(result, reference)
    # the settings reached the workers: the cache they filled is the one asked for
    assert len(list(cache.rglob("*.amc"))) >= 3 * N


def test_dask_dataframe_on_the_cluster(frame, reference, server, client):
    ddf = dd.from_pandas(frame, npartitions=3, sort=False)
    out = scale.add_redshift_columns_dask(ddf, **KW)
    assert out.npartitions == 3
    assert scale.provenance(out)["model"] == reference.meta["z_model"]
    result = out.compute()
    assert np.array_equal(result["ident"].to_numpy(), frame["ident"].to_numpy())
    assert np.array_equal(result.index.to_numpy(), frame.index.to_numpy())
    _check_equal(result, reference)
    # every partition recorded the same provenance, so the computed frame keeps it
    assert scale.provenance(result)["prec"] == "float32"
    assert scale.provenance(result)["sha256"] == reference.meta["z_sha256"]


def test_hats_round_trip_and_threads(catalog, reference, server, tmp_path):
    """The local (threaded) scheduler; the PDF column and provenance survive to_hats."""
    with dask.config.set(scheduler="threads"):
        out = scale.add_redshift_columns_lsdb(catalog, prefix="p_", **KW)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.to_hats(tmp_path / "with_z", progress_bar=False)
        back = lsdb.open_catalog(tmp_path / "with_z")
        result = back.compute(progress_bar=False)
    assert back.get_healpix_pixels() == catalog.get_healpix_pixels()
    _check_equal(result, reference, prefix="p_")
    prov = scale.provenance(back, prefix="p_")
    assert prov["model"] == reference.meta["z_model"] and prov["nbins"] == "400"
    assert prov["srv"] == reference.meta["z_srv"]
    # overwrite replaces the columns in place, once
    again = scale.add_redshift_columns_lsdb(back, prefix="p_", overwrite=True, **KW)
    assert again.columns.tolist().count("p_pdf") == 1
    with pytest.raises(ValueError, match="already has column"):
        scale.add_redshift_columns_lsdb(back, prefix="p_", **KW)


def test_bad_input(catalog, frame, server):
    with pytest.raises(TypeError, match="lsdb.Catalog"):
        scale.add_redshift_columns_lsdb(frame)
    with pytest.raises(TypeError, match="dask.dataframe"):
        scale.add_redshift_columns_dask(catalog)
    with pytest.raises(TypeError, match="registry name"):
        scale.add_redshift_columns_lsdb(catalog, model=torch.nn.Linear(2, 2))
    for key in ("coord", "resume", "progress"):
        with pytest.raises(TypeError, match=f"{key}= is not taken"):
            scale.add_redshift_columns_lsdb(catalog, **{key: True})
    with pytest.raises(KeyError, match="'EBV_CSFD' not found.*did you mean 'ebv_csfd'"):
        scale.add_redshift_columns_lsdb(catalog, ebv=("EBV_CSFD", "ebv_planck"))
    with pytest.raises(TypeError, match="per-row values"):
        scale.add_redshift_columns_lsdb(catalog, ebv=np.zeros(len(frame)))
    with pytest.raises(ValueError, match="surveys="):
        scale.add_redshift_columns_lsdb(catalog, ebv=DUST, surveys=("panstarrs",))
    with pytest.raises(KeyError, match="unknown configuration"):
        scale.worker_settings(cache_directory="/tmp")
    # a column named like the out-of-distribution score is not replaced silently
    own = dd.from_pandas(frame.assign(z_ood=1.0), npartitions=2)
    with pytest.raises(ValueError, match="already has column.*z_ood"):
        scale.add_redshift_columns_dask(own, **KW)
    scale.add_redshift_columns_dask(own, ood=False, **KW)  # planned: the score is not asked


def test_own_z_ood_kept_with_a_model_that_writes_none(frame, server, tmp_path):
    """A catalog's own z_ood column is refused only where the model would write one: with
    weights that have no reference embedding beside them, the plan keeps it."""
    import shutil

    from astro_mantis.models import registry

    weights = tmp_path / "noref.safetensors"
    shutil.copy(registry.DATA_DIR / "mantis-mini.safetensors", weights)
    shutil.copy(registry.DATA_DIR / "mantis-mini.json", tmp_path / "noref.json")  # its card
    own = dd.from_pandas(frame.assign(z_ood=1.0), npartitions=2)
    out = scale.add_redshift_columns_dask(own, weights=str(weights), **KW)
    assert out.columns.tolist() == own.columns.tolist() + column_names("z_")
    with pytest.raises(ValueError, match="already has column.*z_ood"):  # the bundled has one
        scale.add_redshift_columns_dask(own, **KW)


def test_the_client_plans_on_its_cpu(frame, server):
    """device= names the workers' device: a client without that GPU still builds the
    lazy job (it once loaded the model there itself and refused 'cuda')."""
    if torch.cuda.is_available():
        pytest.skip("needs a client without a CUDA GPU")
    out = scale.add_redshift_columns_dask(dd.from_pandas(frame, npartitions=2),
                                          device="cuda", **KW)
    assert out.columns.tolist().count("z_ood") == 1 and "z_pdf" in out.columns
    with pytest.raises(ValueError, match="cuda"):
        from astro_mantis import add_redshift_columns

        add_redshift_columns(Table({"ra": [1.0], "dec": [1.0]}), device="cuda", ebv=0.0)

def test_worker_settings_and_shared_conf(server, tmp_path):
    s = scale.worker_settings(cache_dir=str(tmp_path))
    assert s["panstarrs_url"] == server.panstarrs_url and s["cache_dir"] == str(tmp_path)
    # threads of one process share conf: a second block with the same settings runs
    # alongside, and the values are restored only when the last one leaves
    seen = []
    other = dict(s, timeout=123.0)
    with scale._applied(other):
        assert conf.timeout == 123.0
        with scale._applied(other):
            pass
        seen.append(conf.timeout)
    assert seen == [123.0] and conf.timeout == 10.0
    order = []

    def second():
        with scale._applied(dict(s, timeout=7.0)):
            order.append(("second", conf.timeout))

    with scale._applied(other):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.1)
        order.append(("first", conf.timeout))
    t.join()
    assert order == [("first", 123.0), ("second", 7.0)] and conf.timeout == 10.0


def test_match_spectroscopic_lsdb_equals_table_match(frame, tmp_path):
    rng = np.random.default_rng(3)
    gal = frame.iloc[:N].reset_index(drop=True)
    m = 24
    spec = pd.DataFrame({"ra": gal["ra"][:m] + rng.normal(0, 1e-4, m),
                         "dec": gal["dec"][:m] + rng.normal(0, 1e-4, m),
                         "zspec": rng.uniform(0, 1, m), "zerr": rng.uniform(0, 1e-3, m),
                         "sid": np.arange(100, 100 + m)})
    # a second spectrum 0.4" from galaxy 0 (ambiguous); one between galaxies 30 and 31
    # made to sit at the same place (shared)
    spec.loc[len(spec)] = [gal.ra[0] + 0.4 / 3600, gal.dec[0], 0.9, 1e-3, 999]
    gal.loc[31, ["ra", "dec"]] = [gal.ra[30] + 0.6 / 3600, gal.dec[30]]
    spec.loc[len(spec)] = [gal.ra[30] + 0.3 / 3600, gal.dec[30], 0.5, 1e-3, 1000]
    with warnings.catch_warnings(), dask.config.set(scheduler="sync"):
        warnings.simplefilter("ignore")
        left = lsdb.from_dataframe(gal, ra_column="ra", dec_column="dec", lowest_order=2,
                                   highest_order=6, partition_rows=12)
        right = lsdb.from_dataframe(spec, ra_column="ra", dec_column="dec", lowest_order=2,
                                    highest_order=6, partition_rows=8, margin_threshold=5.0)
        out = scale.match_spectroscopic_lsdb(left, right, 2 * u.arcsec, z_col="zspec",
                                             z_err_col="zerr", id_col="sid",
                                             source="mock spectra")
        parts = [out.partitions[i].compute(progress_bar=False) for i in range(out.npartitions)]
        before = left.compute(progress_bar=False)
    result = pd.concat(parts)
    assert len(result) == len(gal)
    assert sorted(result["ident"]) == sorted(gal["ident"])
    # every row once, in the catalog's order within each (aligned) partition
    where = pd.Series(np.arange(len(before)), index=before["ident"].to_numpy())
    for part in parts:
        assert np.all(np.diff(where[part["ident"].to_numpy()].to_numpy()) > 0)
    t = Table({c: gal[c].to_numpy() for c in gal.columns})
    cat = Table({"ra": spec["ra"], "dec": spec["dec"], "z": spec["zspec"],
                 "zerr": spec["zerr"], "sid": spec["sid"]})
    match_spectroscopic(t, catalog=cat, radius=2 * u.arcsec, z_err_col="zerr", id_col="sid")
    ref = t[result["ident"].to_numpy()]
    assert np.array_equal(result["spec_flags"].to_numpy(dtype=int),
                          np.asarray(ref["spec_flags"]))
    matched = ~np.asarray(ref["z_spec"].mask)
    assert matched.sum() >= m - 2 and (~matched).sum() >= 5
    z = result["z_spec"].to_numpy(dtype=float, na_value=np.nan)
    assert np.array_equal(np.isnan(z), ~matched)
    assert np.allclose(z[matched], np.asarray(ref["z_spec"])[matched])
    assert np.allclose(result["spec_sep"].to_numpy(dtype=float, na_value=np.nan)[matched],
                       np.asarray(ref["spec_sep"])[matched], atol=1e-6)
    assert np.array_equal(result["spec_id"].to_numpy(dtype=float, na_value=-1)[matched],
                          np.asarray(ref["spec_id"])[matched])
    flags = result["spec_flags"].to_numpy(dtype=int)
    assert np.sum((flags & SpecFlag.AMBIGUOUS) != 0) >= 1
    assert np.sum((flags & SpecFlag.SHARED) != 0) == 2
    assert set(result["spec_source"].dropna()) == {"mock spectra"}
    assert "mock spectra" in out.hc_structure.catalog_info.extra_dict()["spec_match"]
    with pytest.raises(TypeError, match="angle"):
        scale.match_spectroscopic_lsdb(left, right, 2.0)
    with pytest.raises(KeyError, match="'redshift' not in the spectroscopic"):
        scale.match_spectroscopic_lsdb(left, right, "1 arcsec", z_col="redshift")
    # a copied column may not take the place of the match's own (spec_flags here)
    with pytest.raises(ValueError, match="would replace the match's own column spec_flags"):
        scale.match_spectroscopic_lsdb(left, right, "1 arcsec", z_col="zspec",
                                       columns=["flags"])
    # a str is one column's name, not its letters (column 'z' was not found)
    one = scale.match_spectroscopic_lsdb(left, right, "1 arcsec", z_col="zspec",
                                         columns="zspec")
    assert "spec_zspec" in one.columns and "spec_z" not in one.columns


# ------------------------------------------------------------------ in-process (sync) runs
# (after the cluster tests: these load the model in this process, which the first test
# checks never happens there)
def _partitions(*frames):
    return dd.concat([dd.from_pandas(f, npartitions=1, sort=False) for f in frames])


def test_partitions_agree_nulls_and_parquet_read_back(frame, server, tmp_path):
    """A partition of invalid rows only (the network never runs) and an empty one record
    the same attrs as the others, so the computed frame keeps the provenance; its null
    rows come back masked; the Parquet the docs' example writes reads back."""
    good = frame.iloc[:3]
    bad = frame.iloc[3:5].assign(ra=[np.nan, 500.0])  # not estimated, no fetch
    with dask.config.set(scheduler="sync"):
        out = scale.add_redshift_columns_dask(_partitions(good, bad, frame.iloc[:0]), **KW)
        parts = [out.partitions[i].compute() for i in range(out.npartitions)]
        result = out.compute()
        out.to_parquet(tmp_path / "z")
    assert [len(p) for p in parts] == [3, 2, 0]
    assert all(p.attrs == parts[0].attrs for p in parts)
    prov = scale.provenance(result)
    assert prov["prec"] == "float32" and prov["model"] == "mantis-mini"
    back = scale.redshift_table(result)  # null rows: pd.NA under pandas 3
    flags = np.asarray(back["z_flags"])
    bad_coord = (flags & MantisFlag.BAD_COORDINATE) != 0
    assert np.array_equal(bad_coord, [False] * 3 + [True] * 2)
    assert back["z_pdf"].shape == (5, 400)
    assert np.array_equal(back["z_pdf"].mask.all(axis=1), [False] * 3 + [True] * 2)
    assert np.array_equal(back["z_mean"].mask, [False] * 3 + [True] * 2)
    # the docs' read-back (pandas cannot rebuild the PDF column's dtype from the pandas
    # metadata, pandas-dev/pandas#59738): dtype_backend="pyarrow"
    for read in (lambda p: pd.read_parquet(p, dtype_backend="pyarrow"),
                 lambda p: dd.read_parquet(p, dtype_backend="pyarrow").compute()):
        again = scale.redshift_table(read(tmp_path / "z"))
        assert np.array_equal(again["z_pdf"].mask, back["z_pdf"].mask)
        assert np.allclose(again["z_pdf"].filled(0), back["z_pdf"].filled(0))
        assert np.array_equal(np.asarray(again["z_flags"]), flags)


def test_overwrite_replaces_the_whole_earlier_run(frame, server):
    """overwrite=True over an earlier run: its z_ood column and provenance this run does
    not write again (z_oodth, z_prec) go, as add_redshift_columns removes them."""
    small = frame.iloc[:3]
    first = scale.add_redshift_columns_dask(dd.from_pandas(small, npartitions=1), **KW)
    assert "z_ood" in first.columns
    again = scale.add_redshift_columns_dask(first, overwrite=True, ood=False, ebv=DUST)
    assert again.columns.tolist() == small.columns.tolist() + column_names()
    assert "z_oodth" not in scale.provenance(again) and "prec" not in scale.provenance(again)
    with dask.config.set(scheduler="sync"):
        result = again.compute()
    assert "z_ood" not in result.columns and "z_oodth" not in result.attrs
    # a catalog's own z_ood column (no earlier run) is kept, overwrite or not
    own = dd.from_pandas(small.assign(z_ood=1.0), npartitions=1)
    kept = scale.add_redshift_columns_dask(own, overwrite=True, ood=False, ebv=DUST)
    assert kept.columns.tolist().count("z_ood") == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cat = lsdb.from_dataframe(small, ra_column="ra", dec_column="dec", lowest_order=2,
                                  highest_order=6, partition_rows=10)
    out1 = scale.add_redshift_columns_lsdb(cat, **KW)
    assert scale.provenance(out1)["prec"] == "float32"
    out2 = scale.add_redshift_columns_lsdb(out1, overwrite=True, ood=False, ebv=DUST)
    assert "z_ood" not in out2.columns and out2.columns.tolist().count("z_pdf") == 1
    prov = scale.provenance(out2)
    assert "oodth" not in prov and "prec" not in prov and prov["model"] == "mantis-mini"
    assert scale.provenance(out1)["prec"] == "float32"  # the earlier catalog is untouched


def test_refused_or_planned_at_call_time(frame, server):
    ddf = dd.from_pandas(frame.iloc[:4], npartitions=1)
    from astro_mantis.table import RunStats

    with pytest.raises(TypeError, match="report= is not taken.*flags"):
        scale.add_redshift_columns_dask(ddf, report=RunStats(), **KW)
    # int8 needs a quantised model, which no worker loads
    for extra in ({}, {"device": "cuda"}):
        with pytest.raises(ValueError, match="int8.*quantise"):
            scale.add_redshift_columns_dask(ddf, ebv=DUST, precision="int8", **extra)
    # a precision the named device can never run is refused; a GPU precision without
    # device= is the workers' to check (the client need not have their GPU)
    with pytest.raises(ValueError, match="float16"):
        scale.add_redshift_columns_dask(ddf, ebv=DUST, precision="float16", device="cpu")
    out = scale.add_redshift_columns_dask(ddf, ebv=DUST, precision="float16")
    assert scale.provenance(out)["prec"] == "float16"
    out = scale.add_redshift_columns_dask(ddf, ebv=DUST, precision="bfloat16", device="cuda")
    assert scale.provenance(out)["prec"] == "bfloat16"
    with pytest.raises(ValueError, match="precision"):
        scale.add_redshift_columns_dask(ddf, ebv=DUST, precision="float64")
    # a boolean dust column is refused as the table job refuses it, not read as 0/1 mag
    flagged = dd.from_pandas(frame.iloc[:4].assign(dusty=[True, False, True, False]),
                             npartitions=1)
    with pytest.raises(ValueError, match="'dusty' holds booleans"):
        scale.add_redshift_columns_dask(flagged, ebv="dusty", precision="float32")
    nullable = frame.iloc[:4].assign(dusty=pd.array([True, None, False, True], "boolean"))
    with pytest.raises(ValueError, match="holds booleans"):
        scale.add_redshift_columns_dask(dd.from_pandas(nullable, npartitions=1),
                                        ebv="dusty", precision="float32")
