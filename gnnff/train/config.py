"""Training configuration: immutable, validated, unknown keys are errors.

A YAML file maps onto :class:`TrainConfig`; relative paths are resolved against the
file's folder. The resolved config is written next to the outputs it produces.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gnnff.errors import InputError, ModelError
from gnnff.nn.devices import parse_device
from gnnff.nn.network import NetworkConfig

__all__ = ["DataSource", "LossConfig", "NonbondedStage", "OptimConfig", "SplitConfig", "TrainConfig", "load_config"]


@dataclass(frozen=True)
class DataSource:
    """One data file: ``path``, ``format`` (spice-hdf5 | qcarchive-sdf | None: by suffix),
    ``name`` (for reports), ``limit`` (first N molecules), ``max_above_minimum`` (kcal/mol:
    drop conformations this far above their molecule's lowest, e.g. hot MD frames; None
    keeps all), ``max_spread`` (kcal/mol: molecules whose remaining conformer energies spread
    more are dropped as broken; 62.5 suits QM minima and mildly perturbed sets, hot MD
    frames of drug-size molecules need more), ``train_only`` (its molecules only train and
    take no part in the split, which stays that of the other sources; molecules of the
    validation and test parts are dropped from it)."""

    path: str
    format: str | None = None
    name: str | None = None
    limit: int | None = None
    max_above_minimum: float | None = None
    max_spread: float = 62.5
    train_only: bool = False


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of unique molecules for validation and test; the rest trains."""

    validation: float = 0.1
    test: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms (energies kcal/mol, forces kcal/mol/A, charges e)."""

    energy: float = 1.0
    forces: float = 0.1
    charges: float = 10.0
    torsion_l2: float = 1e-3
    #: L1 on torsion force constants (kJ/mol): with ``network.torsion_threshold`` it makes
    #: unneeded periodicities exactly zero
    torsion_l1: float = 0.0
    lj_prior: float = 1.0
    #: weight of the relaxed conformer-energy term (kcal/mol): conformations that are QM minima
    #: (every force known and zero) are relaxed on the model's own energy and their energies
    #: there, relative to the molecule's other minima, compared with the QM ones: what the
    #: industry protocol's ddE measures. 0 leaves it out.
    relaxed_energy: float = 0.0
    #: L-BFGS iterations of that relaxation (300 reach within 0.02 kcal/mol of OpenMM's
    #: minimiser for the median conformer of gnnff-v1; recipes/v2/README.md)
    relax_steps: int = 300
    #: molecules per batch whose minima are relaxed (the first ones with at least two;
    #: training batches are shuffled every epoch), 0: all. With ``--nproc N`` they are shared
    #: among the processes (at least one each). The relaxation costs about a second per
    #: molecule on a CPU core.
    relaxed_molecules: int = 4


@dataclass(frozen=True)
class NonbondedStage:
    """Stage 1 of a model with a separate nonbonded network (``network.nonbonded_width`` > 0):
    fit charges and Lennard-Jones to ``labels`` (a :mod:`gnnff.train.labels` JSON Lines file)
    before the valence terms; molecules of the main data's validation and test parts are
    left out. ``charges`` and ``lennard_jones`` weight the two losses; ``dipole`` weights a
    dipole term (the predicted minus the label charges' dipole on one fixed MMFF94 conformer
    per molecule, in units of 0.1 D: it penalises charge errors that are correlated in space,
    which the per-atom term barely sees; 0 leaves it out); ``validation`` is the fraction of
    label molecules held out for early stopping; ``limit`` the first N used."""

    labels: str
    epochs: int = 60
    batch_molecules: int = 64
    learning_rate: float = 1e-3
    patience: int = 8
    validation: float = 0.05
    charges: float = 1.0
    lennard_jones: float = 1.0
    dipole: float = 0.0
    limit: int | None = None


#: Learning-rate schedules of :class:`OptimConfig`.
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation: epochs, molecules per batch, Adam learning rate, early stopping."""

    epochs: int = 50
    batch_molecules: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10
    seed: int = 0
    threads: int = 2
    #: learning rate per epoch: "constant", or "cosine" (from learning_rate down to
    #: final_learning_rate at the last epoch)
    schedule: str = "constant"
    final_learning_rate: float = 1e-5
    #: where the network trains: "cpu", "cuda" (data-parallel rank k on GPU k), "cuda:N",
    #: or "auto" (a GPU when torch sees one); data preparation stays on the CPU
    device: str = "cpu"

    def learning_rate_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (1-based)."""
        if self.schedule == "constant" or self.epochs <= 1:
            return self.learning_rate
        progress = (min(epoch, self.epochs) - 1) / (self.epochs - 1)
        return self.final_learning_rate + (self.learning_rate - self.final_learning_rate) * 0.5 * (
            1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``gnnff train`` needs."""

    data: tuple[DataSource, ...]
    output: str
    #: charge method of the reference charges (None: no references, e.g. with a frozen
    #: nonbonded network, whose charges the energy loss cannot change)
    reference_charges: str | None = "am1bcc-fast"
    reference_cache: str | None = None
    split: SplitConfig = SplitConfig()
    network: NetworkConfig = NetworkConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    nonbonded: NonbondedStage | None = None
    #: start from this checkpoint's weights (same architecture; options such as
    #: torsion_threshold may differ): fine-tuning. Its nonbonded network, if separate,
    #: is kept and frozen, and no nonbonded stage runs.
    init: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_NESTED = {"split": SplitConfig, "network": NetworkConfig, "loss": LossConfig, "optim": OptimConfig,
           "nonbonded": NonbondedStage}


