# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The bundled model's recipe: render a randomised mock sky in runs, train, calibrate, evaluate.

``python -m astro_mantis.training.recipe WORKDIR`` builds ``mantis-mini`` the way the shipped
one was built, at any scale and on any machine, and survives interruptions: every stage
keeps its results in ``WORKDIR`` (outside the repository; never commit it) and is skipped or
continued when run again.

1. **Data** (`~astro_mantis.training.recipe.render_corpus`): a validation set, a test set
   (both with the training randomisation,
   `~astro_mantis.simulate.training_randomisation`),
   a *shifted-simulator* test set (`~astro_mantis.simulate.shifted_randomisation`,
   never used for any choice) and training data in runs of ``chunk`` galaxies, each a
   complete ``make_dataset`` directory with its own seed, until ``n_train`` galaxies or the
   rendering time budget is reached. A half-written run is completed, not redone; the runs a
   budget allowed are recorded (``WORKDIR/<run_name>/corpus.json``), so that a rerun
   trains on the same data.
2. **Training** (`~astro_mantis.training.pipeline.fit_and_export`): on every complete training
   run, early stopping and calibration on the validation set, metrics on the test set;
   checkpoints after every epoch and ``resume=True``, within a time budget. On a GPU the
   training split is held in device memory (``resident=True``).
3. **Evaluation** on the test set and the shifted-simulator set, per redshift bin
   (``astro_mantis.training.evaluation``), written beside the exported weights and card.

