"""The survey registry.

Each module of this package that defines a module-level ``survey`` (an instance of
`~astro_mantis.surveys.core.Survey`) is a survey: adding a survey means adding one
module. `SURVEYS` maps names to them in model channel order (GALEX, Pan-STARRS, unWISE
come first, in that order; others follow alphabetically).
"""
import importlib
import pkgutil

from .core import Request, Survey, SurveyImage, read_fits_bytes

__all__ = ["SURVEYS", "DEFAULT_SURVEYS", "get_survey", "Survey", "SurveyImage", "Request",
           "read_fits_bytes"]

#: The surveys the Mantis Shrimp model fuses, in channel order.
DEFAULT_SURVEYS = ("galex", "panstarrs", "unwise")


def _discover():
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in ("core", "legacysurvey"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        survey = getattr(module, "survey", None)
        if isinstance(survey, Survey):
            found[survey.name] = survey
    order = [n for n in DEFAULT_SURVEYS if n in found] + sorted(set(found) - set(DEFAULT_SURVEYS))
    return {name: found[name] for name in order}


#: name → `~astro_mantis.surveys.core.Survey`, for every survey module found.
SURVEYS = _discover()


def get_survey(name):
    """Return the registered survey called ``name`` (case-insensitive).

    Raises
    ------
    ValueError
        If no survey has that name; the message lists the known ones.
    """
    if isinstance(name, Survey):
        return name
    key = str(name).lower()
    if key not in SURVEYS:
        raise ValueError(f"unknown survey {name!r}; known surveys: {', '.join(SURVEYS)}")
    return SURVEYS[key]
