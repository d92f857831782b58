"""The survey registry.

Each module of this package that defines a module-level ``survey`` (an instance of
`~astro_mantis.surveys.core.Survey`) is a survey: adding a survey means adding one
module. `SURVEYS` maps names to them in model channel order (GALEX, Pan-STARRS, unWISE
come first, in that order; others follow alphabetically). A survey declared outside
the package (in a user's own module) joins with `register_survey`.

A survey's module also declares the bit of its ``<SURVEY>_MISSING`` flag
(``missing_flag``; see `astro_mantis.flags`); joining the registry records it, so
the fetch engine, the fusion and the tables flag a missing new survey like a
missing built-in one.
"""
import importlib
import pkgutil

from ..flags import register_survey_flag, unregister_survey_flag
from .core import Request, Survey, SurveyImage, read_fits_bytes

__all__ = ["SURVEYS", "DEFAULT_SURVEYS", "get_survey", "get_surveys", "register_survey",
           "unregister_survey",
           "Survey", "SurveyImage", "Request", "read_fits_bytes"]

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
    # declared bits first, so that a survey given the lowest free bit cannot take one
    for name in sorted(order, key=lambda n: found[n].missing_flag is None):
        register_survey_flag(name, found[name].missing_flag)
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


def get_surveys(surveys):
    """The registered surveys named by ``surveys``, as a list.

    Parameters
    ----------
    surveys : str, `~astro_mantis.surveys.core.Survey` or iterable of them
        Survey names (case-insensitive) or surveys. One name (``"galex"``), or
        several in one string separated by commas (``"galex,unwise"``), is read as a
        list of them, not as a sequence of letters.

    Returns
    -------
    list of `~astro_mantis.surveys.core.Survey`
        In the order first named; a survey named more than once (``"galex, GALEX"``)
        appears once.

    Raises
    ------
    ValueError
        If a name is unknown; the message lists the known ones.

    Examples
    --------
    >>> [s.name for s in get_surveys("galex")]
    ['galex']
    >>> [s.name for s in get_surveys(("panstarrs", "UNWISE"))]
    ['panstarrs', 'unwise']
    >>> [s.name for s in get_surveys("unwise, galex, UNWISE")]
    ['unwise', 'galex']
    """
    if isinstance(surveys, (str, Survey)):
        surveys = [surveys] if isinstance(surveys, Survey) else \
            [s.strip() for s in surveys.split(",") if s.strip()]
    out = []
    for s in surveys:
        survey = get_survey(s)
        if all(survey is not seen for seen in out):  # one survey named twice: once
            out.append(survey)
    return out


def register_survey(survey, replace=False):
    """Add a survey declared outside this package to the registry.

    Once registered, the survey is fetched, cached and returned in
    `~astro_mantis.MultiSurveyCutout` objects like the built-in ones
    (``Mantis.get_cutouts(coords, surveys=(..., "name"))``), and its
    ``<SURVEY>_MISSING`` flag (the bit its ``missing_flag`` declares, or the lowest
    free one of `~astro_mantis.flags.SURVEY_FLAG_BITS`) is recorded
    (`~astro_mantis.flags.survey_missing_flag`).

    Parameters
    ----------
    survey : `~astro_mantis.surveys.core.Survey`
        The declaration (bands, pixel scale, size, unit, request building, reading).
    replace : bool
        Replace a registered survey of the same name.

    Returns
    -------
    survey : `~astro_mantis.surveys.core.Survey`

    Raises
    ------
    TypeError
        If ``survey`` is not a `~astro_mantis.surveys.core.Survey`.
    ValueError
        If the name is empty, not lower case, or taken (without ``replace``), or its declared
        ``missing_flag`` is not a bit it may hold
        (`~astro_mantis.flags.register_survey_flag`).
    """
    if not isinstance(survey, Survey):
        raise TypeError(f"register_survey takes a Survey instance, got {type(survey).__name__}")
    name = str(survey.name)
    if not name:
        raise ValueError("a survey needs a name")
    if name != name.lower():
        # names are looked up lower-cased, but cutouts (cut[name]), statuses and flags
        # are keyed by survey.name itself: the two must be one spelling
        raise ValueError(f"survey names are lower case: name the survey {name.lower()!r}, "
                         f"not {name!r} (users may still write it in any case)")
    if name in SURVEYS and not replace:
        raise ValueError(f"survey {name!r} is registered already (pass replace=True)")
    register_survey_flag(name, survey.missing_flag)
    SURVEYS[name] = survey
    order = [n for n in DEFAULT_SURVEYS if n in SURVEYS] + sorted(set(SURVEYS) -
                                                                   set(DEFAULT_SURVEYS))
    items = {n: SURVEYS[n] for n in order}
    SURVEYS.clear()
    SURVEYS.update(items)
    return survey


def unregister_survey(name):
    """Remove a survey added with `register_survey` (the built-in ones cannot be removed).

    Raises
    ------
    ValueError
        If the survey is one of the built-in ones or is not registered.
    """
    key = str(name).lower()
    if key in DEFAULT_SURVEYS:
        raise ValueError(f"{key!r} is a built-in survey")
    if key not in SURVEYS:
        raise ValueError(f"survey {key!r} is not registered")
    del SURVEYS[key]
    unregister_survey_flag(key)
