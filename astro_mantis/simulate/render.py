# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""GalSim rendering of mock galaxies and stars in the surveys' native units.

`ImagingConfig` says how each of the nine bands is observed: PSF shape and
FWHM, 5σ point-source depth, effective gain, and how often coverage fails
(GALEX holes, PS1 chip gaps); `ImageRenderer` draws a list of sources on a
cutout's pixel grid with GalSim and adds the noise.

What an image is
================
Every source is drawn at the sub-pixel position the cutout's WCS gives for
its sky position (`astropy.wcs.WCS.world_to_pixel_values`), with the local
Jacobian of that WCS (so position angles stay east of north whatever the
projection), convolved with the band's PSF and integrated over the pixel
(as GalSim's ``method="auto"`` does). Pixel sums are fluxes in the service's unit
(DESIGN §4): counts/s for GALEX (``m_AB = 20.08 / 18.82 - 2.5 log10``),
counts for the PS1 stacks (``m_AB = 25 + 2.5 log10(EXPTIME) - 2.5 log10``)
and Vega nanomaggies for unWISE (``m_AB = 22.5 + 2.699 / 3.339 - 2.5 log10``).

Galaxies are a de Vaucouleurs bulge (Sérsic n = 4, truncated at
``ImagingConfig.bulge_truncation`` half-light radii; the catalog flux is the
flux inside) plus an exponential disk (Sérsic n = 1), sharing one axis ratio
and position angle; a galaxy with both radii zero is a point source, as are
stars.

PSFs
====
* Pan-STARRS1 stacks: Kolmogorov (atmospheric seeing; its power-law wings
  are close to those of PS1 stack PSFs); a Moffat (β = ``ImagingConfig.moffat_beta``)
  may be chosen instead.
* GALEX: Gaussian. The GALEX PSF is a nearly Gaussian core with faint
  extended wings (Morrissey et al. 2007).
* unWISE: Gaussian, which matches the core of the WISE PSF at these pixel
  scales (the diffraction rings lie below the noise of a 32-pixel cutout);
  ``"airy"`` is available.

The FWHM is that of the optical PSF before pixel integration; fitting a
pixel-integrated Gaussian (e.g. ``photutils.psf.fit_fwhm``) returns it.

How it is drawn
===============
All bands of a survey share one pixel grid, so the work is arranged around
Fourier transforms that serve every band (``ImageRenderer(method="fourier")``,
the default):

* catalog galaxies: GalSim samples the transform of each profile, mapped to
  pixel coordinates, once per cutout; each band multiplies it by its cached
  PSF ⊗ pixel transform and the sub-pixel phase and inverse-FFTs a stamp
  (folding power beyond the pixel Nyquist frequency back where the PSF has
  any, as for unWISE, so that pixels are exact integrals);
* neighbours and stars (sources flagged ``field``): no GalSim object at
  all; their transforms are written analytically (exponential disk,
  tabulated truncated de Vaucouleurs bulge, point sources) on batches of
  stamps of equal size.

``method="galsim"`` draws every source in every band with GalSim's own
``drawImage``; the tests hold the fast path to it (differences below 1e-3 of
the peak).

Noise
=====
The sky is Poisson noise of a uniform background ``B`` (native units per
pixel) seen through an effective gain ``g`` (detected photons or electrons
per native unit), and every source adds its own Poisson noise. ``B`` is set
so that the sky alone gives the documented 5σ point-source depth for
PSF-weighted (optimal) photometry: with the pixelised PSF ``p`` (unit sum),
``N_eff = 1 / Σ p²`` and the flux ``F5`` of a source at the depth,
``σ_sky = F5 / (5 √N_eff)`` per pixel and ``B = g σ_sky²``. Images are
background-subtracted (``B`` removed after the noise is drawn) unless
``ImagingConfig.sky_subtracted`` says otherwise. Where more than 1000 photons
per pixel are expected the Poisson draw is replaced by a Gaussian of the
same variance (indistinguishable, and several times faster).
"""

import math
from dataclasses import dataclass, field, fields

import numpy as np

from ._checks import check_fraction
from .service_format import NATIVE_TO_BAND, PS1_EXPTIME, native_flux

try:
    import galsim
except ImportError:  # pragma: no cover - exercised only without the extra
    galsim = None

__all__ = [
    "BANDS",
    "DEFAULT_DEPTH",
    "DEFAULT_GAIN",
    "SURVEY_OF_BAND",
    "ImageRenderer",
    "ImagingConfig",
    "require_galsim",
    "sky_noise",
]

#: The nine bands in model channel order (as ``astro_mantis.simulate.photometry.BANDS``).
BANDS = ("nuv", "fuv", "g", "r", "i", "z", "y", "w1", "w2")

#: Band name → survey.
SURVEY_OF_BAND = {band: survey for (survey, _native), band in NATIVE_TO_BAND.items()}

#: Band name → native band identifier of its survey (``"n"``, ``"g"``, ``1`` ...).
NATIVE_OF_BAND = {band: native for (_survey, native), band in NATIVE_TO_BAND.items()}

#: Documented 5σ point-source depths (AB).
#:
#: * GALEX All-sky Imaging Survey: FUV 19.9, NUV 20.8 (Morrissey et al. 2007,
#:   ApJS 173, 682, Table 1; Bianchi et al. 2014).
#: * Pan-STARRS1 3π stacks: g 23.3, r 23.2, i 23.1, z 22.3, y 21.4 (Chambers
#:   et al. 2016, arXiv:1612.05560, Table 11).
#: * unWISE: AllWISE reaches S/N = 5 at W1 ≈ 16.9, W2 ≈ 15.9 (Vega; CatWISE2020
#:   release notes) and the unWISE catalog detects sources at 5σ about 0.7 mag
#:   fainter (Schlafly, Meisner & Green 2019, ApJS 240, 30): W1 17.6, W2 16.6
#:   Vega, i.e. 20.3 and 19.9 AB.
DEFAULT_DEPTH = {"nuv": 20.8, "fuv": 19.9, "g": 23.3, "r": 23.2, "i": 23.1, "z": 22.3,
                 "y": 21.4, "w1": 20.3, "w2": 19.9}

#: Effective gains (detected photons or electrons per native unit). They set
#: the source shot noise, and the graininess of the GALEX sky; the sky noise
#: itself follows from the depth.
#:
#: * GALEX: counts/s → counts, i.e. the exposure time; AIS visits last about
#:   100 s (Morrissey et al. 2007).
#: * PS1 stack counts are taken as electrons (gain 1).
#: * unWISE: order of magnitude for full-depth NEOWISE coadds (about a hundred
#:   7.7 s frames of WISE's ≈ 3-4 e⁻/DN detectors).
DEFAULT_GAIN = {"nuv": 100.0, "fuv": 100.0, "g": 1.0, "r": 1.0, "i": 1.0, "z": 1.0,
                "y": 1.0, "w1": 50.0, "w2": 25.0}

_PSF_MODELS = ("gaussian", "moffat", "kolmogorov", "airy")
_DEFAULT_PSF_MODEL = {"galex": "gaussian", "panstarrs": "kolmogorov", "unwise": "gaussian"}
_SURVEYS = ("galex", "panstarrs", "unwise")
_AIRY_FWHM = 1.028993969962188  # FWHM of an Airy disk in units of lambda / D
_EXP_HALF_LIGHT = 1.6783469900166605  # half-light radius / scale length of an exponential
_GAUSSIAN_PHOTONS = 1000.0  # above this many photons per pixel, Gaussian replaces Poisson


def require_galsim():
    """Return the ``galsim`` module, or raise an ImportError saying how to get it.

    Returns
    -------
    module
        ``galsim``.
    """
    if galsim is None:
        raise ImportError("rendering the mock sky needs GalSim: pip install 'astro-mantis[sim]' "
                          "(or pip install galsim)")
    return galsim


def _default_psf_fwhm():
    """PSF FWHM (arcsec) per band, from the survey declarations in `astro_mantis.surveys`."""
    from ..surveys import get_survey

    out = {}
    for band in BANDS:
        survey = get_survey(SURVEY_OF_BAND[band])
        table = {str(k).lower(): v for k, v in survey.psf_fwhm.items()}
        out[band] = float(table[band.lower()].to_value("arcsec"))
    return out


def _band_dict(name, given, default, *, positive=True, finite=True):
    """Merge a per-band override dict into defaults, validating every value."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ValueError(f"ImagingConfig.{name} must be a dict band -> value, got {given!r}")
    unknown = [b for b in given if str(b).lower() not in BANDS]
    if unknown:
        raise ValueError(f"ImagingConfig.{name} has unknown band(s) {unknown}; "
                         f"bands are {BANDS}")
    merged = dict(default)
    merged.update({str(b).lower(): v for b, v in given.items()})
    for band, value in merged.items():
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"ImagingConfig.{name}[{band!r}] must be a number, "
                             f"got {value!r}") from None
        if (finite and not math.isfinite(value)) or (positive and not value > 0):
            raise ValueError(f"ImagingConfig.{name}[{band!r}] must be a positive finite "
                             f"number, got {value!r}")
        merged[band] = value
    return merged


