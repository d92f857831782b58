"""Per-row arrays in `RedshiftPDF.meta` (the ``flags``, ``valid`` and ``features`` of
``predict``) follow the rows and stay out of the table column's meta."""
import numpy as np
from astropy.table import Table

from astro_mantis.pdf import RedshiftPDF


def _pdf(n=6, seed=1):
    rng = np.random.default_rng(seed)
    meta = {"model": "m", "sha256": "abc", "flags": np.arange(n, dtype=np.int64),
            "valid": np.arange(n * 9).reshape(n, 9) % 2 == 0,
            "features": rng.random((n, 512)).astype(np.float32)}
    return RedshiftPDF(rng.random((n, 400)).astype(np.float32), meta=meta)


def test_indexing_selects_the_rows_of_per_row_meta():
    p = _pdf()
    sub = p[1:4]
    assert sub.meta["flags"].tolist() == [1, 2, 3]
    np.testing.assert_array_equal(sub.meta["valid"], p.meta["valid"][1:4])
    assert sub.meta["features"].shape == (3, 512)
    assert sub.meta["model"] == "m" and sub.meta["sha256"] == "abc"
    picked = p[[5, 0]]
    assert picked.meta["flags"].tolist() == [5, 0]
    masked = p[p.meta["flags"] % 2 == 1]
    assert masked.meta["flags"].tolist() == [1, 3, 5]
    one = p[-2]
    assert one.isscalar and one.meta["flags"] == 4 and isinstance(one.meta["flags"], int)
    assert one.meta["valid"].shape == (9,) and one.meta["features"].shape == (512,)
    # the original is untouched
    assert p.meta["flags"].shape == (6,)


def test_concatenate_joins_per_row_meta():
    p = _pdf()
    cat = RedshiftPDF.concatenate([p[:2], p[2:5], p[5]])
    assert len(cat) == 6
    np.testing.assert_array_equal(cat.meta["flags"], p.meta["flags"])
    np.testing.assert_array_equal(cat.meta["valid"], p.meta["valid"])
    np.testing.assert_array_equal(cat.meta["features"], p.meta["features"])
    assert cat.meta["model"] == "m"
    # a piece without the array: the key is dropped rather than left wrong
    other = RedshiftPDF(np.ones((3, 400)), meta={"model": "m"})
    mixed = RedshiftPDF.concatenate([p, other])
    assert "flags" not in mixed.meta and mixed.meta["model"] == "m"
    # the stack of all rows carries no per-row arrays
    assert set(p.stack().meta) == {"model", "sha256"}


def test_table_column_meta_keeps_only_provenance(tmp_path):
    p = _pdf(n=20)
    col = p.to_table_columns()["z_pdf"]
    assert {"flags", "valid", "features"}.isdisjoint(col.meta)
    assert col.meta["model"] == "m" and col.meta["sha256"] == "abc"
    assert "flags" in p.meta  # not removed from the object
    t = Table(p.to_table_columns())
    fn = tmp_path / "t.fits"
    t.write(fn)
    back = RedshiftPDF.from_table(Table.read(fn))
    assert back.meta.get("model") == "m" and "features" not in back.meta
    np.testing.assert_allclose(back.pdf, p.pdf)
    # a scalar PDF: small arrays (its ``valid``) are kept, its features are not
    scol = p[3].to_table_columns()["z_pdf"]
    assert "features" not in scol.meta and scol.meta["flags"] == 3


def test_smoothed_mode_near_the_edges_matches_its_docstring():
    """The numbers smoothed_mode's docstring quotes: edge peaks move inwards, less than
    the mean and median do."""
    from astro_mantis.pdf import Z_CENTERS

    def gauss(mu, sig):
        return RedshiftPDF(np.exp(-0.5 * ((Z_CENTERS - mu) / sig) ** 2))

    for (mu, sig), (sm, med, mean) in {(0.02, 0.05): (0.031, 0.042, 0.048),
                                       (0.0, 0.1): (0.047, 0.067, 0.080),
                                       (1.59, 0.05): (1.573, 1.562, 1.556)}.items():
        p = gauss(mu, sig)
        assert round(p.smoothed_mode(), 3) == sm
        assert round(p.median(), 3) == med and round(p.mean(), 3) == mean
        assert abs(p.smoothed_mode() - mu) < abs(p.median() - mu) < abs(p.mean() - mu)
    assert "not dragged up" not in RedshiftPDF.smoothed_mode.__doc__
