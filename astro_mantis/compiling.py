"""`torch.compile` where it works, the eager function where it does not.

`torch.compile` returns at once; the compilation happens at the first call, and that
is where a missing C++ compiler or an unsupported operation shows. `CompiledOrEager`
makes that first call; when it fails, the eager function is run on the same
arguments. If that succeeds, compiling is what failed: it warns once and runs the
eager function from then on. If the eager function fails too, the arguments are at
fault (a wrong shape, say): its error is raised and nothing is decided, so the next
call compiles again. After a first successful call every error is raised as it is.
Used by the compiled network of `astro_mantis.models.predict` and by
`astro_mantis.fusion.fuse_arrays_fast`. Importing this module does not import torch.
"""
import warnings

__all__ = ["CompiledOrEager"]


class CompiledOrEager:
    """``torch.compile(fn)``, falling back to ``fn`` for good if compiling fails.

    A failure of the first call counts as a compiler failure only where ``fn`` itself
    runs on the same arguments; an error ``fn`` raises too is raised (``ok`` stays
    None).

    Parameters
    ----------
    fn : callable
        A `torch.nn.Module` or a function of tensors.
    options : dict, optional
        Inductor options passed to `torch.compile` (e.g. ``{"freezing": True}``).
    what : str
        What is compiled, for the warning.

    Examples
    --------
    >>> import torch
    >>> from astro_mantis.compiling import CompiledOrEager
    >>> double = CompiledOrEager(lambda t: 2 * t, what="a doubling")
    >>> callable(double)
    True
    """

    def __init__(self, fn, options=None, what="the network"):
        import torch

        self.eager = fn
        self.what = what
        self.fn = torch.compile(fn, dynamic=False, options=options)
        #: None until a call decides it, then whether the compiled function runs (False:
        #: it failed where the eager function did not, and the eager one is used).
        self.ok = None

    def __call__(self, *args):
        if self.ok is False:
            return self.eager(*args)
        try:
            out = self.fn(*args)
        except Exception as exc:  # noqa: BLE001 - the compiler, or the input: ask eager
            if self.ok:  # it compiled and ran before: a real error, not the compiler
                raise
            try:
                out = self.eager(*args)
            except Exception as eager_exc:
                # the eager function fails as well: the call's own error (a bad shape,
                # say), not the compiler's. Raise it and decide nothing: the next call
                # compiles again
                raise eager_exc from None
            warnings.warn(f"torch.compile failed for {self.what} ({type(exc).__name__}: "
                          f"{exc}); running it eagerly", RuntimeWarning, stacklevel=2)
            self.ok = False
            return out
        self.ok = True
        return out
