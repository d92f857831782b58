# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The survey services' response formats, shared by every simulated sky.

Both the quick `~astro_mantis.testing.SyntheticSky` and the physical
`~astro_mantis.simulate.MockSky` answer a render request with the FITS file
the real service would send. What those files look like lives here, in one
place:

* **Pan-STARRS1** ``fitscut.cgi``: one band per file, a 2-D float32 image in
  linear counts on the stack's TAN projection, whose ``CRVAL`` is the skycell
  centre (so ``CRPIX`` can lie far outside the cutout), with ``EXPTIME`` (the
  AB zero point is ``25 + 2.5 log10(EXPTIME)``) and ``FILTER``. The scale and
  orientation are written as the real stack headers write them: both ``CDELT``
  positive and the sign of the RA axis in the legacy (AIPS) matrix cards
  ``PC001001 = -1``, ``PC001002 = 0``, ``PC002001 = 0``, ``PC002002 = 1``
  (no ``CD`` matrix, no ``PCi_j`` cards); RA grows to the east, towards -x.
  ``RADESYS = 'FK5'``, which the real cutouts carry since 2019-03-13 (PS1 image
  cutout service page). Real cutouts of asinh-compressed stacks come back linear:
  ``fitscut`` inverts the compression and drops ``BSOFTEN``/``BOFFSET``.
* **Legacy Surveys viewer** ``fits-cutout`` (``galex`` and ``unwise-neo7``
  layers): a float32 cube (nbands, size, size) on a TAN grid centred on the
  request, with a ``CD`` matrix, ``BANDS`` and ``BAND0``, ``BAND1`` ...
  naming each plane, ``SURVEY``, ``VERSION``, ``IMAGEW`` and ``IMAGEH``.
  GALEX planes are counts/s (AB zero points NUV 20.08, FUV 18.82); unWISE
  planes are Vega nanomaggies (zero point 22.5 Vega; AB = Vega + 2.699 in W1,
  + 3.339 in W2).

The survey facts behind these formats (bands and their native names, zero
points, default geometry, layers) are read from `astro_mantis.surveys`; the
constants below are views of them in the services' native band names.

