# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Validation shared by the simulator's configuration classes."""

__all__ = ["check_fraction", "config_from_dict"]


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


def config_from_dict(name, cls, value):
    """A configuration dataclass ``cls`` made from the dict ``value`` of setting ``name``.

    An unknown key is a `ValueError` naming the setting and the key (not the
    `TypeError` of ``cls(**value)``); the dataclass's own checks name bad values.
    """
    from dataclasses import fields

    known = [f.name for f in fields(cls) if f.init]
    unknown = [k for k in value if k not in known]
    if unknown:
        raise ValueError(f"{name} has unknown setting(s) {unknown}; {cls.__name__} "
                         f"settings are {known}")
    return cls(**value)