def _nonneg(name, value, positive=False):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"ImagingConfig.{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"ImagingConfig.{name} must be a {kind} finite number, got {value!r}")
    return value


@dataclass
class ImagingConfig:
    """How the nine bands are observed: PSFs, depths, noise and coverage.

    Per-band settings are dicts keyed by band name (``"nuv"``, ``"fuv"``,
    ``"g"`` ... ``"y"``, ``"w1"``, ``"w2"``); a partial dict overrides only
    the bands it names. Invalid values raise `ValueError` naming the field.

    Parameters
    ----------
    psf_fwhm : dict, optional
        PSF FWHM in arcsec. Defaults are the survey declarations of
        `astro_mantis.surveys`: GALEX NUV 5.3″, FUV 4.2″ (Morrissey et al.
        2007); PS1 g 1.31″, r 1.19″, i 1.11″, z 1.07″, y 1.02″ (3π stack
        medians, Chambers et al. 2016); unWISE W1 6.1″, W2 6.4″ (Lang 2014).
    depth : dict, optional
        5σ point-source depth (AB) for PSF-weighted photometry on the sky
        noise; defaults `~astro_mantis.simulate.render.DEFAULT_DEPTH`
        (documented survey depths, with sources). For PS1 it applies at the
        typical ``EXPTIME`` of ``ps1_exptime`` and scales as
        ``1.25 log10(EXPTIME / typical)``.
    gain : dict, optional
        Effective gain: detected photons (or electrons) per native unit;
        defaults `~astro_mantis.simulate.render.DEFAULT_GAIN`.
    psf_model : dict, optional
        PSF family per survey (``"galex"``, ``"panstarrs"``, ``"unwise"``):
        ``"gaussian"``, ``"moffat"``, ``"kolmogorov"`` or ``"airy"``. Defaults:
        Kolmogorov for PS1, Gaussian for GALEX and unWISE.
    moffat_beta : float, optional
        Moffat index when a survey uses ``"moffat"`` (default 3.5).
    ps1_exptime : dict, optional
        Typical PS1 stack ``EXPTIME`` (s) per PS1 band; defaults
        `astro_mantis.simulate.service_format.PS1_EXPTIME`.
    ps1_exptime_scatter : float, optional
        Per-skycell exposure times are uniform in ``typical × [1 - s, 1 + s]``
        (default 0.4; 0 for a uniform survey). Must be in [0, 1).
    galex_hole_fraction : float, optional
        Fraction of the sky, in cells of ``galex_hole_cell`` degrees, without
        GALEX coverage (the viewer then returns an all-zero cube); default 0.05.
    galex_hole_cell : float, optional
        Size (deg) of the coverage cells, about a GALEX field (default 1.2).
    ps1_nan_fraction : float, optional
        Fraction of PS1 cutouts (per position and band) crossed by a NaN
        stripe, as chip gaps and stack edges leave them (default 0.03).
    star_density : float, optional
        Stars per square degree; None (default) takes the population model's
        ``astro_mantis.simulate.population.star_number_density`` (about 5700
        deg⁻² for 14 < g < 24 at high Galactic latitude); 0 for none.
    neighbour_density : float, optional
        Faint field galaxies per square degree; None (default) takes
        ``astro_mantis.simulate.population.background_number_density``
        (about 36000 deg⁻² for 18 < r < 24); 0 for none.
    neighbour_depth_margin : float, optional
        Neighbours and stars are drawn in a band only where brighter than the
        band's depth plus this margin (default 1.5 mag): fainter ones add
        nothing visible, only time. A non-negative finite number of magnitudes
        (0 draws those brighter than the depth).
    sky_subtracted : dict, optional
        Per survey, whether the background ``B`` is removed after the noise
        is drawn (default True for all three: PS1 stacks, and the viewer's
        GALEX and unWISE layers, are served background-subtracted here).
        Values must be ``True`` or ``False``.
    bulge_truncation : float, optional
        The de Vaucouleurs bulge is truncated at this many half-light radii
        (default 8).
    folding_threshold : float, optional
        GalSim's ``folding_threshold`` (default 5e-3): the accuracy/speed
        trade-off of its FFTs.
    noise : bool, optional
        Add noise (default True); False gives noiseless images, for tests.
    """

    psf_fwhm: dict = field(default_factory=dict)
    depth: dict = field(default_factory=dict)
    gain: dict = field(default_factory=dict)
    psf_model: dict = field(default_factory=dict)
    moffat_beta: float = 3.5
    ps1_exptime: dict = field(default_factory=dict)
    ps1_exptime_scatter: float = 0.4
    galex_hole_fraction: float = 0.05
    galex_hole_cell: float = 1.2
    ps1_nan_fraction: float = 0.03
    star_density: float = None
    neighbour_density: float = None
    neighbour_depth_margin: float = 1.5
    sky_subtracted: dict = field(default_factory=dict)
    bulge_truncation: float = 8.0
    folding_threshold: float = 5e-3
    noise: bool = True

    def __post_init__(self):
        self.psf_fwhm = _band_dict("psf_fwhm", self.psf_fwhm, _default_psf_fwhm())
        self.depth = _band_dict("depth", self.depth, DEFAULT_DEPTH, positive=False)
        self.gain = _band_dict("gain", self.gain, DEFAULT_GAIN)
        if not isinstance(self.psf_model, dict):
            raise ValueError(f"ImagingConfig.psf_model must be a dict survey -> model, "
                             f"got {self.psf_model!r}")
        unknown = [s for s in self.psf_model if s not in _SURVEYS]
        if unknown:
            raise ValueError(f"ImagingConfig.psf_model has unknown survey(s) {unknown}; "
                             f"surveys are {_SURVEYS}")
        models = dict(_DEFAULT_PSF_MODEL)
        models.update({s: str(m).lower() for s, m in self.psf_model.items()})
        for survey, model in models.items():
            if model not in _PSF_MODELS:
                raise ValueError(f"ImagingConfig.psf_model[{survey!r}] must be one of "
                                 f"{_PSF_MODELS}, got {model!r}")
        self.psf_model = models
        self.moffat_beta = _nonneg("moffat_beta", self.moffat_beta, positive=True)
        if not self.moffat_beta > 1.1:
            raise ValueError(f"ImagingConfig.moffat_beta must exceed 1.1 (finite flux), "
                             f"got {self.moffat_beta!r}")
        if not isinstance(self.ps1_exptime, dict):
            raise ValueError(f"ImagingConfig.ps1_exptime must be a dict band -> seconds, "
                             f"got {self.ps1_exptime!r}")
        bad = [b for b in self.ps1_exptime if b not in PS1_EXPTIME]
        if bad:
            raise ValueError(f"ImagingConfig.ps1_exptime has non-PS1 band(s) {bad}")
        exptimes = dict(PS1_EXPTIME)
        exptimes.update(self.ps1_exptime)
        for band, value in exptimes.items():
            exptimes[band] = _nonneg(f"ps1_exptime[{band!r}]", value, positive=True)
        self.ps1_exptime = exptimes
        self.ps1_exptime_scatter = check_fraction("ImagingConfig.ps1_exptime_scatter",
                                                   self.ps1_exptime_scatter)
        if self.ps1_exptime_scatter >= 1.0:
            raise ValueError("ImagingConfig.ps1_exptime_scatter must be below 1, "
                             f"got {self.ps1_exptime_scatter!r}")
        self.galex_hole_fraction = check_fraction("ImagingConfig.galex_hole_fraction",
                                                   self.galex_hole_fraction)
        self.galex_hole_cell = _nonneg("galex_hole_cell", self.galex_hole_cell, positive=True)
        self.ps1_nan_fraction = check_fraction("ImagingConfig.ps1_nan_fraction",
                                                self.ps1_nan_fraction)
        if self.star_density is not None:
            self.star_density = _nonneg("star_density", self.star_density)
        if self.neighbour_density is not None:
            self.neighbour_density = _nonneg("neighbour_density", self.neighbour_density)
        self.neighbour_depth_margin = _nonneg("neighbour_depth_margin",
                                              self.neighbour_depth_margin)
        if not isinstance(self.sky_subtracted, dict):
            raise ValueError(f"ImagingConfig.sky_subtracted must be a dict survey -> bool, "
                             f"got {self.sky_subtracted!r}")
        unknown = [s for s in self.sky_subtracted if s not in _SURVEYS]
        if unknown:
            raise ValueError(f"ImagingConfig.sky_subtracted has unknown survey(s) {unknown}")
        subtracted = dict.fromkeys(_SURVEYS, True)
        for survey, value in self.sky_subtracted.items():
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"ImagingConfig.sky_subtracted[{survey!r}] must be True or "
                                 f"False, got {value!r}")
            subtracted[survey] = bool(value)
        self.sky_subtracted = subtracted
        self.bulge_truncation = _nonneg("bulge_truncation", self.bulge_truncation,
                                        positive=True)
        if self.bulge_truncation < 2.0:
            raise ValueError("ImagingConfig.bulge_truncation must be at least 2 half-light "
                             f"radii, got {self.bulge_truncation!r}")
        self.folding_threshold = _nonneg("folding_threshold", self.folding_threshold,
                                         positive=True)
        if self.folding_threshold >= 0.2:
            raise ValueError("ImagingConfig.folding_threshold must be below 0.2, "
                             f"got {self.folding_threshold!r}")
        if not isinstance(self.noise, (bool, np.bool_)):
            raise ValueError(f"ImagingConfig.noise must be True or False, got {self.noise!r}")
        self.noise = bool(self.noise)

    def band_depth(self, band, exptime=None):
        """The 5σ point-source depth (AB) of a band, for a PS1 ``EXPTIME``.

        Parameters
        ----------
        band : str
            Band name (``"nuv"`` ... ``"w2"``).
        exptime : float, optional
            PS1 only: the stack's exposure time (s); the depth moves by
            ``1.25 log10(exptime / typical)``.

        Returns
        -------
        float
        """
        depth = self.depth[band]
        if exptime is not None and SURVEY_OF_BAND[band] == "panstarrs":
            depth += 1.25 * math.log10(float(exptime) / self.ps1_exptime[band])
        return depth

    def key(self):
        """A hashable summary of every setting (for caches)."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            out.append(tuple(sorted(value.items())) if isinstance(value, dict) else value)
        return tuple(out)


def _as_arrays(sources):
    """Sources (Table or dict of arrays) as a dict of float/bool numpy arrays."""
    if sources is None:
        return {}
    names = sources.colnames if hasattr(sources, "colnames") else list(sources)
    out = {}
    for name in names:
        col = sources[name]
        col = getattr(col, "value", col)
        arr = np.asarray(np.ma.filled(np.ma.asarray(col), np.nan)
                         if np.ma.isMaskedArray(col) else col)
        out[name] = arr
    return out


class ImageRenderer:
    """Draws sources on a cutout grid with GalSim, in native units, with noise.

    Parameters
    ----------
    imaging : `ImagingConfig`, optional
        Observing settings; defaults to ``ImagingConfig()``.
    method : {"fourier", "galsim"}, optional
        ``"fourier"`` (default): each source is sampled in Fourier space once
        per cutout with GalSim and every band reuses it (several times
        faster when a survey has several bands). ``"galsim"``: one GalSim
        ``drawImage`` per source and band, the reference the fast path is
        tested against.

    Notes
    -----
    PSF objects, their Fourier transforms, effective pixel counts and GalSim
    parameters are cached per band and pixel scale, so one renderer should
    serve many cutouts. Renders are deterministic: the noise comes from the
    seeds given to `render` or `render_bands`.
    """

    def __init__(self, imaging=None, method="fourier"):
        require_galsim()
        if method not in ("fourier", "galsim"):
            raise ValueError(f"method must be 'fourier' or 'galsim', got {method!r}")
        self.method = method
        self.imaging = ImagingConfig() if imaging is None else imaging
        if not isinstance(self.imaging, ImagingConfig):
            raise ValueError(f"imaging must be an ImagingConfig, got {type(imaging).__name__}")
        self._gsparams = galsim.GSParams(folding_threshold=self.imaging.folding_threshold,
                                         maxk_threshold=3e-3)
        self._psf = {}
        self._neff = {}
        self._psf_k = {}
        self._fold = {}

    # ------------------------------------------------------------------ PSF
    def psf(self, band):
        """The GalSim PSF of a band (cached), in arcsec, unit flux.

        Parameters
        ----------
        band : str
            Band name.

        Returns
        -------
        ``galsim.GSObject``
        """
        if band not in self._psf:
            fwhm = self.imaging.psf_fwhm[band]
            model = self.imaging.psf_model[SURVEY_OF_BAND[band]]
            gsp = self._gsparams
            if model == "gaussian":
                psf = galsim.Gaussian(fwhm=fwhm, gsparams=gsp)
            elif model == "moffat":
                psf = galsim.Moffat(beta=self.imaging.moffat_beta, fwhm=fwhm, gsparams=gsp)
            elif model == "kolmogorov":
                psf = galsim.Kolmogorov(fwhm=fwhm, gsparams=gsp)
            else:
                psf = galsim.Airy(lam_over_diam=fwhm / _AIRY_FWHM, gsparams=gsp)
            self._psf[band] = psf
        return self._psf[band]

    def n_eff(self, band, pixscale):
        """Effective number of pixels ``1 / Σ p²`` of the pixelised PSF.

        Averaged over sub-pixel phases (it matters for the undersampled
        unWISE and GALEX PSFs).

        Parameters
        ----------
        band : str
            Band name.
        pixscale : float
            Arcsec per pixel.

        Returns
        -------
        float
        """
        key = (band, round(float(pixscale), 9))
        if key not in self._neff:
            psf = self.psf(band)
            fwhm = self.imaging.psf_fwhm[band]
            half = int(math.ceil(4.0 * fwhm / pixscale)) + 3
            total = 0.0
            phases = (0.0, 0.25, 0.5)
            for fx in phases:
                for fy in phases:
                    img = psf.drawImage(nx=2 * half + 1, ny=2 * half + 1, scale=pixscale,
                                        offset=(fx, fy))
                    arr = img.array.astype(float)
                    arr /= arr.sum()
                    total += float((arr**2).sum())
            self._neff[key] = len(phases) ** 2 / total
        return self._neff[key]

    def sky_sigma(self, band, pixscale, exptime=None):
        """Per-pixel sky noise (native units) that gives the band's 5σ depth.

        Parameters
        ----------
        band : str
            Band name.
        pixscale : float
            Arcsec per pixel.
        exptime : float, optional
            PS1 stack exposure time (s); needed for PS1 bands.

        Returns
        -------
        float
        """
        survey, native = SURVEY_OF_BAND[band], NATIVE_OF_BAND[band]
        if survey == "panstarrs" and exptime is None:
            exptime = self.imaging.ps1_exptime[band]
        depth = self.imaging.band_depth(band, exptime)
        f5 = float(native_flux(survey, native, depth, exptime))
        return f5 / (5.0 * math.sqrt(self.n_eff(band, pixscale)))

    # ------------------------------------------------------------------ drawing
    def _unit_profile(self, r_disk, r_bulge, bulge_frac, q, pa):
        """Unit-flux galaxy profile with major axis at ``pa`` (deg east of north).

        World coordinates are (u, v) = (north, east) in arcsec, so GalSim's
        shear angle (from +u towards +v) is the position angle itself.
        """
        gsp = self._gsparams
        parts = []
        bulge_frac = min(max(bulge_frac, 0.0), 1.0) if math.isfinite(bulge_frac) else 0.0
        if bulge_frac < 1.0 and r_disk > 0:
            parts.append(galsim.Exponential(half_light_radius=r_disk, flux=1.0 - bulge_frac,
                                            gsparams=gsp))
        if bulge_frac > 0.0 and r_bulge > 0:
            parts.append(galsim.DeVaucouleurs(
                half_light_radius=r_bulge, flux=bulge_frac,
                trunc=self.imaging.bulge_truncation * r_bulge, gsparams=gsp))
        if not parts:
            return None, 0.0
        prof = parts[0] if len(parts) == 1 else galsim.Add(parts)
        if prof.flux != 1.0:
            prof = prof.withFlux(1.0)
        q = min(max(q, 0.05), 1.0) if math.isfinite(q) else 1.0
        if q < 1.0:
            prof = prof.shear(q=q, beta=(pa if math.isfinite(pa) else 0.0) * galsim.degrees)
        extent = max(6.0 * r_disk if r_disk > 0 and bulge_frac < 1 else 0.0,
                     self.imaging.bulge_truncation * r_bulge if bulge_frac > 0 else 0.0)
        return prof, extent

    @staticmethod
    def _local_jacobians(wcs, ra, dec):
        """Pixel positions and pixel→(north, east) arcsec Jacobians of sources."""
        step = 1.0  # arcsec
        cosd = np.cos(np.radians(dec))
        cosd = np.where(np.abs(cosd) < 1e-9, 1e-9, cosd)
        ras = np.concatenate([ra, ra + step / 3600.0 / cosd, ra])
        decs = np.concatenate([dec, dec, dec + step / 3600.0])
        x, y = wcs.world_to_pixel_values(ras, decs)
        n = len(ra)
        x0, y0 = x[:n], y[:n]
        # columns: d(pixel)/d(north), d(pixel)/d(east), per arcsec
        dxn, dyn = (x[2 * n:] - x0) / step, (y[2 * n:] - y0) / step
        dxe, dye = (x[n:2 * n] - x0) / step, (y[n:2 * n] - y0) / step
        return x0, y0, dxn, dyn, dxe, dye

    def render(self, band, sources, wcs, size, pixscale, exptime=None, seed=0, noise=None):
        """Render one band of a cutout.

        Parameters
        ----------
        band : str
            Band name (``"nuv"`` ... ``"w2"``).
        sources : `~astropy.table.Table` or dict of arrays
            One row per source: ``ra``, ``dec`` (deg; the light centre),
            ``mag_<band>`` (AB; non-finite means not drawn), and for galaxies
            ``r_half_disk``, ``r_half_bulge`` (arcsec), ``bulge_frac``, ``q``,
            ``pa`` (deg east of north). Missing shape columns, or both radii
            zero, make point sources (stars). An optional boolean ``field``
            column marks small, faint sources (neighbours, stars) to be drawn
            through the analytic batched path (see the module notes).
        wcs : `~astropy.wcs.WCS`
            Celestial WCS of the cutout (0-based pixel convention of astropy).
        size : int
            Side of the square cutout in pixels.
        pixscale : float
            Arcsec per pixel (for the noise level and stamp sizes).
        exptime : float, optional
            PS1 stack exposure time (s): sets counts per flux and the depth.
        seed : int, optional
            Seed of the noise.
        noise : bool, optional
            Override ``ImagingConfig.noise``.

        Returns
        -------
        `numpy.ndarray`, shape (size, size), float32
            Native units of the band's survey.
        """
        return self.render_bands([band], sources, wcs, size, pixscale, [exptime], [seed],
                                 noise)[0]

    def render_bands(self, bands, sources, wcs, size, pixscale, exptimes=None, seeds=None,
                     noise=None):
        """Render several bands of one survey on one pixel grid.

        Source positions, local WCS Jacobians and galaxy profiles are worked
        out once and reused in every band.

        Parameters
        ----------
        bands : sequence of str
            Band names, all of one survey.
        sources, wcs, size, pixscale
            As in `render`.
        exptimes : sequence of float, optional
            PS1 stack exposure time per band (None entries: the typical one).
        seeds : sequence of int, optional
            Noise seed per band (default 0, 1, 2 ...).
        noise : bool, optional
            Override ``ImagingConfig.noise``.

        Returns
        -------
        `numpy.ndarray`, shape (len(bands), size, size), float32
        """
        bands = list(bands)
        exptimes = [None] * len(bands) if exptimes is None else list(exptimes)
        seeds = list(range(len(bands))) if seeds is None else list(seeds)
        noise = self.imaging.noise if noise is None else bool(noise)
        src = _as_arrays(sources)
        n_src = len(src.get("ra", ())) if src else 0
        images = np.zeros((len(bands), size, size), dtype=np.float64)
        fluxes = np.zeros((len(bands), n_src))
        for i, band in enumerate(bands):
            survey, native = SURVEY_OF_BAND[band], NATIVE_OF_BAND[band]
            if survey == "panstarrs" and exptimes[i] is None:
                exptimes[i] = self.imaging.ps1_exptime[band]
            mags = src.get(f"mag_{band}")
            if mags is not None and n_src:
                flux = native_flux(survey, native, np.asarray(mags, float), exptimes[i])
                fluxes[i] = np.where(np.isfinite(flux) & (flux > 0), flux, 0.0)
        if n_src:
            drawn = fluxes.any(axis=0)
            field = np.zeros(n_src, bool)
            if "field" in src and self.method == "fourier":
                field = np.asarray(src["field"], bool) & drawn
            stamps = drawn & ~field
            if stamps.any():
                sub = {k: np.asarray(v)[stamps] for k, v in src.items()}
                geometry = self._geometry(sub, wcs)
                if self.method == "galsim":
                    for i, band in enumerate(bands):
                        self._draw(images[i], band, geometry, fluxes[i][stamps], pixscale)
                else:
                    self._draw_fourier(images, bands, geometry, fluxes[:, stamps], pixscale)
            if field.any():
                sub = {k: np.asarray(v)[field] for k, v in src.items()}
                self._draw_field(images, bands, sub, fluxes[:, field], wcs, pixscale)
        cube = np.empty((len(bands), size, size), dtype=np.float32)
        for i, band in enumerate(bands):
            image = images[i]
            if noise:
                image = self.add_noise(image, band, pixscale, exptimes[i], seeds[i])
            cube[i] = image
        return cube

    def _geometry(self, src, wcs):
        """Per source: pixel position, pixel->(north, east) Jacobian, unit profile."""
        ra = np.asarray(src["ra"], float)
        dec = np.asarray(src["dec"], float)
        n = len(ra)
        x0, y0, dxn, dyn, dxe, dye = self._local_jacobians(wcs, ra, dec)
        det = dxn * dye - dxe * dyn

        def col(name, default):
            if name not in src:
                return np.full(n, default)
            values = np.asarray(src[name], float)
            return np.where(np.isfinite(values), values, default)

        r_disk, r_bulge = col("r_half_disk", 0.0), col("r_half_bulge", 0.0)
        bfrac, q, pa = col("bulge_frac", 0.0), col("q", 1.0), col("pa", 0.0)
        out = []
        for k in range(n):
            if not (np.isfinite(x0[k]) and np.isfinite(y0[k]) and det[k] != 0):
                out.append(None)
                continue
            prof, extent = self._unit_profile(r_disk[k], r_bulge[k], bfrac[k], q[k], pa[k])
            # pixel -> (north, east): the inverse of [[dx/dn, dx/de], [dy/dn, dy/de]]
            jac = galsim.JacobianWCS(dye[k] / det[k], -dxe[k] / det[k],
                                     -dyn[k] / det[k], dxn[k] / det[k])
            scale = math.sqrt(abs(det[k]))  # pixels per arcsec
            prof_img = None if prof is None else jac.profileToImage(prof)
            out.append((float(x0[k]), float(y0[k]), jac, prof, extent, scale, prof_img))
        return out

    def _draw(self, image, band, geometry, flux, pixscale):
        """Add every source with positive finite flux to ``image`` (ny, nx)."""
        psf = self.psf(band)
        fwhm = self.imaging.psf_fwhm[band]
        full = galsim.ImageD(image, xmin=0, ymin=0)
        for k, geo in enumerate(geometry):
            if geo is None or not (flux[k] > 0 and math.isfinite(flux[k])):
                continue
            x, y, jac, prof, extent, scale, _ = geo
            # stamp: the galaxy's extent plus the PSF wings, in pixels
            radius = (extent + 4.0 * fwhm) * scale + 2.0
            bounds = galsim.BoundsI(int(math.floor(x - radius)), int(math.ceil(x + radius)),
                                    int(math.floor(y - radius)), int(math.ceil(y + radius)))
            bounds = bounds & full.bounds
            if not bounds.isDefined():
                continue
            obj = psf if prof is None else galsim.Convolve(prof, psf)
            stamp = full[bounds]
            stamp.wcs = jac
            (obj * float(flux[k])).drawImage(image=stamp, center=galsim.PositionD(x, y),
                                             add_to_image=True, method="auto")

    def _psf_kimage(self, band, n, full, pixscale):
        """k-image of PSF ⊗ pixel in pixel units (cached): half plane or full grid."""
        key = (band, n, full, round(float(pixscale), 9))
        kimage = self._psf_k.get(key)
        if kimage is None:
            psf_pix = galsim.Convolve(self.psf(band).dilate(1.0 / pixscale),
                                      galsim.Pixel(1.0, gsparams=self._gsparams))
            kimage = _draw_k(psf_pix, n, full)
            self._psf_k[key] = kimage
        return kimage

    def _needs_fold(self, band, pixscale):
        """Whether PSF ⊗ pixel has power beyond the pixel Nyquist frequency."""
        key = (band, round(float(pixscale), 9))
        if key not in self._fold:
            psf_pix = galsim.Convolve(self.psf(band).dilate(1.0 / pixscale),
                                      galsim.Pixel(1.0, gsparams=self._gsparams))
            self._fold[key] = abs(psf_pix.kValue(galsim.PositionD(math.pi, 0.0))) > 1e-3
        return self._fold[key]

    def _draw_fourier(self, images, bands, geometry, fluxes, pixscale):
        """Draw every source in every band through one k-image per source.

        Each source's profile is transformed to pixel coordinates with its
        local WCS Jacobian and sampled in Fourier space once; each band then
        only multiplies it by its (cached) PSF ⊗ pixel transform and the
        sub-pixel phase, and inverse-FFTs a stamp. Where PSF ⊗ pixel has
        power beyond the pixel Nyquist frequency (undersampled unWISE/GALEX
        PSFs) the transform is evaluated to twice Nyquist and folded, which is
        exact sampling of the pixel-integrated profile, as GalSim does.
        """
        nb, ny, nx = images.shape
        fwhm = max(self.imaging.psf_fwhm[b] for b in bands)
        fold = any(self._needs_fold(b, pixscale) for b in bands)
        for k, geo in enumerate(geometry):
            if geo is None:
                continue
            band_flux = fluxes[:, k]
            use = [i for i, f in enumerate(band_flux) if f > 0]
            if not use:
                continue
            x, y, _jac, _prof, extent, scale, prof_img = geo
            radius = (extent + 4.0 * fwhm) * scale + 2.0
            ix, iy = int(round(x)), int(round(y))
            if (ix + radius < 0 or iy + radius < 0 or ix - radius > nx - 1
                    or iy - radius > ny - 1):
                continue
            n = _fft_size(2.0 * radius + 2.0)
            m = 2 * n if fold else n
            dk = 2.0 * math.pi / n
            # sub-pixel offset, plus n/2 so that the stamp comes out centred (no fftshift)
            fx, fy = x - ix + n // 2, y - iy + n // 2
            if fold:
                kx = np.fft.fftfreq(m, 1.0 / m) * dk  # fft order, -2pi .. 2pi
                ky = kx
            else:
                kx = np.arange(n // 2 + 1) * dk
                ky = np.fft.fftfreq(n, 1.0 / n) * dk
            phase = np.exp(-1j * fy * ky)[:, None] * np.exp(-1j * fx * kx)[None, :]
            kgal = phase if prof_img is None else _draw_k(prof_img, n, fold) * phase
            # where the stamp lands in the image
            x_lo, y_lo = ix - n // 2, iy - n // 2
            sx0, sy0 = max(0, -x_lo), max(0, -y_lo)
            sx1, sy1 = min(n, nx - x_lo), min(n, ny - y_lo)
            if sx0 >= sx1 or sy0 >= sy1:
                continue
            for i in use:
                kimage = kgal * self._psf_kimage(bands[i], n, fold, pixscale)
                if fold:
                    kimage = (kimage[:n, :n] + kimage[n:, :n] + kimage[:n, n:]
                              + kimage[n:, n:])
                    stamp = np.fft.ifft2(kimage).real
                else:
                    stamp = np.fft.irfft2(kimage, s=(n, n))
                images[i, y_lo + sy0:y_lo + sy1, x_lo + sx0:x_lo + sx1] += (
                    band_flux[i] * stamp[sy0:sy1, sx0:sx1])

    def _devauc_table(self):
        """Fourier transform of the truncated unit de Vaucouleurs profile (r_e = 1), tabulated."""
        if getattr(self, "_devauc", None) is None:
            prof = galsim.DeVaucouleurs(half_light_radius=1.0, trunc=self.imaging.bulge_truncation,
                                        gsparams=self._gsparams)
            x = np.concatenate([[0.0], np.geomspace(1e-3, 3e3, 1500)])
            values = np.array([prof.kValue(galsim.PositionD(float(v), 0.0)).real for v in x])
            self._devauc = (x, values)
        return self._devauc

    def _draw_field(self, images, bands, src, fluxes, wcs, pixscale):
        """Draw many small, faint sources (neighbours, stars) in batches of stamps.

        No GalSim object is made: each source's Fourier transform is written
        analytically on its stamp's frequency grid (exponential disk
        ``(1 + κ²h²)^-3/2``, truncated de Vaucouleurs bulge from a table,
        sheared by the axis ratio and position angle and mapped to pixels by
        the local WCS Jacobian; 1 for a point source), multiplied by the
        sub-pixel phase and each band's PSF ⊗ pixel transform, and all
        stamps of one size are inverse-transformed together. Stamps reach
        3 FWHM beyond the galaxy. Power beyond the pixel Nyquist frequency
        is not folded back here (below 1e-3 of the peak for PS1 and GALEX,
        about 1 % for unWISE; fluxes are exact).
        """
        nb, ny, nx = images.shape
        fwhm = max(self.imaging.psf_fwhm[b] for b in bands)
        x0, y0, dxn, dyn, dxe, dye = self._local_jacobians(
            wcs, np.asarray(src["ra"], float), np.asarray(src["dec"], float))
        count = len(x0)

        def col(name, default):
            values = np.asarray(src.get(name, np.full(count, default)), float)
            return np.where(np.isfinite(values), values, default)

        r_disk, r_bulge = col("r_half_disk", 0.0), col("r_half_bulge", 0.0)
        bfrac = np.clip(col("bulge_frac", 0.0), 0.0, 1.0)
        has_disk = (r_disk > 0) & (bfrac < 1)
        has_bulge = (r_bulge > 0) & (bfrac > 0)
        extent = np.maximum(np.where(has_disk, 6.0 * r_disk, 0.0),
                            np.where(has_bulge, self.imaging.bulge_truncation * r_bulge, 0.0))
        radius = (extent + 3.0 * fwhm) / pixscale + 2.0
        ix, iy = np.round(x0), np.round(y0)
        keep = (np.isfinite(ix) & np.isfinite(iy) & (ix + radius >= 0) & (iy + radius >= 0)
                & (ix - radius <= nx - 1) & (iy - radius <= ny - 1))
        if not keep.any():
            return
        sizes = np.array([_fft_size(2.0 * r + 2.0) if k else 0 for r, k in zip(radius, keep)])
        q = np.clip(col("q", 1.0), 0.05, 1.0)
        beta = np.radians(col("pa", 0.0))
        table_x, table_k = self._devauc_table()
        table_x2 = table_x**2
        for n in np.unique(sizes[keep]):
            s = np.flatnonzero(keep & (sizes == n))
            dk = 2.0 * math.pi / n
            kx = (np.arange(n // 2 + 1) * dk)[None, None, :]
            ky = (np.fft.fftfreq(n, 1.0 / n) * dk)[None, :, None]
            # sub-pixel offset, plus n/2 so that each stamp comes out centred
            fx = (x0[s] - ix[s] + n // 2)[:, None, None]
            fy = (y0[s] - iy[s] + n // 2)[:, None, None]
            transform = np.exp(-1j * fy * ky) * np.exp(-1j * fx * kx)
            ext = has_disk[s] | has_bulge[s]
            if ext.any():
                e = s[ext]
                # kappa = P^T k in (north, east) rad/arcsec, then the shear stretch
                kn = dxn[e, None, None] * kx + dyn[e, None, None] * ky
                ke = dxe[e, None, None] * kx + dye[e, None, None] * ky
                cb, sb = np.cos(beta[e])[:, None, None], np.sin(beta[e])[:, None, None]
                qe = q[e, None, None]
                k2 = (kn * cb + ke * sb) ** 2 / qe + (ke * cb - kn * sb) ** 2 * qe
                base = 1.0 + k2 * ((r_disk[e] / _EXP_HALF_LIGHT) ** 2)[:, None, None]
                w_bulge = np.where(has_bulge[e], np.where(has_disk[e], bfrac[e], 1.0), 0.0)
                shape = (1.0 - w_bulge)[:, None, None] / (base * np.sqrt(base))
                if has_bulge[e].any():
                    x2 = k2 * (r_bulge[e] ** 2)[:, None, None]
                    shape += w_bulge[:, None, None] * np.interp(x2, table_x2, table_k, right=0.0)
                transform[ext] *= shape
            x_lo, y_lo = ix[s].astype(int) - n // 2, iy[s].astype(int) - n // 2
            for i, band in enumerate(bands):
                f = fluxes[i, s]
                if not f.any():
                    continue
                kimage = transform * (f[:, None, None] * self._psf_kimage(band, n, False,
                                                                         pixscale)[None])
                stamps = np.fft.irfft2(kimage, s=(n, n))
                for j in range(len(s)):
                    if f[j] <= 0:
                        continue
                    xl, yl = x_lo[j], y_lo[j]
                    sx0, sy0 = max(0, -xl), max(0, -yl)
                    sx1, sy1 = min(n, nx - xl), min(n, ny - yl)
                    if sx0 < sx1 and sy0 < sy1:
                        images[i, yl + sy0:yl + sy1, xl + sx0:xl + sx1] += \
                            stamps[j, sy0:sy1, sx0:sx1]

    def add_noise(self, image, band, pixscale, exptime=None, seed=0):
        """Add sky and source Poisson noise to a noiseless image (see the module notes).

        Parameters
        ----------
        image : `numpy.ndarray`
            Noiseless image in native units (not modified).
        band : str
            Band name.
        pixscale : float
            Arcsec per pixel.
        exptime : float, optional
            PS1 stack exposure time (s).
        seed : int, optional
            Seed of the noise.

        Returns
        -------
        `numpy.ndarray` of float64
            The noisy image, background-subtracted unless
            ``ImagingConfig.sky_subtracted`` says otherwise.
        """
        survey = SURVEY_OF_BAND[band]
        if survey == "panstarrs" and exptime is None:
            exptime = self.imaging.ps1_exptime[band]
        return sky_noise(image, self.sky_sigma(band, pixscale, exptime), self.imaging.gain[band],
                         seed, sky_subtracted=self.imaging.sky_subtracted[survey])


def sky_noise(image, sigma, gain, seed, sky_subtracted=True):
    """Add sky and source Poisson noise to a noiseless image (numpy only, no GalSim).

    The noise model of `ImageRenderer.add_noise` once the band's sky noise is
    known: a uniform background ``B = gain * sigma**2`` (native units per
    pixel) and the image, both seen as photon counts through ``gain``, drawn
    from a Poisson distribution (a Gaussian of the same variance where more
    than 1000 photons per pixel are expected), then ``B`` removed unless
    ``sky_subtracted`` is False. Negative model pixels are kept but add no
    shot noise.

    Parameters
    ----------
    image : `numpy.ndarray`
        Noiseless image in native units (not modified).
    sigma : float
        Per-pixel sky noise in native units (`ImageRenderer.sky_sigma`).
    gain : float
        Detected photons (or electrons) per native unit.
    seed : int
        Seed of the noise (`numpy.random.default_rng`).
    sky_subtracted : bool, optional
        Remove the background after drawing the noise (default True).

    Returns
    -------
    `numpy.ndarray` of float64
        The noisy image.
    """
    image = np.asarray(image, dtype=np.float64)
    sky = gain * sigma**2  # native units per pixel
    rng = np.random.default_rng(seed)
    signal = np.clip(image, 0.0, None)
    if gain * sky >= _GAUSSIAN_PHOTONS:
        deviates = rng.standard_normal(image.shape, dtype=np.float32)
        noisy = image + deviates * np.sqrt(sigma**2 + signal / gain)
    else:
        noisy = rng.poisson(gain * (signal + sky)) / gain - sky + (image - signal)
    if not sky_subtracted:
        noisy += sky
    return noisy


_FFT_SIZES = sorted({2**a * 3**b * 5**c * 7**d for a in range(1, 14) for b in range(3)
                     for c in range(2) for d in range(2)
                     if 8 <= 2**a * 3**b * 5**c * 7**d <= 8192})


def _fft_size(minimum):
    """The smallest even FFT-friendly size (only factors 2, 3, 5, 7) of at least ``minimum``."""
    for n in _FFT_SIZES:
        if n >= minimum:
            return n
    return int(2 * math.ceil(minimum / 2))


def _draw_k(profile, n, full):
    """Fourier transform of ``profile`` (pixel units) on the grid of an n-pixel stamp.

    Parameters
    ----------
    profile : ``galsim.GSObject``
        Profile in pixel coordinates.
    n : int
        Stamp side (even): the frequency step is 2 pi / n.
    full : bool
        False: the half plane ``kx`` in [0, pi], ``ky`` in [-pi, pi) in FFT
        order, shape (n, n/2 + 1), ready for ``irfft2``. True: the full plane
        to twice Nyquist, ``kx, ky`` in [-2 pi, 2 pi) in FFT order, shape
        (2n, 2n), for folding.

    Returns
    -------
    `numpy.ndarray` of complex
    """
    dk = 2.0 * math.pi / n
    if full:
        m = 2 * n
        kimage = profile.drawKImage(nx=m, ny=m, scale=dk)
        return np.fft.ifftshift(kimage.array)
    bounds = galsim.BoundsI(0, n // 2, -(n // 2), n // 2 - 1)
    kimage = profile.drawKImage(image=galsim.ImageCD(bounds, scale=dk), recenter=False)
    return np.fft.ifftshift(kimage.array, axes=0)
