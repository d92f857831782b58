# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The bundled sample sky: a few hundred mock galaxies that render without GalSim.

`SampleSky` serves the cutouts of the galaxies stored in
``astro_mantis/data/sample_sky.npz`` (made by `build_sample_sky` from a
`~astro_mantis.simulate.MockSky`) with the same ``render`` contract as
`~astro_mantis.simulate.MockSky.render`, using numpy and astropy only, so the
demo, the documentation and the tests that do not need GalSim still run on the
mock sky, and `astro_mantis.testing.SurveyServer` can serve it.

What is stored, and how faithful it is
======================================
Full noisy cutouts do not fit in a small file (Pan-STARRS alone is 578 kB per
galaxy in float32, and noise does not compress), so the file holds, per galaxy
and band, the **noiseless** image `~astro_mantis.simulate.MockSky` renders at
the services' default geometry (the galaxy, its neighbours and the stars around
it, PSF-convolved, in native units; PS1 with the tangent point at the galaxy),
and the band's sky noise σ (and, for PS1, the stack ``EXPTIME`` drawn at the
galaxy). With a randomised configuration (``MockSkyConfig.randomisation``) the
images are rendered under the galaxy's field conditions (PSF variant, zero
points, densities) and σ includes the field's noise factor, as
``MockSky.render`` applies them. The images are quantised in steps of σ/16 (an
integer per pixel, so pixels fainter than σ/32 become exactly 0) and
bzip2-compressed; noise is drawn at load time with
the mock sky's own noise model (`~astro_mantis.simulate.render.sky_noise`:
Poisson sky and source noise through the band's gain) and seeds, and the
coverage failures with its rules (GALEX holes, PS1 chip gaps).

Fidelity to ``MockSky(config, seed).render`` at the same position (for PS1
without ``skycell_center``), randomised configurations included:

* the noiseless image differs by at most σ/32 per pixel (rounding; rms σ/55,
  which adds 0.03 % to the noise variance);
* Pan-STARRS and unWISE (Gaussian noise regime, more than 1000 photons per
  pixel) get the very same noise deviates, so each pixel of a noisy render is
  within σ/32 of MockSky's (plus a negligible change of the source shot noise);
* GALEX (photon counting, a few sky photons per pixel) has the same noise
  statistics, but Poisson draws from slightly different means need not
  coincide, so its noise realisation differs where the galaxy is;
* GALEX holes and PS1 chip gaps fall exactly where MockSky puts them.

