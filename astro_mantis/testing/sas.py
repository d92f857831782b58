# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""A loopback SDSS Science Archive Server (SAS): spAll files and spectra over HTTP.

`SASServer` binds to 127.0.0.1 and serves, under ``/sas/dr{N}/``, the file tree that
``sdss-access`` addresses (``HttpAccess.remote(remote_base=server.url)``):

* ``{survey}/spectro/redux/{run2d}/spAll-lite-{run2d}.fits`` and
  ``spAll-{run2d}.fits``: the summary files of a ``SpecObjAll``-like table
  (`~astro_mantis.testing.make_specobj`), one row per spectrum of that reduction, in
  the spAll layout (`write_spall`);
* ``{survey}/spectro/redux/{run2d}/spectra/lite/{plate4}/spec-{plate4}-{mjd}-{fiber4}.fits``
  (``plate4``, ``fiber4``: four digits or more): synthetic ``spec-lite`` files in the
  real HDU layout (`spec_lite_hdulist`): primary header, ``COADD`` table (flux,
  loglam, ivar, and_mask, or_mask, wdisp, sky, model), the object's summary row
  (``SPALL``) and its emission-line fits (``SPZLINE``);

with ``HEAD`` answered like ``GET`` (size in ``Content-Length``), 404 for anything
else, and the faults of the other loopback servers: ``latency``, random
``error_rate`` (503), ``truncate_rate`` (the file cut short, with a matching
``Content-Length``: a damaged file as served) and ``html_rate`` (an HTML page with
status 200), and ``fail_next`` for these, ``"timeout"`` and ``"short"`` (the
full ``Content-Length`` announced, half the bytes sent, the connection closed: an
interrupted transfer). Faults apply to ``GET`` requests; ``HEAD`` requests are always
answered.
"""
import contextlib
import io
import os
import re
from collections import namedtuple

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..atomic import atomic_path
from .base import FAULT_KINDS, LoopbackService
from .skyserver import _HTML_503, _NOT_FOUND, make_specobj

__all__ = ["SASServer", "SASLogEntry", "write_spall", "spall_hdulist", "spec_lite_hdulist"]

#: One request as recorded in the ``log`` of a `SASServer`: method, endpoint
#: (``"spall"`` or ``"spectrum"``), parameters (the path's parts) and the bytes sent.
SASLogEntry = namedtuple("SASLogEntry", ["method", "endpoint", "params", "nbytes"])

_SPALL_RE = re.compile(r"/sas/dr(\d+)/([a-z]+)/spectro/redux/([^/]+)/spAll-(lite-)?([^/]+)\.fits")
_SPEC_RE = re.compile(r"/sas/dr(\d+)/([a-z]+)/spectro/redux/([^/]+)/spectra/lite/(\d{4,5})/"
                      r"spec-(\d{4,5})-(\d{5})-(\d{4})\.fits")
_HTML_200 = (b"<!DOCTYPE html>\n<html><head><title>SAS</title></head><body><h1>The Science "
             b"Archive Server is being updated</h1></body></html>\n")


# ----------------------------------------------------------------------------- files
def spall_hdulist(specobj, lite=True):
    """An spAll(-lite) file of a ``SpecObjAll``-like table, as an HDU list.

    Parameters
    ----------
    specobj : `~astropy.table.Table`
        With SkyServer's columns (``specObjID``, ``ra``, ``dec``, ``z``, ``zErr``,
        ``zWarning``, ``class``, ``plate``, ``mjd``, ``fiberID``, ``run2d`` and optionally
        ``subClass``, ``sciencePrimary``), as from `~astro_mantis.testing.make_specobj`.
    lite : bool
        The lite column set; otherwise a few more columns (fluxes, ``THING_ID``), as the
        full file has.

    Returns
    -------
    `~astropy.io.fits.HDUList`
        Primary HDU and one binary table with the spAll names: ``PLATE``, ``MJD``,
        ``FIBERID``, ``RUN2D``, ``PLUG_RA``, ``PLUG_DEC``, ``CLASS``, ``SUBCLASS``, ``Z``,
        ``Z_ERR``, ``ZWARNING``, ``SPECPRIMARY``, ``SPECOBJID`` (text), ... in spAll's
        types (``Z`` is float32).
    """
    n = len(specobj)

    def col(name, default):
        return np.asarray(specobj[name]) if name in specobj.colnames else default

    run2d = np.asarray(specobj["run2d"]).astype(str)
    primary = col("sciencePrimary", np.ones(n, dtype=np.int64)).astype(np.int16)
    sub = col("subClass", np.full(n, "")).astype(str)
    cls = np.asarray(specobj["class"]).astype(str)
    columns = [
        fits.Column("PROGRAMNAME", "8A", array=np.where(np.char.startswith(run2d, "v"),
                                                         "boss", "legacy")),
        fits.Column("PLATE", "J", array=np.asarray(specobj["plate"], dtype=np.int32)),
        fits.Column("MJD", "J", array=np.asarray(specobj["mjd"], dtype=np.int32)),
        fits.Column("FIBERID", "J", array=np.asarray(specobj["fiberID"], dtype=np.int32)),
        fits.Column("RUN2D", "8A", array=run2d),
        fits.Column("RUN1D", "8A", array=run2d),
        fits.Column("OBJTYPE", "16A", array=np.where(cls == "STAR", "SPECTROPHOTO_STD",
                                                      "GALAXY")),
        fits.Column("PLUG_RA", "D", unit="deg", array=np.asarray(specobj["ra"], dtype=float)),
        fits.Column("PLUG_DEC", "D", unit="deg", array=np.asarray(specobj["dec"], dtype=float)),
        fits.Column("CLASS", "6A", array=cls),
        fits.Column("SUBCLASS", "21A", array=sub),
        fits.Column("Z", "E", array=np.asarray(specobj["z"], dtype=np.float32)),
        fits.Column("Z_ERR", "E", array=np.asarray(specobj["zErr"], dtype=np.float32)),
        fits.Column("ZWARNING", "J", array=np.asarray(specobj["zWarning"], dtype=np.int32)),
        fits.Column("SN_MEDIAN_ALL", "E", array=np.full(n, 5.0, dtype=np.float32)),
        fits.Column("SPECPRIMARY", "I", array=primary),
        fits.Column("SPECOBJID", "19A",
                    array=np.asarray(specobj["specObjID"], dtype=np.uint64).astype(str)),
    ]
    if not lite:
        rng = np.random.default_rng(n)
        columns += [
            fits.Column("THING_ID", "K", array=np.arange(n, dtype=np.int64)),
            fits.Column("SPECTROFLUX", "5E", unit="nanomaggies",
                        array=rng.uniform(1, 50, (n, 5)).astype(np.float32)),
            fits.Column("FIBER2FLUX", "5E", unit="nanomaggies",
                        array=rng.uniform(1, 20, (n, 5)).astype(np.float32)),
            fits.Column("WAVEMIN", "E", array=np.full(n, 3600.0, dtype=np.float32)),
            fits.Column("WAVEMAX", "E", array=np.full(n, 10400.0, dtype=np.float32)),
        ]
    primary_hdu = fits.PrimaryHDU()
    primary_hdu.header["COMMENT"] = "astro_mantis loopback SAS: mock spAll file"
    table = fits.BinTableHDU.from_columns(columns)
    return fits.HDUList([primary_hdu, table])


def write_spall(specobj, path, lite=True, overwrite=False):
    """Write `~astro_mantis.testing.sas.spall_hdulist` of a table to a file (or file object).

    Parameters
    ----------
    specobj : `~astropy.table.Table`
        See `~astro_mantis.testing.sas.spall_hdulist`.
    path : str, path-like or file object
        Destination. A file is written atomically (`astro_mantis.atomic`): an existing
        one is replaced whole or not at all, and a reader never sees a torn file.
    lite : bool
        The lite column set.
    overwrite : bool
        Replace an existing file.
    """
    hdul = spall_hdulist(specobj, lite=lite)
    if not isinstance(path, (str, os.PathLike)):
        hdul.writeto(path, overwrite=overwrite)
        return
    if not overwrite and os.path.exists(path):
        raise OSError(f"File {os.fsdecode(path)} already exists. If you mean to replace it "
                      "then use the argument \"overwrite=True\".")
    with atomic_path(path, fsync=False) as tmp:  # a test fixture: rebuilt from its table
        hdul.writeto(tmp)


# (rest wavelength, relative strength) of the lines drawn into the mock spectra
_EMISSION = ((3728.48, 4.0), (4102.89, 0.4), (4341.68, 0.7), (4862.68, 1.5), (4960.30, 0.9),
             (5008.24, 2.6), (6549.86, 0.9), (6564.61, 5.0), (6585.27, 2.2), (6718.29, 1.0),
             (6732.67, 0.8))
_ABSORPTION = ((3934.78, 0.35), (3969.59, 0.3), (4305.61, 0.15), (5176.7, 0.12),
               (5894.6, 0.1))


def _seed(*values):
    return np.random.SeedSequence([int(v) % (2**63) for v in values])


def spec_lite_hdulist(row, seed=0):
    """A synthetic SDSS ``spec-lite`` file of one ``SpecObjAll`` row, in the real layout.

    The spectrum is a smooth continuum with a 4000 Å break and the main absorption
    lines, plus emission lines for star-forming galaxies (``subClass`` STARFORMING)
    and broad lines for quasars, all at the row's redshift, with Gaussian noise of
    unit variance (``ivar = 1``).

    Parameters
    ----------
    row : `~astropy.table.Row` or mapping
        ``specObjID``, ``ra``, ``dec``, ``z``, ``zErr``, ``zWarning``, ``class``, ``plate``,
        ``mjd``, ``fiberID``, ``run2d`` (and optionally ``subClass``).
    seed : int
        Seed of the noise (combined with the ``specObjID``).

    Returns
    -------
    `~astropy.io.fits.HDUList`
        HDU 0 (header: ``TELESCOP``, ``PLATEID``, ``MJD``, ``FIBERID``, ``RUN2D``,
        ``VERS2D``, ``PLUG_RA``, ``PLUG_DEC``, ``BUNIT``), ``COADD``, ``SPALL`` (the
        object's summary row: from spAll for BOSS, from specObj for SDSS-I/II in the
        real files) and ``SPZLINE``; ``specutils`` reads it with
        ``format="SDSS-III/IV spec"``.
    """
    run2d = str(row["run2d"]).strip()
    boss = run2d.startswith("v")
    z = float(row["z"])
    cls = str(row["class"]).strip().upper()
    sub = str(row["subClass"]).strip().upper() if "subClass" in _names(row) else ""
    rng = np.random.default_rng(_seed(seed, int(row["specObjID"])))
    loglam = (3.5523 if boss else 3.5798) + 1e-4 * np.arange(4640 if boss else 3840)
    wave = 10.0 ** loglam
    rest = wave / (1.0 + z)
    if cls == "STAR":
        model = 8.0 * (rest / 5000.0) ** -1.0
    else:
        model = 6.0 * (rest / 5000.0) ** 0.6 * np.where(rest < 4000.0, 0.6, 1.0)
    for line, depth in _ABSORPTION:
        model *= 1.0 - depth * np.exp(-0.5 * ((rest - line) / 4.0) ** 2)
    if cls == "QSO":
        for line, height in ((1549.06, 8.0), (1908.73, 5.0), (2799.12, 6.0), (4862.68, 4.0),
                             (6564.61, 9.0)):
            model += height * np.exp(-0.5 * ((rest - line) / 30.0) ** 2)
    elif sub == "STARFORMING" or cls == "GALAXY":
        scale = 6.0 if sub == "STARFORMING" else 1.5
        for line, height in _EMISSION:
            model += scale * height * np.exp(-0.5 * ((rest - line) / 2.5) ** 2)
    flux = (model + rng.normal(0.0, 1.0, wave.size)).astype(np.float32)
    n = wave.size
    and_mask = np.zeros(n, dtype=np.int32)
    and_mask[-20:] = 1 << 16  # the red end flagged, as real spectra often are
    coadd = fits.BinTableHDU.from_columns([
        fits.Column("flux", "E", array=flux),
        fits.Column("loglam", "E", array=loglam.astype(np.float32)),
        fits.Column("ivar", "E", array=np.where(and_mask == 0, 1.0, 0.0).astype(np.float32)),
        fits.Column("and_mask", "J", array=and_mask),
        fits.Column("or_mask", "J", array=and_mask),
        fits.Column("wdisp", "E", array=np.full(n, 1.2, dtype=np.float32)),
        fits.Column("sky", "E", array=np.full(n, 3.0, dtype=np.float32)),
        fits.Column("model", "E", array=model.astype(np.float32)),
    ], name="COADD")
    hdr = fits.Header()
    hdr["TELESCOP"] = "SDSS 2.5-M"
    hdr["PLATEID"] = int(row["plate"])
    hdr["MJD"] = int(row["mjd"])
    hdr["FIBERID"] = int(row["fiberID"])
    hdr["RUN2D"] = run2d
    hdr["RUN1D"] = run2d
    hdr["VERS2D"] = run2d if boss else "v5_3_12"
    hdr["PLUG_RA"] = float(row["ra"])
    hdr["PLUG_DEC"] = float(row["dec"])
    hdr["BUNIT"] = "1E-17 erg/cm^2/s/Ang"
    hdr["COMMENT"] = "astro_mantis loopback SAS: synthetic spectrum, not an observation"
    one = Table(row.table[row.index:row.index + 1]) if hasattr(row, "table") \
        else Table({k: [row[k]] for k in _names(row)})
    for name in [c for c in one.colnames if c.startswith("mock_")]:
        del one[name]
    spall_row = spall_hdulist(one, lite=True)[1]
    spall_row.name = "SPALL"
    lines = [(line, height) for line, height in _EMISSION]
    zline = fits.BinTableHDU.from_columns([
        fits.Column("LINENAME", "13A", array=[f"{w:.0f}" for w, _ in lines]),
        fits.Column("LINEWAVE", "D", array=[w for w, _ in lines]),
        fits.Column("LINEZ", "E", array=np.full(len(lines), z, dtype=np.float32)),
        fits.Column("LINEAREA", "E", array=np.array([h for _, h in lines], dtype=np.float32)),
    ], name="SPZLINE")
    return fits.HDUList([fits.PrimaryHDU(header=hdr), coadd, spall_row, zline])


def _names(row):
    if hasattr(row, "colnames"):
        return row.colnames
    return list(row.keys())


def _fits_bytes(hdul):
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


# ----------------------------------------------------------------------------- server
class SASServer(LoopbackService):
    """A loopback SDSS Science Archive Server (see the module notes).

    Parameters
    ----------
    specobj : `~astropy.table.Table`, optional
        The spectra (as from `~astro_mantis.testing.make_specobj`); default that of the
        bundled sample sky with ``seed``, the same as `~astro_mantis.testing.SkyServer`'s
        default.
    spall_products : sequence of {"lite", "full"}
        Which spAll files exist (default both).
    releases : iterable of int
        Data releases served (default 8 to 17).
    host, port, latency, error_rate, truncate_rate, html_rate, seed
        As for `~astro_mantis.testing.SkyServer`.

    Attributes
    ----------
    counts : `collections.Counter`
        Requests per endpoint (``"spall"``, ``"spectrum"``; HEAD requests included).
    log : list of `SASLogEntry`
        Every request.
    timeout_sleep : float
        Seconds a ``"timeout"`` fault waits (default 5).
    """

    _fault_kinds = FAULT_KINDS + ("short",)
    _endpoint_names = frozenset({"spall", "spectrum"})
    _log_type = SASLogEntry
    _fault_pages = {"5xx": (503, _HTML_503, "text/html"), "html": (200, _HTML_200, "text/html")}

    def __init__(self, specobj=None, *, spall_products=("lite", "full"), releases=range(8, 18),
                 host="127.0.0.1", port=0, latency=0.0, error_rate=0.0, truncate_rate=0.0,
                 html_rate=0.0, seed=0):
        super().__init__(host, port, latency, error_rate, truncate_rate, html_rate, seed)
        if specobj is None:
            from ..simulate import SampleSky

            specobj = make_specobj(SampleSky().catalog, seed=seed)
        self.specobj = specobj
        unknown = set(spall_products) - {"lite", "full"}
        if unknown:
            raise ValueError(f"spall_products must be among ('lite', 'full'), got {unknown}")
        self.spall_products = tuple(spall_products)
        self.releases = frozenset(int(r) for r in releases)
        self._files = {}

    @property
    def specobj(self):
        """The spectra served."""
        return self._specobj

    @specobj.setter
    def specobj(self, table):
        self._specobj = table
        self._files = {}
        self._index = {(int(p), int(m), int(f), str(r).strip()): k for k, (p, m, f, r) in
                       enumerate(zip(table["plate"], table["mjd"], table["fiberID"],
                                     table["run2d"]))}

    @property
    def remote_base(self):
        """The ``remote_base`` of ``sdss-access`` (the URL; paths start with ``/sas``)."""
        return self.url

    @contextlib.contextmanager
    def configure(self, conf=None):
        """Point ``astro_mantis.spectro.conf.sas_url`` at this server for a while.

        Parameters
        ----------
        conf : `~astropy.config.ConfigNamespace`, optional
            Namespace with a ``sas_url`` item; default ``astro_mantis.spectro.conf``.

        Yields
        ------
        `SASServer`
            This server.
        """
        if conf is None:
            from ..spectro import conf
        with conf.set_temp("sas_url", self.url):
            yield self

    def spall_bytes(self, run2d, lite=True):
        """The bytes of the spAll(-lite) file of a reduction (made once)."""
        key = ("spall", str(run2d), bool(lite))
        if key not in self._files:
            table = self._specobj
            rows = np.char.strip(np.asarray(table["run2d"]).astype(str)) == str(run2d)
            self._files[key] = _fits_bytes(spall_hdulist(table[rows], lite=lite))
        return self._files[key]

    def spectrum_bytes(self, plate, mjd, fiberid, run2d):
        """The bytes of a spectrum's spec-lite file; KeyError if there is no such spectrum."""
        k = self._index[(int(plate), int(mjd), int(fiberid), str(run2d))]
        key = ("spec", k)
        if key not in self._files:
            self._files[key] = _fits_bytes(spec_lite_hdulist(self._specobj[k], seed=self.seed))
        return self._files[key]

    def _resolve(self, path):
        """(endpoint, params, body) of a path, or (endpoint, params, None) if absent."""
        m = _SPALL_RE.fullmatch(path)
        if m:
            dr, _, run2d_dir, lite, run2d = m.groups()
            params = {"dr": int(dr), "run2d": run2d, "lite": bool(lite), "path": path}
            product = "lite" if lite else "full"
            ok = (int(dr) in self.releases and run2d_dir == run2d
                  and product in self.spall_products
                  and np.any(np.char.strip(np.asarray(self._specobj["run2d"]).astype(str))
                             == run2d))
            return "spall", params, self.spall_bytes(run2d, bool(lite)) if ok else None
        m = _SPEC_RE.fullmatch(path)
        if m:
            dr, _, run2d, plate_dir, plate, mjd, fiber = m.groups()
            params = {"dr": int(dr), "run2d": run2d, "plate": int(plate), "mjd": int(mjd),
                      "fiberid": int(fiber), "path": path}
            if int(dr) not in self.releases or int(plate_dir) != int(plate):
                return "spectrum", params, None
            try:
                return "spectrum", params, self.spectrum_bytes(plate, mjd, fiber, run2d)
            except KeyError:
                return "spectrum", params, None
        return None, {}, None

    def _handle(self, handler, method, split, body):
        endpoint, params, payload = self._resolve(split.path)
        if endpoint is None:
            handler.send_body(404, _NOT_FOUND, "text/html")
            return
        k = self._record(method, endpoint, params, None)
        self._sleep(self.latency)
        if payload is None:
            handler.send_body(404, _NOT_FOUND, "text/html")
            return
        fault = self._choose_fault(endpoint) if method == "GET" else None
        if self._serve_fault(handler, fault):
            return
        close = fault == "timeout"
        if fault == "truncate":
            payload = payload[:len(payload) // 2]
        elif fault == "short":
            self._set_count(k, len(payload) // 2)
            handler.send_body(200, payload[:len(payload) // 2], "application/fits", close=True,
                              length=len(payload))
            return
        self._set_count(k, len(payload) if method != "HEAD" else 0)
        handler.send_body(200, payload, "application/fits", close=close)

