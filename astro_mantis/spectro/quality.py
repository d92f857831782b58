# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Quality cuts on spectroscopic catalogs, written once for every catalog path.

A quality cut is a small boolean expression over catalog columns, in Python syntax::

    "zWarning == 0 and class == 'GALAXY'"
    "NQ >= 3"                                  # GAMA
    "ZWARN == 0 and SPECTYPE in ('GALAXY',)"   # DESI
    "zflg >= 2 and zflg < 10"                  # VIPERS

`QualityCut` parses it once and then either translates it to SQL (the ``WHERE``
clause sent to SDSS SkyServer) or evaluates it on columns held locally (an spAll
file, a user catalog), so that the same cut means the same thing on every path.

Grammar
-------
* comparisons ``==  !=  <  <=  >  >=`` (chains such as ``0 < z < 1`` too), and
  ``in`` / ``not in`` with a tuple or list of constants;
* ``and``, ``or``, ``not`` (or ``&``, ``|``, ``~``) and parentheses;
* column names (letters, digits, underscores), numbers, quoted strings,
  ``True``/``False``.

Nothing else is accepted (no function calls, attributes or arithmetic), so an
expression can neither run code nor inject SQL.

Semantics, identical on all paths
---------------------------------
* Column names are matched **case-insensitively** (``zWarning`` finds SkyServer's
  ``zWarning`` and spAll's ``ZWARNING``).
* Strings are compared case-insensitively and without trailing blanks, as SQL
  Server (SkyServer's database) compares them.
* A comparison with a NaN or masked value is *unknown*, as SQL's comparisons with
  NULL, and ``and``, ``or``, ``not`` follow SQL's three-valued logic: an unknown
  never passes, and neither does its negation (``not z < 1`` and ``z != 1`` keep no
  row whose ``z`` is NaN), while ``z < 1 or zWarning == 0`` keeps a NaN-``z`` row
  whose ``zWarning`` is 0.
"""
import ast
import io
import keyword
import re
import tokenize

import numpy as np

__all__ = ["QualityCut"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SQL_OPS = {ast.Eq: "=", ast.NotEq: "<>", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
            ast.GtE: ">="}
_NP_OPS = {ast.Eq: np.equal, ast.NotEq: np.not_equal, ast.Lt: np.less, ast.LtE: np.less_equal,
           ast.Gt: np.greater, ast.GtE: np.greater_equal}


class QualityCut:
    """A parsed quality expression (see the module notes for the grammar).

    Parameters
    ----------
    expression : str
        The expression, e.g. ``"zWarning == 0 and class == 'GALAXY'"``.

    Attributes
    ----------
    expression : str
        The expression as given.
    columns : tuple of str
        The column names it uses, in order of first appearance, as written.

    Raises
    ------
    ValueError
        If the expression is empty, not valid Python syntax, or uses anything
        outside the grammar; the message names the offending part.

    Examples
    --------
    >>> from astro_mantis.spectro import QualityCut
    >>> cut = QualityCut("zWarning == 0 and class in ('GALAXY', 'QSO')")
    >>> cut.columns
    ('zWarning', 'class')
    >>> cut.to_sql()
    "(zWarning = 0 AND class IN ('GALAXY', 'QSO'))"
    >>> import numpy as np
    >>> cols = {"ZWARNING": np.array([0, 4, 0]), "CLASS": np.array(["GALAXY", "GALAXY", "STAR"])}
    >>> cut.evaluate(cols)
    array([ True, False, False])
    """

    def __init__(self, expression):
        if not isinstance(expression, str) or not expression.strip():
            raise ValueError(f"a quality cut must be a non-empty string expression, got "
                             f"{expression!r}")
        self.expression = expression
        self._source, self._renamed = _protect_keywords(expression.strip())
        try:
            tree = ast.parse(self._source, mode="eval")
        except SyntaxError as exc:
            raise ValueError(f"cannot parse the quality cut {expression!r}: {exc.msg}") from None
        self._tree = tree.body
        names = []
        self._check(self._tree, names)
        self.columns = tuple(dict.fromkeys(names))

    def __repr__(self):
        return f"QualityCut({self.expression!r})"

    def __eq__(self, other):
        return isinstance(other, QualityCut) and other.expression == self.expression

    def __hash__(self):
        return hash(self.expression)

    # -- validation ------------------------------------------------------------------
    def _fail(self, node, what):
        text = ast.get_source_segment(self._source, node) or type(node).__name__
        for mangled, name in self._renamed.items():
            text = text.replace(mangled, name)
        raise ValueError(f"quality cut {self.expression!r}: {what} ({text!r}) is not allowed; "
                         "use comparisons of columns with constants joined by and/or/not")

    def _check(self, node, names):
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                self._check(v, names)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            self._check(node.left, names)
            self._check(node.right, names)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
            self._check(node.operand, names)
        elif isinstance(node, ast.Compare):
            operands = [node.left] + list(node.comparators)
            for op, right in zip(node.ops, operands[1:]):
                if isinstance(op, (ast.In, ast.NotIn)):
                    if not isinstance(right, (ast.Tuple, ast.List)) or not right.elts:
                        self._fail(right, "'in' needs a non-empty tuple or list of constants; this")
                    for elt in right.elts:
                        self._constant(elt)
                elif type(op) not in _SQL_OPS:
                    self._fail(node, f"the operator {type(op).__name__}")
            for operand in operands:
                if isinstance(operand, (ast.Tuple, ast.List)):
                    continue
                if isinstance(operand, ast.Name):
                    self._name(operand, names)
                else:
                    self._constant(operand)
            if not any(isinstance(o, ast.Name) for o in operands):
                self._fail(node, "a comparison without a column")
        elif isinstance(node, ast.Name):
            self._fail(node, "a bare column name (compare it with a value)")
        else:
            self._fail(node, "this")

    def _name(self, node, names):
        if node.id in ("True", "False", "None") or not _IDENTIFIER.match(node.id):
            self._fail(node, "the name")
        names.append(self._renamed.get(node.id, node.id))

    def _constant(self, node):
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
                and isinstance(node.operand, ast.Constant) \
                and isinstance(node.operand.value, (int, float)) \
                and not isinstance(node.operand.value, bool):
            return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            self._fail(node, "this operand ('&' and '|' bind tighter than comparisons: "
                             "parenthesise the comparisons or use 'and'/'or')")
        self._fail(node, "this operand")

    # -- SQL -------------------------------------------------------------------------
    def to_sql(self, alias=None):
        """The expression as an SQL (SQL Server) boolean expression.

        Parameters
        ----------
        alias : str, optional
            Table alias to qualify the column names with (``alias.column``).

        Returns
        -------
        str
            Parenthesised, with ``=``, ``<>``, ``AND``, ``OR``, ``NOT``, ``IN``;
            strings are quoted with embedded quotes doubled.
        """
        if alias is not None and not _IDENTIFIER.match(alias):
            raise ValueError(f"invalid SQL alias {alias!r}")
        return self._sql(self._tree, f"{alias}." if alias else "")

    def _sql(self, node, prefix):
        if isinstance(node, ast.BoolOp):
            word = " AND " if isinstance(node.op, ast.And) else " OR "
            return "(" + word.join(self._sql(v, prefix) for v in node.values) + ")"
        if isinstance(node, ast.BinOp):
            word = " AND " if isinstance(node.op, ast.BitAnd) else " OR "
            return f"({self._sql(node.left, prefix)}{word}{self._sql(node.right, prefix)})"
        if isinstance(node, ast.UnaryOp):
            return f"(NOT {self._sql(node.operand, prefix)})"
        operands = [node.left] + list(node.comparators)
        parts = []
        for op, left, right in zip(node.ops, operands[:-1], operands[1:]):
            lhs = self._sql_operand(left, prefix)
            if isinstance(op, (ast.In, ast.NotIn)):
                items = ", ".join(_sql_literal(self._constant(e)) for e in right.elts)
                word = "IN" if isinstance(op, ast.In) else "NOT IN"
                parts.append(f"{lhs} {word} ({items})")
            else:
                parts.append(f"{lhs} {_SQL_OPS[type(op)]} {self._sql_operand(right, prefix)}")
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def _sql_operand(self, node, prefix):
        if isinstance(node, ast.Name):
            return prefix + self._renamed.get(node.id, node.id)
        return _sql_literal(self._constant(node))

    # -- local evaluation --------------------------------------------------------------
    def evaluate(self, columns, n=None):
        """Evaluate the cut on columns held locally.

        Parameters
        ----------
        columns : mapping or `~astropy.table.Table`
            Anything that gives a 1-D array for a column name with ``columns[name]``;
            names are looked up exactly first, then case-insensitively (through
            ``keys()`` or ``colnames`` when ``columns`` has them).
        n : int, optional
            Number of rows (needed only when the expression uses no column, which
            the grammar forbids; kept for callers that know it).

        Returns
        -------
        `numpy.ndarray` of bool
            True where a row passes the cut.

        Raises
        ------
        KeyError
            If a column is missing; the message lists the columns that exist.
        """
        lookup = _CaseInsensitive(columns)
        mask, _ = self._eval(self._tree, lookup)
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim == 0:  # pragma: no cover - the grammar needs a column
            mask = np.full(int(n or 0), bool(mask))
        return mask

    def _eval(self, node, lookup):
        """(true, false) masks of a node, in SQL's three-valued logic.

        A row is in neither where the node's value is unknown (a comparison with a NaN
        or masked value, as SQL's comparisons with NULL): ``not`` swaps the two masks,
        so an unknown stays unknown and never passes, as in SQL.
        """
        if isinstance(node, ast.BoolOp):
            parts = [self._eval(v, lookup) for v in node.values]
            return _combine(isinstance(node.op, ast.And), parts)
        if isinstance(node, ast.BinOp):
            return _combine(isinstance(node.op, ast.BitAnd),
                            [self._eval(node.left, lookup), self._eval(node.right, lookup)])
        if isinstance(node, ast.UnaryOp):
            true, false = self._eval(node.operand, lookup)
            return false, true
        operands = [node.left] + list(node.comparators)
        parts = []
        for op, left, right in zip(node.ops, operands[:-1], operands[1:]):
            lhs = self._value(left, lookup)
            if isinstance(op, (ast.In, ast.NotIn)):
                values = [self._constant(e) for e in right.elts]
                res = np.zeros(np.shape(lhs), dtype=bool)
                valid = _valid(lhs)
                for v in values:
                    res |= _compare(np.equal, lhs, v)
                true, false = res & valid, ~res & valid
                parts.append((false, true) if isinstance(op, ast.NotIn) else (true, false))
            else:
                rhs = self._value(right, lookup)
                true = _compare(_NP_OPS[type(op)], lhs, rhs)
                valid = np.ones(1, dtype=bool)
                for side in (lhs, rhs):
                    if not np.isscalar(side):
                        valid = valid & _valid(side)
                parts.append((true, ~true & valid))
        return _combine(True, parts)  # a chain such as 0 < z < 1 is an 'and'

    def _value(self, node, lookup):
        if isinstance(node, ast.Name):
            return lookup[self._renamed.get(node.id, node.id)]
        return self._constant(node)


_OPERATOR_WORDS = frozenset({"and", "or", "not", "in", "True", "False", "None"})


def _protect_keywords(text):
    """Rename Python keywords used as column names (SkyServer's ``class``).

    Returns the text to parse and the mapping of the stand-in names to the
    original ones.
    """
    renamed = {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return text, renamed  # the parser reports the problem
    out = []
    for tok in tokens:
        if tok.type == tokenize.NAME and keyword.iskeyword(tok.string) \
                and tok.string not in _OPERATOR_WORDS:
            stand_in = f"_column_{tok.string}_"
            while stand_in in text:
                stand_in = "_" + stand_in
            renamed[stand_in] = tok.string
            tok = tok._replace(string=stand_in)
        out.append(tok)
    if not renamed:
        return text, renamed
    return tokenize.untokenize(out).strip(), renamed


class _CaseInsensitive:
    """Column access by exact, then case-insensitive name."""

    def __init__(self, columns):
        self.columns = columns
        names = getattr(columns, "colnames", None)
        if names is None and hasattr(columns, "keys"):
            names = list(columns.keys())
        if names is None and hasattr(columns, "names"):  # FITS_rec, structured arrays
            names = list(columns.names or ())
        self.names = list(names or ())
        self._lower = {}
        for name in self.names:
            self._lower.setdefault(str(name).lower(), name)

    def __getitem__(self, name):
        key = name if name in self.names else self._lower.get(name.lower())
        if key is None:
            try:  # objects without a name listing
                return _column_array(self.columns[name])
            except (KeyError, ValueError, IndexError):
                pass
            raise KeyError(f"the quality cut needs column {name!r}, which the catalog does not "
                           f"have; its columns are: {', '.join(map(str, self.names)) or '(none)'}")
        return _column_array(self.columns[key])


def _column_array(col):
    """A column as a numpy (masked) array, text normalised for comparisons.

    Text stays in its type (bytes columns, as FITS files give them, are not decoded:
    that would cost far more than the comparison), without trailing blanks and in
    upper case.
    """
    arr = np.ma.asarray(col) if np.ma.isMaskedArray(col) else np.asarray(col)
    if arr.dtype.kind in "US":
        fill = b"" if arr.dtype.kind == "S" else ""
        arr = np.char.upper(np.char.rstrip(np.asarray(np.ma.filled(arr, fill))))
        if np.ma.isMaskedArray(col):
            arr = np.ma.array(arr, mask=np.ma.getmaskarray(col))
    return arr


def _combine(conjunction, parts):
    """(true, false) masks of the ``and`` (``conjunction``) or ``or`` of (true, false)
    pairs, in three-valued logic: ``a and b`` is false where either is false, true where
    both are true; ``a or b`` the other way round."""
    true, false = parts[0]
    for t, f in parts[1:]:
        if conjunction:
            true, false = true & t, false | f
        else:
            true, false = true | t, false & f
    return true, false


def _valid(value):
    """False where a value is masked or NaN."""
    arr = value if np.ma.isMaskedArray(value) else np.asarray(value)
    ok = ~np.ma.getmaskarray(arr)
    data = np.ma.getdata(arr)
    if data.dtype.kind == "f":
        ok &= ~np.isnan(data)
    return ok


def _compare(func, lhs, rhs):
    """Elementwise comparison; masked/NaN give False; strings case-insensitive."""
    if isinstance(rhs, str):
        rhs = rhs.rstrip().upper()
    if isinstance(lhs, str):
        lhs = lhs.rstrip().upper()
    valid = np.ones(1, dtype=bool)
    for side in (lhs, rhs):
        if not np.isscalar(side):
            valid = valid & _valid(side)
    lhs_d = np.ma.getdata(lhs) if np.ma.isMaskedArray(lhs) else lhs
    rhs_d = np.ma.getdata(rhs) if np.ma.isMaskedArray(rhs) else rhs
    kinds = {np.asarray(s).dtype.kind for s in (lhs_d, rhs_d)}
    if kinds == {"S", "U"}:  # a bytes column and a text constant: compare as bytes
        lhs_d, rhs_d = (np.char.encode(np.asarray(v), "ascii", "replace")
                        if np.asarray(v).dtype.kind == "U" else v for v in (lhs_d, rhs_d))
        kinds = {"S"}
    if kinds & {"U", "S"} and kinds - {"U", "S"}:
        # a string compared with a number: never true (SQL Server would refuse it)
        raise ValueError("cannot compare a text column with a number (or a number column "
                         "with text) in a quality cut")
    with np.errstate(invalid="ignore"):
        res = np.asarray(func(lhs_d, rhs_d), dtype=bool)
    return res & valid


def _sql_literal(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, float):
        if not np.isfinite(value):
            raise ValueError("non-finite numbers cannot be sent to SQL")
        return repr(value)
    return str(int(value))
