"""CompiledOrEager: a compiler failure falls back to eager; the caller's own error does not."""
import warnings

import pytest
import torch

from astro_mantis.compiling import CompiledOrEager


def three_rows(t):
    """A function of tensors that refuses bad input, as a network refuses a bad shape."""
    if t.shape[0] != 3:
        raise ValueError(f"expected 3 rows, got {t.shape[0]}")
    return t + 1


def test_an_error_of_the_input_is_raised_and_decides_nothing(monkeypatch):
    calls = []

    def compile_passing_through(fn, **kwargs):   # a compiler that works: fn's own errors
        def compiled(*args):
            calls.append("compiled")
            return fn(*args)
        return compiled

    monkeypatch.setattr(torch, "compile", compile_passing_through)
    run = CompiledOrEager(three_rows, what="a test function")
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no "torch.compile failed"
        with pytest.raises(ValueError, match="expected 3 rows, got 2"):
            run(torch.zeros(2))
    assert run.ok is None                           # undecided: not switched off
    assert float(run(torch.zeros(3))[0]) == 1.0     # the next valid call runs compiled
    assert run.ok is True and calls == ["compiled", "compiled"]
    with pytest.raises(ValueError, match="expected 3 rows"):
        run(torch.zeros(4))
    assert run.ok is True


def test_a_compiler_failure_falls_back_to_eager_for_good(monkeypatch):
    def compile_broken(fn, **kwargs):
        def compiled(*args):
            raise RuntimeError("no C++ compiler")
        return compiled

    monkeypatch.setattr(torch, "compile", compile_broken)
    run = CompiledOrEager(three_rows, what="a test function")
    # bad input first: the eager function fails too, so its error, and still undecided
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="expected 3 rows"):
            run(torch.zeros(5))
    assert run.ok is None
    # a valid call: only the compiled function fails, which is the compiler's failure
    with pytest.warns(RuntimeWarning, match="torch.compile failed for a test function "
                                            r"\(RuntimeError: no C\+\+ compiler\)"):
        out = run(torch.zeros(3))
    assert run.ok is False and torch.equal(out, torch.ones(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # warned once
        assert torch.equal(run(torch.ones(3)), torch.full((3,), 2.0))
        with pytest.raises(ValueError, match="expected 3 rows"):   # eager errors raise
            run(torch.zeros(1))
