"""The tabular baseline the Mantis Shrimp paper compares against.

Aperture photometry in the nine bands (``photutils``), turned into asinh magnitudes,
then a k-nearest-neighbours regressor in magnitude/colour space. It reads the same
shards as the network (`astro_mantis.simulate.dataset`), so both can be scored on the
same held-out test split.

Apertures are circles centred on the cutout centre, of radius 3″ in Pan-STARRS
(12 pixels), 6″ in GALEX (4 pixels) and 8.25″ in unWISE (3 pixels): about 2.5–3
times each band's PSF FWHM. Fluxes become AB asinh magnitudes (Lupton et al. 1999)
with a softening of the band's 1σ point-source flux (its 5σ depth − 1.75 mag), so
faint and negative fluxes stay finite and ordered.
"""
import math

import numpy as np

__all__ = ["APERTURE_RADII", "aperture_fluxes", "asinh_magnitudes", "shard_features",
           "KNNRedshift"]

#: Aperture radius in pixels per survey (see module docstring).
APERTURE_RADII = {"galex": 4.0, "panstarrs": 12.0, "unwise": 3.0}
#: AB zero points of the viewer surveys (GALEX counts/s; unWISE Vega nmgy → AB).
_FIXED_ZP = {"galex": (20.08, 18.82), "unwise": (22.5 + 2.699, 22.5 + 3.339)}
#: 5σ point-source depths (AB) used only to set the asinh softening.
_DEPTHS = (20.8, 19.9, 23.3, 23.2, 23.1, 22.3, 21.4, 20.3, 19.9)


def aperture_fluxes(images, radius):
    """Sum of each image within a centred circular aperture (``photutils``).

    Parameters
    ----------
    images : array, shape (N, nbands, ny, nx)
        Cutouts; NaN pixels are excluded (treated as masked).
    radius : float
        Aperture radius in pixels.

    Returns
    -------
    flux : array, shape (N, nbands)
    """
    from photutils.aperture import CircularAperture

    images = np.asarray(images, dtype=np.float64)
    n, nb, ny, nx = images.shape
    aperture = CircularAperture(((nx - 1) / 2, (ny - 1) / 2), r=radius)
    weights = aperture.to_mask(method="exact").to_image((ny, nx))
    finite = np.isfinite(images)
    return np.einsum("nbyx,yx->nb", np.where(finite, images, 0.0), weights)


def asinh_magnitudes(flux, zeropoint, depth):
    """AB asinh magnitudes with a softening equal to the band's 1σ point-source flux.

    Parameters
    ----------
    flux : array
        Fluxes in the band's native unit.
    zeropoint : array or float
        AB zero point: ``m = zp - 2.5 log10(flux)`` for bright sources.
    depth : array or float
        5σ point-source depth (AB), which sets the softening.
    """
    maggies = np.asarray(flux) * 10.0 ** (-0.4 * np.asarray(zeropoint))
    b = 10.0 ** (-0.4 * np.asarray(depth)) / 5.0
    return -2.5 / math.log(10.0) * (np.arcsinh(maggies / (2 * b)) + np.log(b))


def shard_features(shard):
    """Nine asinh aperture magnitudes (NUV FUV g r i z y W1 W2) of every galaxy of a shard.

    Parameters
    ----------
    shard : dict
        As returned by `astro_mantis.simulate.dataset.load_shard`.

    Returns
    -------
    features : array, shape (N, 9)
    """
    galex = aperture_fluxes(shard["galex"], APERTURE_RADII["galex"])
    ps1 = aperture_fluxes(shard["panstarrs"], APERTURE_RADII["panstarrs"])
    wise = aperture_fluxes(shard["unwise"], APERTURE_RADII["unwise"])
    ps1_zp = 25.0 + 2.5 * np.log10(np.asarray(shard["panstarrs_exptime"], dtype=float))
    zp = np.concatenate([np.broadcast_to(_FIXED_ZP["galex"], galex.shape), ps1_zp,
                         np.broadcast_to(_FIXED_ZP["unwise"], wise.shape)], axis=1)
    flux = np.concatenate([galex, ps1, wise], axis=1)
    return asinh_magnitudes(flux, zp, np.array(_DEPTHS))


class KNNRedshift:
    """k-nearest-neighbours redshift regressor on magnitude features.

    Features are standardised with the training set's median and NMAD-like scale;
    the estimate is the median redshift of the ``k`` nearest training galaxies, and
    `predict_pdf` gives their histogram on the model's redshift bins.

    Parameters
    ----------
    k : int
        Number of neighbours.
    """

    def __init__(self, k=20):
        if int(k) < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = int(k)

    def fit(self, features, z):
        """Remember the training set (features (N, d), redshifts (N,))."""
        from scipy.spatial import cKDTree

        features = np.asarray(features, dtype=float)
        z = np.asarray(z, dtype=float)
        good = np.all(np.isfinite(features), axis=1) & np.isfinite(z)
        if good.sum() < self.k:
            raise ValueError(f"need at least k={self.k} finite training rows, got {good.sum()}")
        self.center_ = np.median(features[good], axis=0)
        scale = 1.4826 * np.median(np.abs(features[good] - self.center_), axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        self.z_ = z[good]
        self.tree_ = cKDTree((features[good] - self.center_) / self.scale_)
        return self

    def _neighbours(self, features):
        x = (np.asarray(features, dtype=float) - self.center_) / self.scale_
        x = np.where(np.isfinite(x), x, 0.0)
        _, idx = self.tree_.query(x, k=self.k)
        return self.z_[np.asarray(idx).reshape(len(x), -1)]

    def predict(self, features):
        """Median neighbour redshift of each row."""
        return np.median(self._neighbours(features), axis=1)

    def predict_pdf(self, features, edges=None):
        """Histogram of neighbour redshifts on the model's bins.

        Returns a `~astro_mantis.pdf.RedshiftPDF`.

        A small floor (1e-6 of the peak) keeps every row valid.
        """
        from ..pdf import RedshiftPDF, Z_EDGES

        edges = Z_EDGES if edges is None else np.asarray(edges)
        zs = np.clip(self._neighbours(features), edges[0], np.nextafter(edges[-1], 0))
        idx = np.searchsorted(edges, zs, side="right") - 1
        counts = np.zeros((len(zs), len(edges) - 1))
        np.add.at(counts, (np.arange(len(zs))[:, None], idx), 1.0)
        counts += 1e-6 * counts.max(axis=1, keepdims=True)
        return RedshiftPDF(counts / np.diff(edges), edges=edges)