Sizing: rendering costs about 40 ms of one core per galaxy and training about 15 ms per
galaxy per epoch on two cores, so ``--n-train 40000 --workers 2`` renders in about 15
minutes and trains ten epochs in about 100 minutes on a two-core machine; on a GPU machine
with 16 cores both take minutes.
"""
import argparse
import json
import math
import os
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic import atomic_open
from ..logger import log

__all__ = ["Recipe", "render_corpus", "run_recipe", "probe_rate", "main"]

# Seed offsets of the data sets (the recipe's seed plus these): never shared between sets.
_SEEDS = {"validation": 1, "test": 2, "shifted": 3, "train": 100}
_SPLIT_OF = {"validation": (0, 1, 0), "test": (0, 0, 1), "shifted": (0, 0, 1),
             "train": (1, 0, 0)}


@dataclass
class Recipe:
    """Settings of `~astro_mantis.training.recipe.run_recipe` (the defaults build ``mantis-mini``).

    Parameters
    ----------
    workdir : str or path-like
        Where data, checkpoints and results go (outside the repository).
    n_train : int
        Training galaxies to render (in runs of ``chunk``).
    chunk : int
        Galaxies per training data run (one ``make_dataset`` directory each).
    n_validation, n_test, n_shifted : int
        Sizes of the validation, test and shifted-simulator sets.
    seed : int
        Base seed of all data sets and of training.
    workers : int
        Rendering and fusing processes (default: every core).
    render_minutes : float, optional
        No new training run starts rendering after this many minutes (the runs finished so
        far are trained on); None renders all of ``n_train``. The runs a budget allowed are
        recorded for ``run_name`` (`~astro_mantis.training.recipe.render_corpus`), so that a
        rerun trains on the same ones.
    model : str
        Registry name of the network.
    model_kwargs : dict
        Its build arguments.
    epochs : int or None
        Length of the run. None (with ``train_minutes``) sizes it to the budget: a few timed
        steps of the network on the device give its rate, and the run gets as many epochs
        (at most ``max_epochs``) as fit in 80 % of the budget, so the learning-rate schedule
        ends before the time does.
    max_epochs : int
        Cap of the automatic ``epochs``.
    batch_size, lr, weight_decay, warmup_epochs, patience, balanced, smoothing_sigma
        Training settings (`~astro_mantis.training.train`).
    train_minutes : float, optional
        Training time budget (`~astro_mantis.training.train`'s ``max_minutes``).
    evaluate : bool
        Evaluate the exported model on the test and shifted-simulator sets per redshift bin
        (``evaluation_test/`` and ``evaluation_shifted/`` in the run directory).
    run_name : str
        Sub-directory of ``workdir`` for the training run and its exports (e.g. to compare
        settings on the same data).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``; on CUDA the training split is held in device
        memory. Training uses bfloat16 autocast on CUDA and on CPUs with native bfloat16
        (`~astro_mantis.training.loop.TrainingConfig`'s ``amp``).
    first_run : int
        Index of the first training data run (``data/train_<index>``, seed
        ``seed + 100 + index``). A continued training (``init_weights``) starts past the
        runs the initial model saw, so that it learns from galaxies it has not seen.
    init_weights : str, optional
        Start from trained weights instead of a random initialisation: ``"bundled"``
        (the packaged model of the name ``model``) or the path of a ``.safetensors``
        file with its card beside it, of the same architecture. The model card records
        the initial weights' SHA-256 (``recipe.init_sha256``).
    train_randomisation : dict, optional
        Settings of the training runs' `~astro_mantis.simulate.Randomisation` that differ
        from `~astro_mantis.simulate.training_randomisation`, e.g.
        ``{"single_fraction": 0.25}``; the validation, test and shifted sets keep theirs,
        so that every stage is measured on the same galaxies. A run directory rendered
        with other settings is refused, not mixed.
    zero_point_jitter : float
        Training-time calibration errors, uniform in ``[-zero_point_jitter,
        zero_point_jitter]`` mag per band and item, on top of the rendered ones
        (`~astro_mantis.training.loop.TrainingConfig`); 0 (the default) is off.
    tta_calibration : bool
        Also fit the PIT map of the 8-transform averages (the card's
        ``calibration_tta``; ``tta_calibration`` of
        `~astro_mantis.training.pipeline.fit_and_export`): eight more passes over the
        validation and test sets.
    name : str
        Name of the exported model.
    """

    workdir: str
    n_train: int = 40000
    chunk: int = 4096
    n_validation: int = 4096
    n_test: int = 4096
    n_shifted: int = 4096
    seed: int = 0
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    render_minutes: float = None
    model: str = "mantis-mini"
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 30
    max_epochs: int = 60
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    patience: int = 6
    balanced: bool = False
    smoothing_sigma: float = 0.0
    train_minutes: float = None
    device: str = "auto"
    name: str = "mantis-mini"
    run_name: str = "run"
    evaluate: bool = True
    first_run: int = 0
    init_weights: str = None
    train_randomisation: dict = field(default_factory=dict)
    zero_point_jitter: float = 0.0
    tta_calibration: bool = False

    def __post_init__(self):
        from .data import check_zero_point_jitter

        self.workdir = Path(self.workdir)
        self.training_randomisation()  # raises ValueError naming a bad setting
        self.zero_point_jitter = check_zero_point_jitter(self.zero_point_jitter)
        if not isinstance(self.tta_calibration, bool):
            raise ValueError(f"tta_calibration must be True or False; got "
                             f"{self.tta_calibration!r}")
        if self.epochs is None and self.train_minutes is None:
            raise ValueError("Recipe.epochs=None (sized to the time budget) needs train_minutes")
        for key in ("n_train", "chunk", "n_validation", "n_test", "n_shifted", "workers",
                    "epochs", "max_epochs", "batch_size"):
            value = getattr(self, key)
            if key == "epochs" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Recipe.{key} must be a positive integer, got {value!r}")
        if isinstance(self.first_run, bool) or not isinstance(self.first_run, int) or \
                self.first_run < 0:
            raise ValueError(f"Recipe.first_run must be a non-negative integer, "
                             f"got {self.first_run!r}")
        if self.init_weights is not None and not isinstance(self.init_weights, (str, Path)):
            raise ValueError(f"Recipe.init_weights must be 'bundled' or a path, "
                             f"got {self.init_weights!r}")
        for key in ("render_minutes", "train_minutes"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"Recipe.{key} must be a positive number of minutes or None, "
                                 f"got {value!r}")

    def training_randomisation(self):
        """The `~astro_mantis.simulate.Randomisation` of the training runs."""
        from ..simulate.randomise import Randomisation

        overrides = self.train_randomisation
        if not isinstance(overrides, dict):
            raise ValueError("Recipe.train_randomisation must be a dict of Randomisation "
                             f"settings, got {overrides!r}")
        try:
            return Randomisation(**overrides)
        except TypeError:
            known = [f for f in Randomisation.__dataclass_fields__]
            unknown = sorted(set(overrides) - set(known))
            raise ValueError(f"Recipe.train_randomisation has unknown setting(s) {unknown}; "
                             f"Randomisation takes {known}") from None

    def data_dir(self, kind, index=0):
        """Directory of one data set: ``validation``, ``test``, ``shifted`` or ``train``."""
        if kind not in _SEEDS:
            raise ValueError(f"unknown data set {kind!r}: expected one of {sorted(_SEEDS)}")
        name = f"train_{index:03d}" if kind == "train" else kind
        return self.workdir / "data" / name

    def settings(self):
        """The settings as a JSON-ready dict (for the model card)."""
        out = asdict(self)
        out["workdir"] = "WORKDIR"  # a machine path says nothing about the model
        if self.init_weights not in (None, "bundled"):
            out["init_weights"] = Path(self.init_weights).name
        return out


def _randomisation(kind, recipe=None):
    from ..simulate.randomise import shifted_randomisation, training_randomisation

    if kind == "shifted":
        return shifted_randomisation()
    if kind == "train" and recipe is not None:
        return recipe.training_randomisation()
    return training_randomisation()


def _render(recipe, kind, n, index=0):
    """Render (or complete) one data set; returns its directory."""
    from ..simulate.dataset import dataset_config, make_dataset

    path = recipe.data_dir(kind, index)
    config = dataset_config(n, randomisation=_randomisation(kind, recipe))
    make_dataset(n, path, seed=recipe.seed + _SEEDS[kind] + index, config=config,
                 split=_SPLIT_OF[kind], workers=recipe.workers, progress=False)
    return path


def _complete(path, n):
    """Whether a data run of ``n`` galaxies is complete (then it is used whatever the budget)."""
    try:
        manifest = json.loads((Path(path) / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(manifest.get("complete")) and manifest.get("n") == n


#: File in the run directory that records the training runs a rendering budget chose.
CORPUS_NAME = "corpus.json"


def _corpus_key(recipe):
    return {"first_run": recipe.first_run, "chunk": recipe.chunk, "n_train": recipe.n_train}


def _chosen_runs(recipe):
    """The training run indices an earlier call chose under the budget for this run, or None.

    From the run directory's ``corpus.json`` when it was written with the same ``first_run``,
    ``chunk`` and ``n_train``; for a run directory that predates the record, from the data
    its checkpoint was trained on. Either must name the first runs from ``first_run`` on.
    """
    from .loop import CHECKPOINT_NAME, load_checkpoint

    run_dir = recipe.workdir / recipe.run_name
    key = _corpus_key(recipe)
    runs, source = None, None
    try:
        record = json.loads((run_dir / CORPUS_NAME).read_text())
    except FileNotFoundError:
        record = None
    if record is not None:
        source = run_dir / CORPUS_NAME
        if {k: record.get(k) for k in key} == key:
            runs = [int(i) for i in record.get("runs", [])]
        else:
            log.warning(f"{source} was written for other settings "
                        f"({ {k: record.get(k) for k in key} }): the training runs are chosen "
                        "again")
            return None
    elif (run_dir / CHECKPOINT_NAME).exists():
        source = run_dir / CHECKPOINT_NAME
        data = load_checkpoint(source)["config"].get("data", {})
        names = [Path(str(r.get("path", ""))).name for r in data.get("runs", [data])]
        runs = sorted(int(m.group(1)) for m in
                      (re.fullmatch(r"train_(\d+)", name) for name in names) if m)
    if not runs:
        return None
    first, total = recipe.first_run, math.ceil(recipe.n_train / recipe.chunk)
    if runs != list(range(first, first + len(runs))) or len(runs) > total:
        log.warning(f"{source} names the training runs {runs}, not the first of the "
                    f"{total} runs from {first}: the training runs are chosen again")
        return None
    return runs


def _record_runs(recipe, runs):
    """Write the run directory's ``corpus.json`` (atomically) unless it already says ``runs``."""
    path = recipe.workdir / recipe.run_name / CORPUS_NAME
    record = dict(_corpus_key(recipe), runs=list(runs))
    try:
        if json.loads(path.read_text()) == record:
            return
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as f:
        json.dump(record, f, indent=1)


def render_corpus(recipe):
    """Render the recipe's data sets, resuming what exists, within the rendering budget.

    With ``render_minutes``, the training runs the budget allowed are recorded in the run
    directory (``WORKDIR/<run_name>/corpus.json``), and a later call for the same run
    (same ``first_run``, ``chunk`` and ``n_train``) renders or completes exactly those,
    whatever the time: a rerun trains on the same data, so an interrupted training resumes.
    Without ``render_minutes`` every run up to ``n_train`` is rendered (and recorded).

    Parameters
    ----------
    recipe : `~astro_mantis.training.recipe.Recipe`

    Returns
    -------
    dict
        ``validation``, ``test``, ``shifted``: directories; ``train``: the list of complete
        training run directories; ``n_train``: the galaxies in them; ``seconds``: time spent.
    """
    t0 = time.perf_counter()
    out = {kind: _render(recipe, kind, getattr(recipe, f"n_{kind}"))
           for kind in ("validation", "test", "shifted")}
    first = recipe.first_run
    indices = range(first, first + math.ceil(recipe.n_train / recipe.chunk))
    chosen = _chosen_runs(recipe) if recipe.render_minutes is not None else None
    if chosen is not None:
        log.info(f"training on the {len(chosen)} runs chosen before for {recipe.run_name!r}")
    runs, used, rendered = [], [], 0
    for index in indices:
        n = min(recipe.chunk, recipe.n_train - rendered)
        if chosen is not None:
            if index not in chosen:
                break
        elif not _complete(recipe.data_dir("train", index), n) and \
                recipe.render_minutes is not None and runs and \
                time.perf_counter() - t0 > 60.0 * recipe.render_minutes:
            log.info(f"rendering budget of {recipe.render_minutes} min reached after "
                     f"{rendered} training galaxies")
            break
        runs.append(_render(recipe, "train", n, index))
        used.append(index)
        rendered += n
    _record_runs(recipe, used)
    out["train"] = runs
    out["n_train"] = rendered
    out["seconds"] = time.perf_counter() - t0
    return out


def _evaluate(model, datasets, out_dir, workers):
    """Per-bin metrics of the exported model on the test and shifted sets (JSON + RST)."""
    from .evaluation import evaluate_model

    return {kind: evaluate_model(model, datasets[kind], split="test",
                                 out=Path(out_dir) / f"evaluation_{kind}", num_workers=workers)
            for kind in ("test", "shifted")}


def _ood_reference(model, data_dir, n_rows, split="validation"):
    """The out-of-distribution reference embedding, written beside the exported weights.

    Built from the validation split: galaxies drawn like the training set that the
    network has not fitted (see `astro_mantis.explain.build_reference`). Skipped (with
    a warning) when the split is too small for the k-NN score.
    """
    from ..explain.ood import DEFAULT_K, build_reference, save_reference

    n = json.loads((Path(data_dir) / "manifest.json").read_text())["n"]
    if n <= DEFAULT_K:
        log.warning(f"no out-of-distribution reference: {n} galaxies in "
                    f"{Path(data_dir).name} are too few for k = {DEFAULT_K}")
        return None
    reference = build_reference(model, data_dir, split=split, max_rows=n_rows)
    reference.meta["data"] = f"WORKDIR/data/{Path(data_dir).name}"  # no machine paths
    return save_reference(reference, model, overwrite=True)  # the run's own, made again


def probe_rate(model, model_kwargs, batch_size, device, steps=10, data=None):
    """Training items per second of a network on a device, from a few timed steps.

    With ``data`` the steps take their batches from it as training does (a data-loader in
    this process, augmented), so the rate includes reading and augmenting the inputs,
    which on a CPU costs about as much as the network's step; without it they run on
    random tensors and give the network's rate alone.

    Parameters
    ----------
    model : str
        Registry name.
    model_kwargs : dict
        Build arguments.
    batch_size : int
    device : `torch.device`
    steps : int
        Timed steps (after three untimed ones).
    data : `~astro_mantis.training.data.FusedDataset`, optional
        The training items (e.g. ``TrainingData.train``).

    Returns
    -------
    float
    """
    import torch

    from ..models.registry import build_model
    from .loop import _amp_dtype, bin_cross_entropy

    net = build_model(model, **(model_kwargs or {})).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    batches = _probe_batches(data, batch_size, device, steps + 3)
    amp_dtype = _amp_dtype(True, device)
    amp, cuda = amp_dtype is not None, device.type == "cuda"
    t0 = None
    for i, (x, dust, z) in enumerate(batches):
        if i == 3:
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp):
            loss = bin_cross_entropy(net(x, dust), z)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if cuda:
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - t0)


