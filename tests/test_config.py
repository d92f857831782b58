# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The configuration file: bare keys are read, unknown keys and sections are reported."""
import os
import subprocess
import sys


def _run(tmp_path, text):
    cfgdir = tmp_path / "astropy"
    cfgdir.mkdir()
    (cfgdir / "astro_mantis.cfg").write_text(text)
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path))
    code = ("import warnings; warnings.simplefilter('always')\n"
            "from astro_mantis import conf\n"
            "print('VALUES', conf.timeout, conf.retries, conf.panstarrs_url)")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


def test_bare_keys_are_read(tmp_path):
    res = _run(tmp_path, "timeout = 12.5\nretries = 1\npanstarrs_url = http://127.0.0.1:9/x\n")
    assert "VALUES 12.5 1 http://127.0.0.1:9/x" in res.stdout, res.stderr
    assert "ConfigWarning" not in res.stdout + res.stderr


def test_unknown_keys_and_sections_warn(tmp_path):
    res = _run(tmp_path, "timeot = 3\n[config]\nretries = 1\n")
    out = res.stdout + res.stderr
    assert "VALUES 60.0 3" in out  # neither the typo nor the section changed anything
    assert "unknown key 'timeot'" in out and "timeout" in out
    assert "section [config] is not read" in out


def test_the_spectro_section_is_read_and_not_reported(tmp_path):
    cfgdir = tmp_path / "astropy"
    cfgdir.mkdir()
    (cfgdir / "astro_mantis.cfg").write_text("timeout = 7\n[spectro]\ndata_release = 16\n")
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path))
    code = ("import warnings; warnings.simplefilter('always')\n"
            "from astro_mantis import conf\n"
            "from astro_mantis.spectro import conf as sconf\n"
            "print('VALUES', conf.timeout, sconf.data_release)")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert "VALUES 7.0 16" in res.stdout, res.stderr
    assert "ConfigWarning" not in res.stdout + res.stderr
