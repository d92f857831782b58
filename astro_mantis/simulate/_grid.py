# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The sky grid shared by the mock sky's background cells and its randomised fields."""
import math

__all__ = ["SkyCells"]


class SkyCells:
    """Equal-area-ish cells of the sphere: declination rows cut in RA."""

    def __init__(self, side_deg):
        self.h = float(side_deg)
        self.nrows = int(math.ceil(180.0 / self.h))

    def row_ncells(self, j):
        dec_lo = -90.0 + j * self.h
        dec_hi = min(dec_lo + self.h, 90.0)
        cos_max = math.cos(math.radians(min(abs(dec_lo), abs(dec_hi))
                                        if dec_lo * dec_hi > 0 else 0.0))
        return max(1, int(360.0 * cos_max / self.h))

    def bounds(self, j, i):
        """(ra_lo, ra_hi, dec_lo, dec_hi) of cell (j, i)."""
        n = self.row_ncells(j)
        width = 360.0 / n
        dec_lo = -90.0 + j * self.h
        return i * width, (i + 1) * width, dec_lo, min(dec_lo + self.h, 90.0)

    def index(self, ra, dec):
        """Cell (j, i) containing a position."""
        j = min(int((dec + 90.0) // self.h), self.nrows - 1)
        n = self.row_ncells(j)
        return j, min(int((ra % 360.0) / (360.0 / n)), n - 1)

    def around(self, ra, dec, radius):
        """Every cell that may overlap the disc of ``radius`` degrees at (ra, dec)."""
        j0 = max(int((dec - radius + 90.0) // self.h), 0)
        j1 = min(int((dec + radius + 90.0) // self.h), self.nrows - 1)
        out = []
        for j in range(j0, j1 + 1):
            n = self.row_ncells(j)
            width = 360.0 / n
            _, _, dlo, dhi = self.bounds(j, 0)
            cos_min = math.cos(math.radians(min(max(abs(dlo), abs(dhi)), 89.999)))
            half = radius / cos_min
            if half * 2 >= 360.0 or abs(dec) + radius >= 89.0:
                out.extend((j, i) for i in range(n))
                continue
            i0 = int(math.floor((ra - half) / width))
            i1 = int(math.floor((ra + half) / width))
            out.extend((j, i % n) for i in range(i0, i1 + 1))
        return list(dict.fromkeys(out))
