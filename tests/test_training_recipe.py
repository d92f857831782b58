# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The bundled model's recipe at toy scale: data runs, resume, budgets, card, evaluation."""
import json
import shlex

import pytest
import torch

from astro_mantis.simulate.randomise import Randomisation
from astro_mantis.training.recipe import (Recipe, _recorded_command, main, probe_rate,
                                         render_corpus, run_recipe)

pytest.importorskip("galsim")
torch.set_num_threads(1)

TINY = {"widths": [4, 8], "depths": [1, 1], "hidden": 16, "drop": 0.0}


def tiny_recipe(workdir, **kw):
    settings = dict(workdir=workdir, n_train=18, chunk=12, n_validation=12, n_test=6,
                    n_shifted=6, workers=1, model_kwargs=TINY, epochs=2, batch_size=4,
                    device="cpu", patience=None)
    settings.update(kw)
    return Recipe(**settings)


def test_recipe_validates_its_settings(tmp_path):
    with pytest.raises(ValueError, match="n_train"):
        Recipe(workdir=tmp_path, n_train=0)
    with pytest.raises(ValueError, match="train_minutes"):
        Recipe(workdir=tmp_path, epochs=None)
    with pytest.raises(ValueError, match="render_minutes"):
        Recipe(workdir=tmp_path, render_minutes=-1)
    with pytest.raises(ValueError, match="first_run"):
        Recipe(workdir=tmp_path, first_run=-1)
    with pytest.raises(ValueError, match="init_weights"):
        Recipe(workdir=tmp_path, init_weights=3)
    with pytest.raises(ValueError, match=r"train_randomisation .*unknown setting.*'nope'"):
        Recipe(workdir=tmp_path, train_randomisation={"nope": 1})
    with pytest.raises(ValueError, match="Randomisation.single_fraction"):
        Recipe(workdir=tmp_path, train_randomisation={"single_fraction": 2})
    with pytest.raises(ValueError, match="Randomisation.colour_departures"):
        Recipe(workdir=tmp_path, train_randomisation={"colour_departures": 4})
    with pytest.raises(ValueError, match="train_randomisation must be a dict"):
        Recipe(workdir=tmp_path, train_randomisation=[0.3])
    with pytest.raises(ValueError, match="unknown data set"):
        Recipe(workdir=tmp_path).data_dir("nope")
    with pytest.raises(ValueError, match="zero_point_jitter"):
        Recipe(workdir=tmp_path, zero_point_jitter=-0.02)
    with pytest.raises(ValueError, match="tta_calibration must be True or False"):
        Recipe(workdir=tmp_path, tta_calibration="yes")
    assert main([str(tmp_path), "--n-train", "0"]) == 2
    assert main([str(tmp_path), "--zero-point-jitter", "0.7"]) == 2


def test_recorded_command_pastes_back_into_a_shell(tmp_path):
    argv = [str(tmp_path), "--n-train", "61440",
            "--train-randomisation", '{"single_fraction": 0.3, "colour_departures": 1.0}']
    command = _recorded_command(argv, tmp_path)
    assert str(tmp_path) not in command
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "astro_mantis.training.recipe", "WORKDIR"]
    assert words[4:] == argv[1:]
    assert Recipe(workdir=tmp_path, train_randomisation=json.loads(words[-1])) \
        .training_randomisation() == Randomisation(single_fraction=0.3, colour_departures=1.0)


def test_render_corpus_makes_complete_runs_and_respects_the_budget(tmp_path):
    recipe = tiny_recipe(tmp_path, render_minutes=1e-6)
    data = render_corpus(recipe)
    # the budget stops new training runs after the first one; the held-out sets are made
    assert data["n_train"] == 12 and len(data["train"]) == 1
    for kind in ("validation", "test", "shifted"):
        manifest = json.loads((data[kind] / "manifest.json").read_text())
        assert manifest["complete"] and manifest["n"] == (12 if kind == "validation" else 6)
        assert ("shifted" in kind) == ("profile='single'" in manifest["config"])
    assert (data["test"] / "test").is_dir() and not list((data["test"] / "train").glob("*.npz"))
    # a complete run always counts, and without a budget the rest is rendered
    again = render_corpus(tiny_recipe(tmp_path, render_minutes=1e-6))
    assert again["n_train"] == 12
    full = render_corpus(tiny_recipe(tmp_path))
    assert full["n_train"] == 18 and len(full["train"]) == 2