def _probe_batches(data, batch_size, device, count):
    """``count`` training batches: from ``data`` (loaded and augmented as in training) or
    one random batch repeated."""
    import torch

    if data is None:
        x = torch.randn(batch_size, 9, 120, 120, device=device)
        dust = torch.zeros(batch_size, 2, device=device)
        z = torch.rand(batch_size, device=device, dtype=torch.float64)
        yield from ((x, dust, z) for _ in range(count))
        return
    from torch.utils.data import DataLoader

    augment = data.augment
    data.augment = True
    try:
        gen = torch.Generator().manual_seed(0)
        loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=False,
                            generator=gen)
        done = 0
        while done < count:
            for x, dust, z in loader:
                yield x.to(device), dust.to(device), z.to(device)
                done += 1
                if done == count:
                    return
    finally:
        data.augment = augment


def _epochs(recipe, training_data, device):
    """The run's length: as given, the interrupted run's, or sized to 80 % of the budget."""
    from .loop import CHECKPOINT_NAME, load_checkpoint

    if recipe.epochs is not None:
        return recipe.epochs
    checkpoint = recipe.workdir / recipe.run_name / CHECKPOINT_NAME
    if checkpoint.exists():  # a resumed run keeps its schedule
        return int(load_checkpoint(checkpoint)["config"]["epochs"])
    n_train = len(training_data.train)
    # on a GPU the split is held in device memory, so the network's rate is the rate
    data = None if device.type == "cuda" else training_data.train
    rate = probe_rate(recipe.model, recipe.model_kwargs, recipe.batch_size, device,
                      data=data)
    per_epoch = (n_train + recipe.n_validation / 3.0) / rate
    epochs = int(0.8 * 60.0 * recipe.train_minutes / per_epoch)
    log.info(f"{rate:.0f} training items/s on {device}: {epochs} epochs fit the budget")
    return max(1, min(recipe.max_epochs, epochs))


