# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Cutout sources other than the survey services: survey images held on local disks.

`LocalTiles` cuts the same `~astro_mantis.MultiSurveyCutout` objects as
`Mantis.get_cutouts <astro_mantis.MantisClass.get_cutouts>` from FITS tiles in local
directories (one per survey); `TileIndex` is the persisted footprint index of one such
directory, `Grid` one pixel grid in it.
"""
from .localtiles import LocalTiles
from .tileindex import Grid, TileIndex

__all__ = ["LocalTiles", "TileIndex", "Grid"]