The module depends on numpy, astropy and `astro_mantis.surveys` only (no
GalSim), so that the loopback servers of `astro_mantis.testing` can use it
without the simulation extras. Imports flow from ``testing`` to here, never back.
"""

import hashlib
import math

import numpy as np
from astropy import units as u
from astropy.io import fits

from ..surveys import get_survey

__all__ = [
    "GALEX_ZEROPOINTS",
    "NATIVE_TO_BAND",
    "PS1_EXPTIME",
    "SERVICE_VERSION",
    "SURVEY_BANDS",
    "WISE_VEGA_TO_AB",
    "ab_zeropoint",
    "band_list",
    "coord_to_radec",
    "default_geometry",
    "fitscut_corner",
    "format_card",
    "native_flux",
    "normalise_band",
    "normalise_survey",
    "primary_hdu",
    "ps1_geometry",
    "ps1_hdulist",
    "ps1_stack_exptime",
    "stable_seed",
    "tan_project",
    "viewer_geometry",
    "viewer_hdulist",
]

_GALEX, _PS1, _UNWISE = (get_survey(name) for name in ("galex", "panstarrs", "unwise"))

#: Native band identifiers of each survey, in the order the services send them
#: (``native_bands`` of each survey).
SURVEY_BANDS = {s.name: tuple(s.native_bands) for s in (_GALEX, _PS1, _UNWISE)}

#: (survey, native band) → band name used by `astro_mantis.simulate` catalogs
#: (``mag_<name>`` columns): the survey's band name in lower case.
NATIVE_TO_BAND = {(s.name, native): band.lower() for s in (_GALEX, _PS1, _UNWISE)
                  for native, band in zip(s.native_bands, s.bands)}

#: AB magnitude of 1 count/s in the GALEX intensity maps (by native band).
GALEX_ZEROPOINTS = {native: _GALEX.ab_zeropoints[band]
                    for native, band in zip(_GALEX.native_bands, _GALEX.bands)}

#: AB - Vega offsets of the WISE bands (unWISE pixels are Vega nanomaggies).
WISE_VEGA_TO_AB = {native: _UNWISE.vega_to_ab[band]
                   for native, band in zip(_UNWISE.native_bands, _UNWISE.bands)}

#: Typical PS1 3pi stack exposure times (s) per band written as ``EXPTIME``
#: (the survey's ``typical_exptime``); per-skycell values scatter around these (see
#: `ps1_stack_exptime`).
PS1_EXPTIME = dict(_PS1.typical_exptime)

#: ``VERSION`` keyword of the simulated viewer cutouts.
SERVICE_VERSION = "astro_mantis-loopback"

_DEFAULT_GEOMETRY = {s.name: (int(s.size), float(s.pixscale.to_value(u.arcsec)))
                     for s in (_GALEX, _PS1, _UNWISE)}
_SURVEY_ALIASES = {
    "galex": "galex",
    "panstarrs": "panstarrs",
    "ps1": "panstarrs",
    "unwise": "unwise",
    "unwise-neo7": "unwise",
    "wise": "unwise",
}
_LAYER_NAME = {s.name: s.layer for s in (_GALEX, _UNWISE)}


def _plain(value):
    """numpy scalars as Python numbers, so np.float64(2.5) and 2.5 seed alike."""
    if isinstance(value, (tuple, list)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def stable_seed(*parts):
    """Derive a reproducible 64-bit integer seed from arbitrary values.

    Floats should be rounded by the caller so that equal positions written
    with different precision give the same seed.

    Parameters
    ----------
    *parts
        Values whose ``repr`` defines the seed (numbers, strings, tuples).

    Returns
    -------
    seed : int
        A non-negative integer below ``2**64``, identical across processes
        and platforms for the same ``parts``.
    """
    digest = hashlib.blake2b(repr(_plain(parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def tan_project(ra, dec, ra0, dec0):
    """Gnomonic (TAN) projection onto the tangent plane at ``(ra0, dec0)``.

    This is the FITS ``RA---TAN``/``DEC--TAN`` projection with the default
    ``LONPOLE``: the returned intermediate world coordinates, divided by the
    CD/CDELT matrix and offset by CRPIX, give FITS pixel coordinates.

    Parameters
    ----------
    ra, dec : float or array-like
        Positions in degrees.
    ra0, dec0 : float
        Tangent point (``CRVAL1``, ``CRVAL2``) in degrees.

    Returns
    -------
    x, y : `numpy.ndarray`
        Intermediate world coordinates in degrees (``x`` towards east,
        ``y`` towards north). Points 90 degrees or more from the tangent
        point are returned as NaN.
    """
    ra = np.radians(np.asarray(ra, dtype=float))
    dec = np.radians(np.asarray(dec, dtype=float))
    ra0 = math.radians(ra0)
    dec0 = math.radians(dec0)
    dra = ra - ra0
    cos_dec = np.cos(dec)
    sin_dec = np.sin(dec)
    cos_dra = np.cos(dra)
    denom = math.sin(dec0) * sin_dec + math.cos(dec0) * cos_dec * cos_dra
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(denom > 0, cos_dec * np.sin(dra) / denom, np.nan)
        y = np.where(
            denom > 0,
            (math.cos(dec0) * sin_dec - math.sin(dec0) * cos_dec * cos_dra) / denom,
            np.nan,
        )
    return np.degrees(x), np.degrees(y)


def coord_to_radec(coord):
    """Return ``(ra, dec)`` in degrees (ICRS) from a SkyCoord or a pair.

    Parameters
    ----------
    coord : `~astropy.coordinates.SkyCoord` or (float, float)
        A scalar sky position; a pair is read as (ra, dec) in degrees (or
        angle quantities).

    Returns
    -------
    ra, dec : float
        Degrees, ``ra`` wrapped into [0, 360).

    Raises
    ------
    ValueError
        For an array-valued SkyCoord.
    TypeError
        For anything that is neither a SkyCoord nor a pair.
    """
    if hasattr(coord, "icrs") and hasattr(coord, "frame"):
        if coord.frame.name != "icrs":
            coord = coord.icrs
        if not coord.isscalar:
            raise ValueError("render() takes a single position, got an array SkyCoord")
        return float(coord.ra.deg) % 360.0, float(coord.dec.deg)
    try:
        ra, dec = coord
    except (TypeError, ValueError):
        raise TypeError(
            f"coord must be a SkyCoord or an (ra, dec) pair in degrees, got {coord!r}"
        ) from None
    ra = getattr(ra, "deg", ra)
    dec = getattr(dec, "deg", dec)
    return float(ra) % 360.0, float(dec)


def normalise_survey(survey):
    """Canonical survey name (``"galex"``, ``"panstarrs"`` or ``"unwise"``).

    Parameters
    ----------
    survey : str
        A survey name or alias (``"ps1"``, ``"unwise-neo7"``, ``"wise"`` ...).

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For an unknown survey.
    """
    key = str(survey).lower()
    if key not in _SURVEY_ALIASES:
        raise ValueError(
            f"unknown survey {survey!r}; expected one of 'galex', 'panstarrs', 'unwise'"
        )
    return _SURVEY_ALIASES[key]


def default_geometry(survey, size=None, pixscale=None):
    """Cutout side (pixels) and pixel scale (arcsec) of a request, with defaults.

    Parameters
    ----------
    survey : str
        Canonical survey name.
    size : int, optional
        Requested side; default 32 (GALEX, unWISE) or 170 (PS1).
    pixscale : float, optional
        Requested arcsec per pixel; default 1.5, 2.75 or 0.25.

    Returns
    -------
    size : int
    pixscale : float

    Raises
    ------
    ValueError
        If either is not positive.
    """
    d_size, d_scale = _DEFAULT_GEOMETRY[survey]
    size = d_size if size is None else int(size)
    pixscale = d_scale if pixscale is None else float(pixscale)
    if size <= 0 or not pixscale > 0:
        raise ValueError(f"size and pixscale must be positive, got {size}, {pixscale}")
    return size, pixscale


def normalise_band(survey, band):
    """Map user band spellings to the native band identifier of ``survey``.

    Parameters
    ----------
    survey : str
        Canonical survey name.
    band : str or int
        E.g. ``"nuv"``, ``"f"``, ``"ps1-g"``, ``1``, ``"w2"``.

    Returns
    -------
    str or int
        The native identifier (``"n"``, ``"f"``, ``"g"`` ... ``"y"``, ``1``, ``2``).

    Raises
    ------
    ValueError
        For a band the survey does not have.
    """
    text = str(band).strip().lower()
    facts = get_survey(survey)
    table = {}
    for native, name in zip(facts.native_bands, facts.bands):
        for key in (native, name, facts.filter_curves.get(name)):
            if key is not None:
                table[str(key).lower()] = native
        if facts.name == "panstarrs":
            table[f"ps1-{name}".lower()] = native
    if text not in table:
        raise ValueError(
            f"unknown {survey} band {band!r}; expected one of {SURVEY_BANDS[survey]}"
        )
    return table[text]


def band_list(survey, band):
    """Resolve the ``band`` argument of a multi-band (viewer) render.

    Parameters
    ----------
    survey : str
        Canonical survey name.
    band : None, str, int or sequence
        None for every band in native order; one band; a string of one-letter
        bands (``"nf"``, ``"12"``); or a sequence of bands.

    Returns
    -------
    tuple
        Native band identifiers, in the order requested.
    """
    if band is None:
        return SURVEY_BANDS[survey]
    if isinstance(band, (str, int, np.integer)):
        try:
            return (normalise_band(survey, band),)
        except ValueError:
            if isinstance(band, str) and len(band) > 1:
                return tuple(normalise_band(survey, c) for c in band)
            raise
    return tuple(normalise_band(survey, b) for b in band)


def format_card(key, value, comment=None):
    """Format one 80-character FITS header card (fast path, no validation).

    Parameters
    ----------
    key : str
        Keyword (``"HIERARCH ..."`` allowed).
    value : bool, int, float or str
        Card value; floats must be finite.
    comment : str, optional
        Card comment.

    Returns
    -------
    str
        Exactly 80 characters.
    """
    if isinstance(value, (bool, np.bool_)):
        text = f"{'T' if value else 'F':>20}"
    elif isinstance(value, (int, np.integer)):
        text = f"{int(value):>20d}"
    elif isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"header value for {key} is not finite: {value}")
        text = f"{value:.14G}"
        if "." not in text and "E" not in text:
            text += ".0"
        text = f"{text:>20}"
    else:
        text = "'" + str(value).replace("'", "''").ljust(8) + "'"
        text = f"{text:<20}"
    if key.startswith("HIERARCH "):
        card = f"{key} = {text.strip()}"
    else:
        card = f"{key:<8}= {text}"
    if comment:
        card += f" / {comment}"
    if len(card) > 80:
        raise ValueError(f"header card too long: {card!r}")
    return card.ljust(80)


def primary_hdu(data, cards):
    """Build a `~astropy.io.fits.PrimaryHDU` from data and card tuples, quickly.

    Formatting the cards as text and parsing them lazily is several times
    faster than assigning them one by one through `astropy.io.fits.Header`.

    Parameters
    ----------
    data : `numpy.ndarray`
        Image data.
    cards : sequence of tuple
        ``(key, value)`` or ``(key, value, comment)``.

    Returns
    -------
    `~astropy.io.fits.PrimaryHDU`
    """
    header = fits.Header.fromstring("".join(format_card(*card) for card in cards))
    return fits.PrimaryHDU(data, header=header)


def ab_zeropoint(survey, band, exptime=None):
    """AB magnitude of one native pixel-value unit.

    Parameters
    ----------
    survey : str
        Canonical survey name.
    band : str or int
        Native band identifier.
    exptime : float, optional
        PS1 only: the stack ``EXPTIME`` (s).

    Returns
    -------
    float
        ``m_AB = zp - 2.5 log10(value)``.
    """
    if survey == "galex":
        return GALEX_ZEROPOINTS[band]
    if survey == "unwise":
        return _UNWISE.vega_zeropoint + WISE_VEGA_TO_AB[band]
    return _PS1.exptime_zeropoint(exptime)


def native_flux(survey, band, mag_ab, exptime=None):
    """Convert AB magnitudes to the survey's native pixel-sum unit.

    Parameters
    ----------
    survey : str
        Canonical survey name.
    band : str or int
        Native band identifier.
    mag_ab : float or array-like
        AB magnitudes.
    exptime : float, optional
        PS1 only: the stack ``EXPTIME`` (s).

    Returns
    -------
    `numpy.ndarray`
        Counts/s (GALEX), counts (PS1) or Vega nanomaggies (unWISE).
    """
    mag_ab = np.asarray(mag_ab, dtype=float)
    if survey == "galex":
        return 10.0 ** (-0.4 * (mag_ab - GALEX_ZEROPOINTS[band]))
    if survey == "unwise":
        return 10.0 ** (-0.4 * (mag_ab - WISE_VEGA_TO_AB[band] - _UNWISE.vega_zeropoint))
    return exptime * 10.0 ** (-0.4 * (mag_ab - _PS1.zeropoint_1s))


def ps1_stack_exptime(seed, band, ra_c, dec_c, typical=None, scatter=0.4):
    """Deterministic stack exposure time of a PS1 skycell.

    Parameters
    ----------
    seed : int
        Sky seed.
    band : str
        PS1 band (``g r i z y``).
    ra_c, dec_c : float
        Skycell centre in degrees.
    typical : float, optional
        Typical exposure time (s); default `PS1_EXPTIME` of the band.
    scatter : float, optional
        Values are uniform in ``typical * [1 - scatter, 1 + scatter]``.

    Returns
    -------
    exptime : float
        Seconds (rounded to 1 ms); the pixel zero point is
        ``25 + 2.5 log10(exptime)``.
    """
    typical = PS1_EXPTIME[band] if typical is None else float(typical)
    rng = np.random.default_rng(
        stable_seed(seed, "exptime", band, round(ra_c, 6), round(dec_c, 6))
    )
    return float(round(typical * (1.0 - scatter + 2.0 * scatter * rng.random()), 3))


def fitscut_corner(pixel, size):
    """Where ``fitscut`` starts a cutout along one axis: its first pixel (0-based).

    The loopback services' own statement of the rule, kept apart from the client's
    `~astro_mantis.surveys.panstarrs.fitscut_origin` so that tests compare two
    implementations. ``fitscut`` (github.com/spacetelescope/fitscut, ``extract.c``,
    ``extract_fits``: the corner ``x0``) takes the WCS pixel of the position minus one
    (0-based), minus half the side as a C ``long`` division (``ncols / 2``: for a
    positive side, the side halved and rounded down), and rounds the result half up
    (``floor(v + 0.5)``).

    Parameters
    ----------
    pixel : float or array-like
        0-based pixel coordinate of the position along the axis.
    size : int
        Cutout side in pixels (positive).

    Returns
    -------
    int or `numpy.ndarray` of int
    """
    half = (int(size) - int(size) % 2) / 2.0  # C: long ncols / 2
    corner = np.floor(np.asarray(pixel, dtype=np.float64) - half + 0.5).astype(np.int64)
    return int(corner) if corner.ndim == 0 else corner


def ps1_geometry(ra, dec, size, pixscale, skycell_center=None):
    """WCS of a ``fitscut.cgi`` cutout: tangent point, reference pixel, scale.

    Parameters
    ----------
    ra, dec : float
        Requested centre (degrees).
    size : int
        Cutout side in pixels.
    pixscale : float
        Arcsec per pixel.
    skycell_center : (float, float), optional
        The skycell centre, used as ``CRVAL``; ``CRPIX`` is then set so that
        the request falls on the cutout centre. Default: the request itself.

    Returns
    -------
    crval : (float, float)
    crpix : (float, float)
        FITS (1-based) reference pixel, possibly far outside the image.
    cdelt : (float, float)
        Signed degrees per pixel (``-pixscale``, ``+pixscale``): the diagonal of the
        pixel scale matrix (`ps1_hdulist` writes it as positive ``CDELT`` and the
        legacy ``PC00i00j`` signs).
    """
    if skycell_center is None:
        ra_c, dec_c = ra, dec
    else:
        ra_c, dec_c = float(skycell_center[0]) % 360.0, float(skycell_center[1])
    cd = (-pixscale / 3600.0, pixscale / 3600.0)
    x_iw, y_iw = tan_project(ra, dec, ra_c, dec_c)
    if not (np.isfinite(x_iw) and np.isfinite(y_iw)):
        raise ValueError("position is not on the skycell's tangent plane")
    centre_pix = (size + 1) / 2.0
    crpix = (centre_pix - float(x_iw) / cd[0], centre_pix - float(y_iw) / cd[1])
    return (ra_c, dec_c), crpix, cd


def ps1_hdulist(image, band, crval, crpix, cdelt, exptime):
    """The HDUList ``fitscut.cgi`` sends for one band.

    Parameters
    ----------
    image : `numpy.ndarray`, shape (size, size)
        Linear counts (float32).
    band : str
        PS1 band.
    crval, crpix, cdelt : (float, float)
        From `ps1_geometry`; ``cdelt`` signed (``-pixscale``, ``+pixscale`` degrees).
    exptime : float
        Stack exposure time (s).

    Returns
    -------
    `~astropy.io.fits.HDUList`
        Its header spells the scale as the real service does: ``CDELT1 = |cdelt[0]|``,
        ``CDELT2 = |cdelt[1]|`` and the signs in the legacy matrix cards ``PC001001``,
        ``PC001002``, ``PC002001``, ``PC002002`` (``-1, 0, 0, 1`` for a north-up,
        east-left grid). The pixel-to-sky mapping is the one ``cdelt`` says.
        ``RADESYS = 'FK5'``, as real cutouts have carried since 2019-03-13.
    """
    cards = [
        ("CTYPE1", "RA---TAN"),
        ("CTYPE2", "DEC--TAN"),
        ("CRVAL1", crval[0]),
        ("CRVAL2", crval[1]),
        ("CRPIX1", crpix[0]),
        ("CRPIX2", crpix[1]),
        ("CDELT1", abs(float(cdelt[0]))),
        ("CDELT2", abs(float(cdelt[1]))),
        ("PC001001", math.copysign(1.0, cdelt[0])),
        ("PC001002", 0.0),
        ("PC002001", 0.0),
        ("PC002002", math.copysign(1.0, cdelt[1])),
        ("RADESYS", "FK5"),
        ("EXPTIME", exptime, "[s] stack exposure time"),
        ("FILTER", f"{band}.00000", "PS1 filter"),
        ("HIERARCH FPA.ZP", _PS1.zeropoint_1s, "zero point for 1 s"),
    ]
    return fits.HDUList([primary_hdu(image, cards)])


def viewer_geometry(ra, dec, size, pixscale):
    """WCS of a viewer ``fits-cutout``: centred on the request.

    Parameters
    ----------
    ra, dec : float
        Requested centre (degrees).
    size : int
        Cutout side in pixels.
    pixscale : float
        Arcsec per pixel.

    Returns
    -------
    crval, crpix, cd : (float, float)
        Tangent point, FITS reference pixel (the image centre) and the
        diagonal of the CD matrix (degrees per pixel).
    """
    centre_pix = (size + 1) / 2.0
    return (ra, dec), (centre_pix, centre_pix), (-pixscale / 3600.0, pixscale / 3600.0)


def viewer_hdulist(cube, survey, bands, crval, crpix, cd):
    """The HDUList the Legacy Surveys viewer sends for a ``fits-cutout``.

    Parameters
    ----------
    cube : `numpy.ndarray`, shape (nbands, size, size)
        Pixel values in the layer's unit (float32).
    survey : {"galex", "unwise"}
        Canonical survey name (the layer is ``galex`` or ``unwise-neo7``).
    bands : sequence
        Native band identifiers naming the planes.
    crval, crpix, cd : (float, float)
        From `viewer_geometry`.

    Returns
    -------
    `~astropy.io.fits.HDUList`
    """
    size = cube.shape[-1]
    cards = [("BANDS", "".join(str(b) for b in bands))]
    cards += [(f"BAND{i}", b) for i, b in enumerate(bands)]
    cards += [
        ("CTYPE1", "RA---TAN"),
        ("CTYPE2", "DEC--TAN"),
        ("CRVAL1", crval[0]),
        ("CRVAL2", crval[1]),
        ("CRPIX1", crpix[0]),
        ("CRPIX2", crpix[1]),
        ("CD1_1", cd[0]),
        ("CD1_2", 0.0),
        ("CD2_1", 0.0),
        ("CD2_2", cd[1]),
        ("IMAGEW", float(size)),
        ("IMAGEH", float(size)),
        ("SURVEY", _LAYER_NAME[survey]),
        ("VERSION", SERVICE_VERSION),
    ]
    return fits.HDUList([primary_hdu(cube, cards)])