def _initial_network(recipe):
    """The network of ``recipe.model`` with ``recipe.init_weights`` loaded, and their SHA-256."""
    from ..models import build_model, load_model

    weights = None if recipe.init_weights == "bundled" else recipe.init_weights
    trained = load_model(recipe.model, weights=weights)
    net = build_model(recipe.model, **(recipe.model_kwargs or {}))
    try:
        net.load_state_dict(trained.state_dict())
    except RuntimeError as exc:
        from ..models.mini import MantisMini, load_shallower

        grown, why = None, str(exc)
        if isinstance(net, MantisMini) and isinstance(trained, MantisMini):
            try:  # a deeper mantis-mini starts as the same function (new blocks = identity)
                grown = load_shallower(net, trained.state_dict())
            except ValueError as deeper:
                why = f"{why}; nor can they start a deeper network: {deeper}"
        if grown is None:
            raise ValueError(f"the initial weights ({recipe.init_weights}) do not fit "
                             f"{recipe.model} with model_kwargs={recipe.model_kwargs}: {why}") \
                from None
        log.info(f"the initial weights fill a deeper network: {len(grown)} new tensors start "
                 "as identity blocks")
    log.info(f"starting from the weights {trained.meta.get('sha256')} ({recipe.init_weights})")
    return net, trained.meta.get("sha256")


