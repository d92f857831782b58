# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Validation shared by the simulator's configuration classes."""

__all__ = ["check_fraction"]


def check_fraction(name, value):
    """``value`` as a float in [0, 1], or a `ValueError` naming the setting ``name``.

    ``name`` is the setting as a user spells it, e.g. ``"MockSkyConfig.south_fraction"``.
    """
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"{name} must be within [0, 1], got {value!r}")
    return value