def test_a_rerun_under_the_budget_renders_no_more_training_runs(tmp_path, monkeypatch):
    """The budget's choice of training runs is kept: a rerun (whose clock starts afresh)
    trains on the same data, so that an interrupted training can resume."""
    from types import SimpleNamespace

    from astro_mantis.training import recipe as recipe_module

    clock = [0.0]
    monkeypatch.setattr(recipe_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    render = recipe_module._render

    def slow_render(recipe, kind, n, index=0):  # a training run takes 90 s to render
        if kind == "train" and not recipe_module._complete(recipe.data_dir(kind, index), n):
            clock[0] += 90.0
        return render(recipe, kind, n, index)

    monkeypatch.setattr(recipe_module, "_render", slow_render)
    first = render_corpus(tiny_recipe(tmp_path, render_minutes=1.0))
    assert first["n_train"] == 12 and [p.name for p in first["train"]] == ["train_000"]
    record = json.loads((tmp_path / "run" / "corpus.json").read_text())
    assert record == {"first_run": 0, "chunk": 12, "n_train": 18, "runs": [0]}
    again = render_corpus(tiny_recipe(tmp_path, render_minutes=1.0))
    assert again["n_train"] == 12 and again["train"] == first["train"]
    assert not (tmp_path / "data" / "train_001").exists()
    # another run name chooses afresh (and may take more); no budget renders everything
    other = render_corpus(tiny_recipe(tmp_path, render_minutes=1.0, run_name="other"))
    assert other["n_train"] == 18
    assert render_corpus(tiny_recipe(tmp_path))["n_train"] == 18
    # a run directory from before the record: its checkpoint's data decide
    (tmp_path / "old").mkdir()
    torch.save({"config": {"data": {"runs": [
        {"path": str(tmp_path / "data" / "train_000")},
        {"path": str(tmp_path / "data" / "validation")}]}}}, tmp_path / "old" / "checkpoint.pt")
    old = render_corpus(tiny_recipe(tmp_path, render_minutes=1.0, run_name="old"))
    assert [p.name for p in old["train"]] == ["train_000"]


def test_training_randomisation_reaches_the_training_runs_only(tmp_path):
    recipe = tiny_recipe(tmp_path, n_train=12, train_randomisation={"single_fraction": 1.0})
    data = render_corpus(recipe)
    train = json.loads((data["train"][0] / "manifest.json").read_text())
    assert "single_fraction=1.0" in train["config"]
    for kind in ("validation", "test", "shifted"):
        manifest = json.loads((data[kind] / "manifest.json").read_text())
        assert "single_fraction" not in manifest["config"]
    # a run rendered with other settings is refused, not mixed
    with pytest.raises(ValueError, match="other settings"):
        render_corpus(tiny_recipe(tmp_path, n_train=12))
    assert recipe.settings()["train_randomisation"] == {"single_fraction": 1.0}


def test_run_recipe_trains_exports_evaluates_and_resumes(tmp_path):
    recipe = tiny_recipe(tmp_path)
    result = run_recipe(recipe, command="python -m astro_mantis.training.recipe WORKDIR")
    out = result["out_dir"]
    card_text = (out / "mantis-mini.json").read_text()
    assert str(tmp_path) not in card_text  # no machine paths in the card
    card = json.loads(card_text)
    assert card["recipe"]["n_train"] == 18 and len(card["data"]["runs"]) == 4
    # the training redshifts, for the network's implicit prior
    from astro_mantis.models import training_prior

    assert card["training_redshifts"]["n"] == 18
    assert training_prior(card).shape == (400,)
    assert card["training"]["epochs_run"] == 2
    for kind in ("test", "shifted"):
        assert (out / f"evaluation_{kind}" / "evaluation.json").is_file()
    from astro_mantis.explain.ood import ReferenceEmbedding

    reference = ReferenceEmbedding.load(out / "mantis-mini.ood.npz")
    # from the validation set (galaxies the network has not fitted), with PDF widths
    assert reference.meta["data"] == "WORKDIR/data/validation"
    assert reference.meta["split"] == "validation" and len(reference.points) == 12
    assert reference.widths is not None and len(reference.combined) == 12
    # run again: nothing is rendered or trained twice, the checkpoint's schedule is kept
    again = run_recipe(tiny_recipe(tmp_path, epochs=None, train_minutes=1.0))
    assert again["fit"].training.epochs_run == 2

    # continued training: from the exported weights, on a data run the first never saw
    weights = out / "mantis-mini.safetensors"
    cont = run_recipe(tiny_recipe(tmp_path, run_name="cont", first_run=2, n_train=12,
                                  epochs=1, lr=1e-12, warmup_epochs=0.0, evaluate=False,
                                  init_weights=str(weights), zero_point_jitter=0.02,
                                  tta_calibration=True))
    assert cont["fit"].training.config["zero_point_jitter"] == 0.02
    manifest = json.loads((tmp_path / "data" / "train_002" / "manifest.json").read_text())
    assert manifest["seed"] == 102 and manifest["n"] == 12
    card_text = (cont["out_dir"] / "mantis-mini.json").read_text()
    assert str(tmp_path) not in card_text
    card2 = json.loads(card_text)
    assert card2["recipe"]["init_sha256"] == card["sha256"]
    assert card2["recipe"]["init_weights"] == "mantis-mini.safetensors"
    assert card2["recipe"]["zero_point_jitter"] == 0.02
    # --tta-calibration: the TTA averages' own PIT map, and their test metrics
    assert card2["recipe"]["tta_calibration"] is True and "calibration_tta" not in card
    assert card2["calibration_tta"]["temperature"] == card2["temperature"]
    assert len(card2["calibration_tta"]["pit_map"]["knots"]) == 25
    assert card2["metrics"]["test_tta"]["pit_recalibrated"]
    assert card2["metrics"]["test_tta"]["n"] == card2["metrics"]["test"]["n"]
    runs = [r["path"] for r in card2["data"]["runs"]]
    assert "WORKDIR/data/train_002" in runs and "WORKDIR/data/train_000" not in runs
    from astro_mantis.models import load_model

    before = load_model("mantis-mini", weights=weights).state_dict()
    after = cont["fit"].training.model.state_dict()
    # a vanishing learning rate leaves the initial weights (not a fresh initialisation)
    for key, value in before.items():
        if key.endswith("weight") and value.ndim > 1:
            assert torch.allclose(after[key].float(), value.float(), atol=1e-6), key
    with pytest.raises(ValueError, match="(?s)do not fit.*nor can they start a deeper network"):
        run_recipe(tiny_recipe(tmp_path, run_name="bad", first_run=2, n_train=12,
                               init_weights=str(weights),
                               model_kwargs=dict(TINY, hidden=8)))
    # a deeper network of the same widths starts from them as the same function
    from astro_mantis.training.recipe import _initial_network

    deep = dict(TINY, depths=[d + 1 for d in TINY["depths"]])
    net, sha = _initial_network(tiny_recipe(tmp_path, run_name="deep", init_weights=str(weights),
                                            model_kwargs=deep))
    assert sha == card["sha256"] and len(net.Base.stages[-1]) == deep["depths"][-1]
    shallow = load_model("mantis-mini", weights=weights).eval()
    x, dust = torch.rand(2, 9, 120, 120), torch.rand(2, 2) * 0.1
    with torch.no_grad():
        assert torch.allclose(net.eval()(x, dust), shallow(x, dust), atol=1e-5)


def test_probe_rate_is_positive():
    assert probe_rate("mantis-mini", TINY, 2, torch.device("cpu"), steps=1) > 0


def test_probe_rate_reads_the_training_items():
    """With data the probe's batches are the dataset's items, augmented as in training."""
    import numpy as np

    from astro_mantis.training import ArrayDataset
    from astro_mantis.training.recipe import _probe_batches

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 9, 120, 120)).astype(np.float32)
    data = ArrayDataset(x, np.zeros((5, 2)), np.linspace(0.1, 0.5, 5))
    batches = list(_probe_batches(data, 2, torch.device("cpu"), 4))
    # 5 items in batches of 2 (the last short), and again from the start
    assert [len(b[0]) for b in batches] == [2, 2, 1, 2]
    seen = np.sort(np.concatenate([b[2].numpy() for b in batches[:3]]))
    assert np.allclose(seen, data.z)
    first = batches[0]
    i = int(np.flatnonzero(np.isclose(data.z, float(first[2][0])))[0])
    # augmented: the same pixels, rotated, flipped or shifted
    assert np.allclose(np.sort(first[0][0].numpy().ravel()), np.sort(x[i].ravel()))
    assert data.augment is False  # restored
    assert probe_rate("mantis-mini", TINY, 2, torch.device("cpu"), steps=1, data=data) > 0