def _scrub_paths(card_path, workdir):
    """Replace the machine's work directory by ``WORKDIR`` in a model card (data provenance).

    Only string values change, and only where the work directory is a whole path
    component (as given or resolved): a work directory named ``.`` or ``work`` leaves
    numbers and keys such as ``"workers"`` alone.
    """
    path = Path(card_path)
    names = {str(Path(workdir).resolve()), str(workdir)} - {"", "."}
    pattern = re.compile("|".join(f"(?<![^\\s=:'\"(]){re.escape(n)}(?=/|$|[\\s'\",)])"
                                  for n in sorted(names, key=len, reverse=True)))

    def scrub(value):
        if isinstance(value, str):
            return pattern.sub("WORKDIR", value)
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    card = json.loads(path.read_text())
    with atomic_open(path, "w") as f:
        json.dump(scrub(card), f, indent=2)


def run_recipe(recipe, command=None):
    """Render, train, calibrate, export and evaluate (each stage resumed where it stopped).

    Parameters
    ----------
    recipe : `~astro_mantis.training.recipe.Recipe`
    command : str, optional
        The command line, recorded in the model card.

    Returns
    -------
    dict
        ``data`` (`render_corpus`'s result), ``fit`` (the
        `~astro_mantis.training.pipeline.FitResult`), ``evaluation`` and ``out_dir``.
    """
    import torch

    from .loop import resolve_device
    from .pipeline import fit_and_export

    recipe.workdir.mkdir(parents=True, exist_ok=True)
    data = render_corpus(recipe)
    log.info(f"data ready: {data['n_train']} training galaxies in {len(data['train'])} runs "
             f"({data['seconds']:.0f} s)")
    device = resolve_device(recipe.device)
    out_dir = recipe.workdir / recipe.run_name
    from .loop import TrainingData, model_exposure

    training_data = TrainingData.from_directory(
        data["train"] + [data["validation"], data["test"]],
        cache_dir=recipe.workdir / "fused_cache", progress=False, workers=recipe.workers,
        panstarrs_exposure=model_exposure(recipe.model, recipe.model_kwargs))
    epochs = _epochs(recipe, training_data, device)
    card_extra = {"recipe": recipe.settings(),
                  "shifted_set": {"n": recipe.n_shifted,
                                  "randomisation": repr(_randomisation("shifted"))}}
    net = recipe.model
    if recipe.init_weights is not None:
        net, card_extra["recipe"]["init_sha256"] = _initial_network(recipe)
    fit = fit_and_export(
        net, training_data, out_dir,
        name=recipe.name, command=command, card_extra=card_extra,
        cache_dir=recipe.workdir / "fused_cache", model_kwargs=recipe.model_kwargs or None,
        epochs=epochs, batch_size=recipe.batch_size, lr=recipe.lr,
        weight_decay=recipe.weight_decay, warmup_epochs=recipe.warmup_epochs,
        patience=recipe.patience, balanced=recipe.balanced,
        smoothing_sigma=recipe.smoothing_sigma, max_minutes=recipe.train_minutes,
        zero_point_jitter=recipe.zero_point_jitter, seed=recipe.seed, device=device,
        tta_calibration=recipe.tta_calibration, resume=True, progress=False,
        resident=device.type == "cuda", deterministic=device.type != "cuda",
        num_workers=min(recipe.workers, 8) if device.type == "cuda" else 0,
        workers=recipe.workers)
    if fit.export is not None:
        _scrub_paths(fit.export.card_path, recipe.workdir)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    from ..models import load_model

    model = load_model(recipe.model,
                       weights=out_dir / f"{recipe.name}.safetensors", device=device)
    evaluation = _evaluate(model, data, out_dir, min(recipe.workers, 8)) \
        if recipe.evaluate else {}
    _ood_reference(model, data["validation"], min(recipe.chunk, 8192))
    summary = {"data": {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()
                        if k != "train"}, "train_runs": len(data["train"]),
               "stopped": fit.training.stopped, "epochs_run": fit.training.epochs_run,
               "metrics": fit.metrics}
    with atomic_open(out_dir / "recipe_summary.json", "w") as f:
        f.write(json.dumps(summary, indent=1, default=str))
    return {"data": data, "fit": fit, "evaluation": evaluation, "out_dir": out_dir}


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m astro_mantis.training.recipe",
        description="Build the bundled model: render a randomised mock sky in resumable runs, "
                    "train, calibrate, export and evaluate (see the training guide).")
    p.add_argument("workdir", help="data, checkpoints and results (outside the repository)")
    defaults = Recipe(workdir=".")
    for name in ("n_train", "chunk", "n_validation", "n_test", "n_shifted", "seed", "workers",
                 "epochs", "max_epochs", "batch_size", "patience", "first_run"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("lr", "weight_decay", "warmup_epochs", "smoothing_sigma", "render_minutes",
                 "train_minutes", "zero_point_jitter"):
        p.add_argument("--" + name.replace("_", "-"), type=float,
                       default=getattr(defaults, name))
    p.add_argument("--balanced", action="store_true", help="redshift-balanced sampling")
    p.add_argument("--tta-calibration", action="store_true",
                   help="also fit the PIT map of the 8-transform averages (predict(tta=True))")
    p.add_argument("--auto-epochs", action="store_true",
                   help="size the number of epochs to --train-minutes (ignores --epochs)")
    p.add_argument("--run-name", default=defaults.run_name)
    p.add_argument("--no-evaluate", dest="evaluate", action="store_false",
                   help="skip the per-bin evaluation (run it later with "
                        "astro_mantis.training.evaluation)")
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default=defaults.model)
    p.add_argument("--init-weights", default=None,
                   help="continue from trained weights: 'bundled' or a .safetensors path")
    p.add_argument("--name", default=defaults.name)
    p.add_argument("--train-randomisation", type=json.loads, default={},
                   help="Randomisation settings of the training runs as JSON, "
                        "e.g. '{\"single_fraction\": 0.25}'")
    p.add_argument("--model-kwargs", type=json.loads, default={},
                   help="build arguments of the model as JSON, "
                        "e.g. '{\"widths\": [48, 96, 192, 384]}'")
    return p


def _recorded_command(argv, workdir):
    """The command line as the model card records it: shell-quoted, the work directory as WORKDIR.

    Quoting keeps a JSON argument such as ``--train-randomisation '{"single_fraction": 0.3}'``
    one argument when the recorded command is pasted into a shell.
    """
    args = ["WORKDIR"] + [a for a in argv if a != str(workdir)]
    return "python -m astro_mantis.training.recipe " + shlex.join(args)


def main(argv=None):
    """Command line of the recipe (``python -m astro_mantis.training.recipe --help``).

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 for invalid settings.
    """
    args = vars(_parser().parse_args(argv))
    if args.pop("auto_epochs"):
        args["epochs"] = None
    try:
        recipe = Recipe(**args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = _recorded_command(argv if argv is not None else sys.argv[1:], args["workdir"])
    result = run_recipe(recipe, command=command)
    print(json.dumps({"out_dir": str(result["out_dir"]), "stopped": result["fit"].training.stopped,
                      "test": {k: result["fit"].metrics.get("test", {}).get(k)
                               for k in ("nmad", "outlier_0.05", "bias_median", "pit_ks")}},
                     indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
