# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Every long option of the ``astro-mantis`` command is documented in docs/*.rst.

The parsers are built as the command builds them (`astro_mantis.cli.main.build_parser`)
and walked down to the subcommands of subcommands (``explain bands``, ...). An option
counts as documented when its literal text, say ``--cache-dir``, appears in any page
of docs/ as a whole option: ``--out`` is not documented by a page that only mentions
``--output``.
"""
import argparse
import re
from pathlib import Path

from astro_mantis.cli.main import build_parser

DOCS = Path(__file__).resolve().parents[1] / "docs"

#: Options that may stay undocumented, as {(command, option): why}. Empty: every long
#: option of every subcommand is documented somewhere in docs/*.rst. An entry added
#: here must say why the option has no documentation yet.
ALLOWED_UNDOCUMENTED = {}


def long_options(parser, command="astro-mantis"):
    """``(command, option)`` for every long option of ``parser`` and its subcommands.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
    command : str
        The command ``parser`` parses, as the user types it.

    Returns
    -------
    list of (str, str)
        ``--help`` left out (argparse adds it to every parser).
    """
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += long_options(sub, f"{command} {name}")
            continue
        found += [(command, option) for option in action.option_strings
                  if option.startswith("--") and option != "--help"]
    return found


def mentioned(option, text):
    """Whether ``option`` appears in ``text`` as a whole option (not inside a longer one)."""
    return re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", text) is not None


def undocumented(parser, text, allowed=()):
    """The ``(command, option)`` pairs of ``parser`` that ``text`` does not mention."""
    return sorted({(command, option) for command, option in long_options(parser)
                   if (command, option) not in allowed and not mentioned(option, text)})


def docs_text():
    pages = sorted(DOCS.glob("*.rst"))
    assert pages, f"no pages in {DOCS}"
    return "\n".join(page.read_text(encoding="utf-8") for page in pages)


def test_every_long_option_is_documented():
    parser = build_parser()
    options = long_options(parser)
    # the walk reaches every subcommand, nested ones included
    commands = {command for command, _ in options}
    for command in ("predict", "cutouts", "demo", "train", "match", "build-training-set",
                    "plot", "serve", "explain bands", "explain spectra"):
        assert f"astro-mantis {command}" in commands, command
    assert ("astro-mantis train", "--zero-point-jitter") in options

    missing = undocumented(parser, docs_text(), ALLOWED_UNDOCUMENTED)
    assert not missing, ("options of the astro-mantis command that no page of docs/ "
                         "mentions: " + ", ".join(f"{c} {o}" for c, o in missing))
    # an allowed entry that is documented by now, or no longer exists, is stale
    stale = [key for key in ALLOWED_UNDOCUMENTED
             if key not in options or mentioned(key[1], docs_text())]
    assert not stale, f"remove these from ALLOWED_UNDOCUMENTED: {stale}"


def test_check_reports_an_undocumented_option():
    parser = build_parser()
    text = docs_text()
    assert undocumented(parser, text, ALLOWED_UNDOCUMENTED) == []
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                 ).choices["train"]
    train.add_argument("--no-such-option-for-the-test", action="store_true")
    assert undocumented(parser, text, ALLOWED_UNDOCUMENTED) == [
        ("astro-mantis train", "--no-such-option-for-the-test")]
    # a longer option that starts with it does not document it
    assert not mentioned("--out", "write to ``--output FILE``, or --out-dir")
    assert mentioned("--out", "``--out DIR``, ``-o DIR``")
    assert mentioned("--out", "give --out.")
