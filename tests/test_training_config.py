# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""train()'s settings as one TrainingConfig, with the keywords (and positions) as before."""
import dataclasses
import inspect

import pytest

from astro_mantis.training.loop import TrainingConfig, train

from test_training import QUIET, tiny_net, toy_data  # tests/ is on the path (rootdir conftest)


def test_the_config_holds_every_setting_with_the_old_defaults():
    cfg = TrainingConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.patience) == \
        (30, 64, 2e-3, 0.05, 5)
    assert cfg.progress is None and cfg.resume is False and cfg.workers == 1
    # every setting is documented in the class docstring
    doc = inspect.getdoc(TrainingConfig)
    missing = [f.name for f in dataclasses.fields(TrainingConfig) if f"{f.name} :" not in doc]
    assert not missing, missing


def test_settings_by_config_keyword_and_position():
    base = TrainingConfig(epochs=3, lr=0.1)
    cfg = TrainingConfig.from_arguments(base, (7, 8), {"seed": 4})
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed) == (7, 8, 0.1, 4)
    assert base.epochs == 3  # the base is not changed
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['epoch'\]"):
        TrainingConfig.from_arguments(None, (), {"epoch": 3})
    with pytest.raises(TypeError, match="multiple values for argument 'epochs'"):
        TrainingConfig.from_arguments(None, (3,), {"epochs": 4})
    with pytest.raises(TypeError, match="at most 15 positional"):
        TrainingConfig.from_arguments(None, tuple(range(13)), {})
    with pytest.raises(TypeError, match="config must be a TrainingConfig"):
        TrainingConfig.from_arguments({"epochs": 3})


def test_a_config_trains_like_the_keywords(tmp_path):
    kw = dict(epochs=2, batch_size=16, lr=1e-2, patience=None, seed=3, **QUIET)
    by_keywords = train(tiny_net(seed=5), toy_data(), tmp_path / "kw", **kw)
    by_config = train(tiny_net(seed=5), toy_data(), tmp_path / "cfg",
                      config=TrainingConfig(**kw))
    assert [h["train_loss"] for h in by_config.history] == \
        [h["train_loss"] for h in by_keywords.history]
    assert by_config.config["lr"] == 1e-2 and by_config.epochs_run == 2
    # a keyword overrides the config
    one = train(tiny_net(seed=5), toy_data(), tmp_path / "one",
                config=TrainingConfig(**kw), epochs=1)
    assert one.epochs_run == 1 and one.stopped == "completed"
    with pytest.raises(TypeError, match="unexpected keyword"):
        train(tiny_net(), toy_data(), tmp_path / "bad", epoch=1)