A request is served from storage when it is centred on a sample galaxy within
half a pixel (the WCS then uses the stored galaxy position, where the galaxy is)
at the survey's default pixel scale, with the default size or a smaller one of
the same parity (a centre crop). Elsewhere the render is **empty sky**: noise
only (no neighbours or stars) at the nominal level (without a field's noise
factor), with the same coverage rules. For Pan-STARRS the pixels of a stored
galaxy were drawn on the tangent plane at the galaxy; a request naming another
skycell centre gets that centre as ``CRVAL`` (as ``fitscut.cgi`` does) with the
stored pixels (the two projections differ by less than 0.01 pixel across a
cutout within 0.3° of the skycell centre) and the stored ``EXPTIME``, the one
drawn at the galaxy: ``MockSky`` draws a skycell's ``EXPTIME`` at its centre,
so there its counts and header differ by the ratio of the two exposure times.
"""

import io
import json
import math
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..logger import log
from ..shards import json_array, read_json_member, write_npz
from .render import sky_noise
from .service_format import (
    NATIVE_TO_BAND,
    SURVEY_BANDS,
    band_list,
    coord_to_radec,
    default_geometry,
    normalise_band,
    normalise_survey,
    ps1_geometry,
    ps1_hdulist,
    ps1_stack_exptime,
    viewer_geometry,
    viewer_hdulist,
)
from .sky import galex_coverage, noise_seed, ps1_chip_gap

__all__ = ["SAMPLE_SKY_PATH", "SampleSky", "build_sample_sky", "load_sample_sky"]

#: The bundled sample sky.
SAMPLE_SKY_PATH = Path(__file__).resolve().parent.parent / "data" / "sample_sky.npz"

_FORMAT = "astro_mantis.simulate.sample_sky"
_FORMAT_VERSION = 1
_SURVEYS = ("galex", "panstarrs", "unwise")
_CACHE = 24  # decoded galaxies kept in memory
#: Default size and seed of the bundled sample.
SAMPLE_N = 300
SAMPLE_SEED = 20261127


def _member(index, survey):
    return f"g{index:05d}_{survey}"


class SampleSky:
    """The bundled sample of mock galaxies, rendered as the survey services send them.

    Parameters
    ----------
    path : str or path-like, optional
        A file written by `build_sample_sky`; default the bundled
        ``astro_mantis/data/sample_sky.npz`` (``SAMPLE_SKY_PATH``).
    noise : bool, optional
        Add noise to renders (default True); ``render(..., noise=False)``
        overrides it per call.

    Attributes
    ----------
    catalog : `~astropy.table.Table`
        The sample galaxies: every column of the `~astro_mantis.simulate.MockSky`
        catalog (``id``, ``ra``, ``dec``, ``z``, ``type``, ``ebv_csfd``,
        ``ebv_planck``, ``mag_<band>`` ..., shapes), with units.
    meta : dict
        How the sample was made: seed, configuration, package version, noise
        and coverage settings, quantisation, provenance.
    seed : int
        Seed of the mock sky the sample comes from (and of its noise).

    Notes
    -----
    Needs neither GalSim nor the population's SED machinery. See the module
    notes for what is stored and how faithful renders are.

    Examples
    --------
    >>> from astro_mantis.simulate import SampleSky
    >>> sky = SampleSky()
    >>> row = sky.catalog[0]
    >>> hdul = sky.render("panstarrs", (row["ra"], row["dec"]), band="r")
    >>> hdul[0].data.shape
    (170, 170)
    """

    def __init__(self, path=None, noise=True):
        self.path = Path(SAMPLE_SKY_PATH if path is None else path)
        if not self.path.exists():
            raise FileNotFoundError(f"no sample sky at {self.path}")
        # the whole file (a few MB) is held in memory: members are decoded on demand
        self._npz = np.load(io.BytesIO(self.path.read_bytes()), allow_pickle=False)
        self.meta = read_json_member(self._npz, "meta")
        if self.meta.get("format") != _FORMAT:
            raise ValueError(f"{self.path} is not a sample sky file")
        self.seed = int(self.meta["seed"])
        self.noise = bool(noise)
        columns = read_json_member(self._npz, "columns")
        self.catalog = Table(np.asarray(self._npz["catalog"]))
        for name, info in columns.items():
            if name in self.catalog.colnames:
                if info.get("unit"):
                    self.catalog[name].unit = info["unit"]
                if info.get("description"):
                    self.catalog[name].description = info["description"]
        self.catalog.meta.update({"seed": self.seed, "simulated": True,
                                  "source": "astro_mantis sample sky"})
        self._sigma = {s: np.asarray(self._npz[f"sigma_{s}"]) for s in _SURVEYS}
        self._exptime = np.asarray(self._npz["exptime_panstarrs"])
        self._ra = np.asarray(self.catalog["ra"], dtype=float)
        self._dec = np.asarray(self.catalog["dec"], dtype=float)
        r, d = np.radians(self._ra), np.radians(self._dec)
        self._xyz = np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=1)
        self._cache = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self):
        return len(self.catalog)

    def __repr__(self):
        return (f"<SampleSky {len(self)} galaxies, seed={self.seed}, "
                f"version={self.meta.get('version')}>")

    # ------------------------------------------------------------------ lookup
    def find(self, coord, radius=None):
        """Index of the sample galaxy nearest a position, if within ``radius``.

        Parameters
        ----------
        coord : `~astropy.coordinates.SkyCoord` or (float, float)
            Position (degrees for a pair).
        radius : float, optional
            Arcsec; default 0.125 (half a Pan-STARRS pixel).

        Returns
        -------
        int or None
        """
        ra, dec = coord_to_radec(coord)
        radius = 0.125 if radius is None else float(radius)
        r, d = math.radians(ra), math.radians(dec)
        centre = np.array([math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d)])
        cosines = self._xyz @ centre
        best = int(np.argmax(cosines))
        sep = math.degrees(math.acos(min(1.0, float(cosines[best])))) * 3600.0
        return best if sep <= radius else None

    def galex_covered(self, coord):
        """Whether GALEX has data at a position (the mock sky's coverage rule).

        Parameters
        ----------
        coord : `~astropy.coordinates.SkyCoord` or (float, float)

        Returns
        -------
        bool
        """
        ra, dec = coord_to_radec(coord)
        cov = self.meta["coverage"]
        return galex_coverage(self.seed, ra, dec, cov["galex_hole_fraction"],
                              cov["galex_hole_cell"])

    def chip_gap_bands(self, coord):
        """The PS1 bands whose default cutout at a position is crossed by a NaN stripe.

        Parameters
        ----------
        coord : `~astropy.coordinates.SkyCoord` or (float, float)

        Returns
        -------
        list of str
        """
        ra, dec = coord_to_radec(coord)
        fraction = self.meta["coverage"]["ps1_nan_fraction"]
        return [b for b in SURVEY_BANDS["panstarrs"]
                if ps1_chip_gap(np.zeros((2, 2)), self.seed, b, ra, dec, fraction)]

    def noiseless(self, index, survey):
        """The stored noiseless cutout of one sample galaxy.

        Parameters
        ----------
        index : int
            Row of ``catalog``.
        survey : {"galex", "panstarrs", "unwise"}

        Returns
        -------
        `numpy.ndarray` of float64, shape (nbands, size, size)
            Native units, bands in native order (NUV, FUV; g r i z y; W1, W2),
            default geometry; a decoded copy.
        """
        return self._model(int(index), normalise_survey(survey)).copy()

    def _model(self, index, survey):
        key = (index, survey)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            ints = self._npz[_member(index, survey)]
        step = self._sigma[survey][index] / float(self.meta["quantisation"])
        model = ints * step[:, None, None]
        model.setflags(write=False)
        with self._lock:
            self._cache[key] = model
            while len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        return model

    # ------------------------------------------------------------------ render
    def render(self, survey, coord, size=None, pixscale=None, band=None, skycell_center=None,
               *, noise=None):
        """Render a cutout exactly as the survey service sends it.

        The contract of `astro_mantis.simulate.MockSky.render`: same
        arguments, same `~astropy.io.fits.HDUList` (shape, units, header
        keywords, WCS conventions). A stored galaxy is drawn when the request
        is centred on it within half a pixel; elsewhere the cutout is empty
        sky (noise only).

        Parameters
        ----------
        survey : {"galex", "panstarrs", "unwise"}
            Which service's output to imitate (``"ps1"`` is accepted).
        coord : `~astropy.coordinates.SkyCoord` or (float, float)
            Requested centre (ICRS; degrees for a pair).
        size : int, optional
            Cutout side in pixels. Defaults: 32 (GALEX, unWISE), 170 (PS1). On
            a sample galaxy at most the default and of the same parity.
        pixscale : float, optional
            Arcsec per pixel; only the survey's default (1.5, 0.25, 2.75) is
            stored.
        band : str, int or sequence, optional
            PS1: one band, required. GALEX/unWISE: None for all bands in
            native order, or which planes to return.
        skycell_center : (float, float), optional
            PS1 only: the skycell centre (deg), written as ``CRVAL``.
        noise : bool, optional
            Override the ``noise`` given at creation.

        Returns
        -------
        `~astropy.io.fits.HDUList`

        Raises
        ------
        ValueError
            For an unknown survey or band, a PS1 request without a band, a
            pixel scale other than the survey's default, or a size the stored
            cutout cannot provide.
        """
        survey = normalise_survey(survey)
        ra, dec = coord_to_radec(coord)
        size, pixscale = default_geometry(survey, size, pixscale)
        default_size, default_scale = default_geometry(survey)
        if abs(pixscale - default_scale) > 1e-9 * default_scale:
            raise ValueError(f"the sample sky stores {survey} cutouts at {default_scale}\" per "
                             f"pixel only, not {pixscale}\"")
        noise = self.noise if noise is None else bool(noise)
        index = self.find((ra, dec), radius=0.5 * pixscale)
        crop = None
        if index is not None:
            ra, dec = float(self._ra[index]), float(self._dec[index])
            margin = default_size - size
            if margin < 0 or margin % 2:
                raise ValueError(f"the sample sky stores {survey} cutouts of {default_size} "
                                 f"pixels: a centred cutout of {size} pixels cannot be cut "
                                 "from it (ask for at most that size, of the same parity)")
            crop = slice(margin // 2, margin // 2 + size)
        facts = self.meta["surveys"][survey]
        natives = facts["natives"]
        if survey == "panstarrs":
            if band is None:
                raise ValueError("a PS1 render needs one band: band='g', 'r', 'i', 'z' or 'y'")
            native = normalise_band("panstarrs", band)
            k = natives.index(native)
            crval, crpix, cd = ps1_geometry(ra, dec, size, pixscale, skycell_center)
            if index is None:
                typical = facts["exptime_typical"][k]
                exptime = ps1_stack_exptime(self.seed, native, crval[0], crval[1],
                                            typical=typical,
                                            scatter=self.meta["coverage"]["ps1_exptime_scatter"])
                sigma = facts["sigma_typical"][k] * math.sqrt(exptime / typical)
                model = np.zeros((size, size))
            else:
                exptime = float(self._exptime[index, k])
                sigma = float(self._sigma[survey][index, k])
                model = self._model(index, survey)[k, crop, crop]
            image = self._noisy(model, survey, native, sigma, ra, dec, size, pixscale, noise)
            ps1_chip_gap(image, self.seed, native, ra, dec,
                         self.meta["coverage"]["ps1_nan_fraction"])
            return ps1_hdulist(image, native, crval, crpix, cd, exptime)

        wanted = band_list(survey, band)
        crval, crpix, cd = viewer_geometry(ra, dec, size, pixscale)
        cube = np.zeros((len(wanted), size, size), dtype=np.float32)
        if survey != "galex" or self.galex_covered((ra, dec)):
            for i, native in enumerate(wanted):
                k = natives.index(native)
                if index is None:
                    sigma = facts["sigma_typical"][k]
                    model = np.zeros((size, size))
                else:
                    sigma = float(self._sigma[survey][index, k])
                    model = self._model(index, survey)[k, crop, crop]
                cube[i] = self._noisy(model, survey, native, sigma, ra, dec, size, pixscale,
                                      noise)
        return viewer_hdulist(cube, survey, wanted, crval, crpix, cd)

    def _noisy(self, model, survey, native, sigma, ra, dec, size, pixscale, noise):
        if not noise:
            return np.array(model, dtype=np.float32)
        facts = self.meta["surveys"][survey]
        k = facts["natives"].index(native)
        seed = noise_seed(self.seed, survey, native, ra, dec, size, pixscale)
        return sky_noise(model, sigma, facts["gain"][k], seed,
                         sky_subtracted=facts["sky_subtracted"]).astype(np.float32)


def load_sample_sky(path=None, noise=True):
    """Load the bundled sample sky (see `SampleSky`).

    Parameters
    ----------
    path : str or path-like, optional
        Another file written by `build_sample_sky`.
    noise : bool, optional
        Add noise to renders (default True).

    Returns
    -------
    `SampleSky`
    """
    return SampleSky(path, noise=noise)


def build_sample_sky(path=None, n=SAMPLE_N, seed=SAMPLE_SEED, config=None, quantisation=16,
                     progress=None):
    """Render a sample sky from a `~astro_mantis.simulate.MockSky` and store it compactly.

    Needs GalSim and the population extras (the ``sim`` extra). This is how
    the bundled ``astro_mantis/data/sample_sky.npz`` is made (``python -m
    astro_mantis.simulate.make_sample_sky``).

    Parameters
    ----------
    path : str or path-like, optional
        Output file; default the bundled one (``SAMPLE_SKY_PATH``).
    n : int, optional
        Number of galaxies (default 300).
    seed : int, optional
        Seed of the mock sky.
    config : `~astro_mantis.simulate.MockSkyConfig`, optional
        Default: the mock sky's defaults with ``south_fraction=0.02``, so a
        few galaxies lie south of dec −30° (no Pan-STARRS). ``n_galaxies`` is
        replaced by ``n``. With ``randomisation`` set, each galaxy is stored
        under its field's conditions (PSF, zero points, densities, and the
        noise factor in its σ), as ``MockSky.render`` draws it.
    quantisation : int, optional
        Images are stored in steps of σ / ``quantisation`` (default 16).
    progress : bool, optional
        Show a progress bar (default: on a terminal).

    Returns
    -------
    dict
        The metadata stored in the file, with its size (``"bytes"``).
    """
    from dataclasses import replace

    from .._version import __version__
    from ..progress import progress_bar
    from ..shards import column_meta
    from .dataset import PROVENANCE
    from .sky import _PS1_BANDS, MockSky, MockSkyConfig, _tan_wcs

    n = int(n)
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    quantisation = int(quantisation)
    if quantisation < 1:
        raise ValueError(f"quantisation must be a positive integer, got {quantisation}")
    if config is None:
        config = MockSkyConfig(south_fraction=0.02)
    config = replace(config, n_galaxies=n)
    sky = MockSky(config, seed=seed)
    imaging = config.imaging
    renderer = sky.renderer
    catalog = sky.catalog
    arrays = {}
    sigmas = {s: np.zeros((n, len(SURVEY_BANDS[s]))) for s in _SURVEYS}
    exptimes = np.zeros((n, 5))
    members = []
    worst = 0.0
    for i in progress_bar(progress, iterable=range(n), desc="sample sky"):
        ra, dec = float(catalog["ra"][i]), float(catalog["dec"][i])
        # the field's randomised conditions (None without randomisation): its PSF variant
        # and zero points enter the noiseless images, its noise factor every stored sigma,
        # as MockSky.render applies them
        draw = sky._field(ra, dec)
        for survey in _SURVEYS:
            size, pixscale = default_geometry(survey)
            natives = band_list(survey, None)
            bands = [NATIVE_TO_BAND[(survey, b)] for b in natives]
            if survey == "panstarrs":
                crval, crpix, cd = ps1_geometry(ra, dec, size, pixscale)
                cube, ex = sky._ps1_clean(ra, dec, size, pixscale, crval, crpix, cd)
                exptimes[i] = ex
                sig = [renderer.sky_sigma(b, pixscale, e) for b, e in zip(_PS1_BANDS, ex)]
            else:
                crval, crpix, cd = viewer_geometry(ra, dec, size, pixscale)
                cube = sky._render_clean(survey, natives, ra, dec, _tan_wcs(crval, crpix, cd=cd),
                                         size, pixscale, [None] * len(natives), draw)
                sig = [renderer.sky_sigma(b, pixscale) for b in bands]
            if draw is not None:  # without randomisation the sigmas stay as they were
                sig = [s * draw.noise_scale for s in sig]
            sigmas[survey][i] = sig
            scaled = np.asarray(cube, dtype=np.float64) / np.asarray(sig)[:, None, None]
            ints = np.rint(scaled * quantisation)
            if np.abs(ints).max() >= 2**31 - 1:
                raise ValueError(f"galaxy {i} is too bright for int32 storage in {survey}")
            worst = max(worst, float(np.abs(ints / quantisation - scaled).max()))
            members.append((_member(i, survey), ints.astype(np.int32)))
    typical = {}
    for survey in _SURVEYS:
        size, pixscale = default_geometry(survey)
        natives = band_list(survey, None)
        bands = [NATIVE_TO_BAND[(survey, b)] for b in natives]
        facts = {"natives": list(natives), "bands": bands, "size": size,
                 "pixscale": pixscale,
                 "gain": [imaging.gain[b] for b in bands],
                 "sky_subtracted": bool(imaging.sky_subtracted[survey])}
        if survey == "panstarrs":
            facts["exptime_typical"] = [imaging.ps1_exptime[b] for b in bands]
            facts["sigma_typical"] = [renderer.sky_sigma(b, pixscale, imaging.ps1_exptime[b])
                                      for b in bands]
        else:
            facts["sigma_typical"] = [renderer.sky_sigma(b, pixscale) for b in bands]
        typical[survey] = facts
    meta = {
        "format": _FORMAT, "format_version": _FORMAT_VERSION,
        "simulated": True,
        "description": "Sample sky of astro_mantis: simulated mock galaxies, not observations",
        "provenance": PROVENANCE,
        "n": n, "seed": int(seed), "config": repr(config), "version": __version__,
        "quantisation": quantisation,
        "max_rounding_sigma": round(worst, 6),
        "storage": ("per galaxy and survey: noiseless image (galaxy, neighbours, stars) at the "
                    "default geometry as int32 round(image / sigma * quantisation), bzip2; "
                    "noise is drawn at load time"),
        "surveys": typical,
        "coverage": {"galex_hole_fraction": imaging.galex_hole_fraction,
                     "galex_hole_cell": imaging.galex_hole_cell,
                     "ps1_nan_fraction": imaging.ps1_nan_fraction,
                     "ps1_exptime_scatter": imaging.ps1_exptime_scatter},
        "noise": bool(imaging.noise),
    }
    arrays["meta"] = json_array(meta)
    rows = catalog.as_array()
    if np.ma.isMaskedArray(rows):
        rows = rows.filled()
    arrays["catalog"] = rows
    arrays["columns"] = json_array(column_meta(catalog))
    for survey in _SURVEYS:
        arrays[f"sigma_{survey}"] = sigmas[survey]
    arrays["exptime_panstarrs"] = exptimes
    arrays.update(members)
    target = Path(SAMPLE_SKY_PATH if path is None else path)
    nbytes = write_npz(target, arrays, compression="bzip2")
    meta["bytes"] = nbytes
    log.info(f"sample sky: {n} galaxies, {nbytes / 1e6:.2f} MB -> {target}")
    return meta


def _describe(meta):  # pragma: no cover - used by the make_sample_sky script
    return json.dumps({k: meta[k] for k in ("n", "seed", "version", "quantisation",
                                            "max_rounding_sigma", "bytes")}, indent=1)
