# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The astroquery-style service front: `MantisClass` and its instance `Mantis`.

A thin front over the fetch engine (`astro_mantis.fetch`), in astroquery's habits:
`~MantisClass.get_cutouts` with ``get_query_payload=True`` returns the requests it
would send without sending them, and `~MantisClass.clear_cache` and
`~MantisClass.cache_location` act on the cutout cache that the calls fill.
`~MantisClass.query_coordinates` adds redshift columns (`astro_mantis.table`).
"""
from .fetch import (PLAN_SECONDS_PER_REQUEST, RETRY_STATUSES, CutoutCache, FetchPlan,  # noqa: F401
                    FetchStatus, coalesce_span, fetcher, normalize_coordinates)
from .surveys import DEFAULT_SURVEYS

__all__ = ["MantisClass", "Mantis"]


class MantisClass:
    """Fetch GALEX, Pan-STARRS and unWISE cutouts for sky positions.

    Use the ready-made instance `Mantis`. Service URLs, time limits, retries and
    connections per host come from `astro_mantis.conf`, read at call time.

    Parameters
    ----------
    engine : `~astro_mantis.fetch.CutoutFetcher`, optional
        The fetch engine (default: the shared `astro_mantis.fetch.fetcher`).
    """

    def __init__(self, engine=None):
        self._engine = engine or fetcher

    @property
    def last_request_count(self):
        """HTTP requests sent by the last `get_cutouts` call (retries included)."""
        return self._engine.last_request_count

    # -- photo-z -------------------------------------------------------------------
    def query_coordinates(self, coordinates, **kwargs):
        """Redshift PDFs at positions, as a new table.

        See `astro_mantis.table.query_coordinates`.

        Parameters
        ----------
        coordinates : `~astropy.coordinates.SkyCoord`
            One position or an array of them.
        **kwargs
            Passed to `astro_mantis.add_redshift_columns` (``model``, ``surveys``,
            ``ebv``, ``batch_size``, ``device``, ``cache``, ...).

        Returns
        -------
        `~astropy.table.Table`
            Column ``coord`` and the redshift columns (``z_pdf``, ``z_mean``, ...,
            ``z_flags``), one row per position in input order.
        """
        from .table import query_coordinates

        return query_coordinates(coordinates, **kwargs)

    # -- cutouts ---------------------------------------------------------------------
    def get_cutouts(self, coordinates, surveys=DEFAULT_SURVEYS, cache=True, progress=None,
                    get_query_payload=False, source=None, coalesce=None):
        """Fetch the cutouts of every survey at every position.

        Parameters
        ----------
        coordinates : `~astropy.coordinates.SkyCoord` or str
            One position or an array of them, any frame convertible to ICRS; or one
            position as a string (``"10:00:33.6 +02:25:12"``) or an object name
            (resolved with Sesame, which needs the network).
        surveys : str or sequence of str
            Survey names (see `astro_mantis.surveys.SURVEYS`), default all three; one
            name alone (``"galex"``) asks for that survey
            (`~astro_mantis.surveys.get_surveys`).
        cache : bool
            Read and write the on-disk cache (``conf.cache_dir``). With False, every
            cutout is fetched and nothing is written.
        progress : bool or callable, optional
            True shows a progress bar, False hides it; default (None): shown on a
            terminal (standard error is one, or a Jupyter kernel runs the code), for
            more than 10 distinct valid positions (`astro_mantis.progress`). A
            callable is called with 1 each time a position's cutouts are all in
            (fetched, cached or failed) instead, e.g. a `tqdm.tqdm` bar's ``update``.
        get_query_payload : bool
            Return the requests the call would send first, sending none
            (`astro_mantis.fetch.CutoutFetcher.query_payload`).
        source : `~astro_mantis.sources.LocalTiles`, optional
            Cut the cutouts from survey images on local disks instead of fetching
            them (same objects, same flags); default: the survey services.
        coalesce : bool, float or `~astropy.units.Quantity`
            Let Pan-STARRS positions of one skycell within a square of this span share
            one larger request per band, cut locally into their cutouts (identical to
            those of their own requests; :ref:`cutouts-coalescing`). True: 1 arcmin;
            a number: arcminutes; an angle; False: each position is fetched alone;
            None (the default): ``conf.ps1_coalesce_arcmin`` (0, off, unless
            configured; `~astro_mantis.add_redshift_columns` fetches with it too).

        Returns
        -------
        `~astro_mantis.MultiSurveyCutout` or list of them
            A scalar position gives one cutout. An array gives a list of the same
            length and order: invalid positions and failed fetches are flagged in each
            cutout's ``flags``, ``missing`` and ``status``, never dropped. With
            ``get_query_payload=True``, a list of `~astro_mantis.surveys.Request`.

        Raises
        ------
        TypeError
            If ``coordinates`` is neither a `~astropy.coordinates.SkyCoord` nor a string.
        ValueError
            If a scalar position is NaN or out of range, a name cannot be resolved,
            or a survey name is unknown.
        """
        coalesce_span(coalesce)  # refuse a bad span before anything is sent
        if source is not None:
            if get_query_payload:
                return []  # local tiles send no request
            return source.get_cutouts(coordinates, surveys=surveys, progress=progress)
        if get_query_payload:
            return self._engine.query_payload(coordinates, surveys=surveys, cache=cache)
        return self._engine.get_cutouts(coordinates, surveys=surveys, cache=cache,
                                        progress=progress, coalesce=coalesce)

    def plan(self, coordinates, surveys=DEFAULT_SURVEYS, cache=True):
        """What `get_cutouts` would fetch and roughly how long it would take; sends nothing.

        See `astro_mantis.fetch.CutoutFetcher.plan`.

        Parameters
        ----------
        coordinates : `~astropy.coordinates.SkyCoord`
            Positions (invalid ones are not counted).
        surveys : str or sequence of str
            Survey names (one name alone: that survey).
        cache : bool
            Count what the on-disk cache already holds (for the configured services).

        Returns
        -------
        `~astro_mantis.fetch.FetchPlan`
        """
        return self._engine.plan(coordinates, surveys=surveys, cache=cache)

    def get_image_list(self, coordinates, surveys=DEFAULT_SURVEYS):
        """The URLs of the images `get_cutouts` would fetch (no cache, no download).

        Pan-STARRS file names come from its listing service, so this sends the
        ``ps1filenames.py`` listing requests (one per chunk of positions); nothing else
        is requested. Invalid positions and positions outside a survey's footprint
        contribute no URL.

        Parameters
        ----------
        coordinates : `~astropy.coordinates.SkyCoord`
            Scalar or array.
        surveys : str or sequence of str
            Survey names (one name alone: that survey).

        Returns
        -------
        list of str
        """
        return self._engine.get_image_list(coordinates, surveys=surveys)

    # -- the cutout cache --------------------------------------------------------------
    @property
    def cache_location(self):
        """`pathlib.Path`: the directory of the cutout cache (``conf.cache_dir``, or
        ``<astropy cache>/astro_mantis/cutouts``)."""
        return CutoutCache().directory

    def clear_cache(self):
        """Delete every cutout in the cache (`cache_location`); the next calls fetch again.

        Only the cache's own entries are deleted (``CutoutCache.clear`` of `astro_mantis.fetch`):
        other files in that directory, which ``conf.cache_dir`` may share with them,
        are left as they are.

        Returns
        -------
        int
            The number of cache entries deleted.
        """
        return CutoutCache().clear()


#: The ready-to-use service instance.
Mantis = MantisClass()