def _build(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise InputError(f"config: '{where}' must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"config: unknown key(s) {unknown} in '{where}'; known: {sorted(known)}")
    out = {}
    for name, value in values.items():
        hint = hints[name]
        path = f"{where}.{name}" if where else name
        if name in _NESTED:
            out[name] = _build(_NESTED[name], value, path)
        elif name == "data":
            if not isinstance(value, list) or not value:
                raise InputError("config: 'data' must be a non-empty list of {path: ...} entries")
            out[name] = tuple(_build(DataSource, v, f"data[{i}]") for i, v in enumerate(value))
        else:
            out[name] = _check_scalar(value, hint, path)
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               and f.name not in out]
    if missing:
        raise InputError(f"config: missing required key(s) {missing} in '{where or 'top level'}'")
    if cls is NetworkConfig:  # its own checks (feature set, periodicities, opt-in terms)
        try:
            return NetworkConfig.from_dict(out)
        except ModelError as err:
            raise InputError(f"config: '{where}': {err}") from None
    return cls(**out)


def _check_scalar(value: Any, hint: Any, path: str) -> Any:
    if typing.get_origin(hint) is tuple:  # tuple[str, ...]: a list of names
        item = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, item) for v in value):
            raise InputError(f"config: '{path}' must be a list of {item.__name__}, got {value!r}")
        return tuple(value)
    allowed = typing.get_args(hint) or (hint,)
    if value is None and type(None) in allowed:
        return None
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if int in allowed and isinstance(value, float) and value.is_integer():
        return int(value)
    if bool in allowed and isinstance(value, bool):
        return value
    if not any(isinstance(value, t) for t in allowed if isinstance(t, type)) or isinstance(value, bool):
        names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
        raise InputError(f"config: '{path}' must be {names}, got {value!r}")
    return value


def _resolve(path: str | None, base: Path) -> str | None:
    if path is None:
        return None
    p = Path(os.path.expanduser(path))
    return str(p if p.is_absolute() else (base / p).resolve())


def load_config(source: str | os.PathLike | dict) -> TrainConfig:
    """Load and validate a training config from a YAML file or a dict."""
    if isinstance(source, dict):
        values, base = source, Path.cwd()
    else:
        import yaml

        path = Path(source)
        if not path.is_file():
            raise InputError(f"{path}: no such config file")
        try:
            values = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise InputError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        base = path.parent.resolve()
    config = _build(TrainConfig, values, "")
    data = tuple(dataclasses.replace(d, path=_resolve(d.path, base)) for d in config.data)
    nonbonded = config.nonbonded
    if nonbonded is not None:
        nonbonded = dataclasses.replace(nonbonded, labels=_resolve(nonbonded.labels, base))
    if config.loss.relaxed_energy < 0 or config.loss.relax_steps < 1 or config.loss.relaxed_molecules < 0:
        raise InputError(f"config: loss.relaxed_energy and loss.relaxed_molecules must be >= 0 and "
                         f"loss.relax_steps >= 1, got {config.loss.relaxed_energy}, {config.loss.relaxed_molecules} "
                         f"and {config.loss.relax_steps}")
    if config.optim.schedule not in SCHEDULES:
        raise InputError(f"config: optim.schedule '{config.optim.schedule}' is not one of {', '.join(SCHEDULES)}")
    parse_device(config.optim.device, field="config: optim.device")
    if config.network.separate_nonbonded and nonbonded is None:
        raise InputError("config: network.nonbonded_width > 0 needs a 'nonbonded' section with the "
                         "label file (nonbonded: {labels: labels.jsonl})")
    if config.init is not None:
        config = dataclasses.replace(config, init=_resolve(config.init, base))
    return dataclasses.replace(config, data=data, output=_resolve(config.output, base),
                               reference_cache=_resolve(config.reference_cache, base), nonbonded=nonbonded)
