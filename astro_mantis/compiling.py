"""`torch.compile` where it works, the eager function where it does not.

`torch.compile` returns at once; the compilation happens at the first call, and that
is where a missing C++ compiler or an unsupported operation shows. `CompiledOrEager`
makes that first call, and on failure warns once and runs the eager function from
then on. Used by the compiled network of `astro_mantis.models.predict` and by
`astro_mantis.fusion.fuse_arrays_fast`. Importing this module does not import torch.
"""
import warnings

__all__ = ["CompiledOrEager"]


class CompiledOrEager:
    """``torch.compile(fn)``, falling back to ``fn`` for good if compiling fails.

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
        #: None before the first call, then whether the compiled function ran.
        self.ok = None

    def __call__(self, *args):
        if self.ok is False:
            return self.eager(*args)
        try:
            out = self.fn(*args)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: run eagerly
            if self.ok:  # it compiled and ran before: a real error, not the compiler
                raise
            warnings.warn(f"torch.compile failed for {self.what} ({type(exc).__name__}: "
                          f"{exc}); running it eagerly", RuntimeWarning, stacklevel=2)
            self.ok = False
            return self.eager(*args)
        self.ok = True
        return out
