"""Training: batches of molecules x conformations, the loss, the loop, metrics, resume.

Batches hold each molecule once for the network (parameters predicted once) and each
conformation once for the energy (a replica of its molecule's topology whose
parameter rows are gathered from the molecule's): no padding, no repeated network work.

Loss (energies in kcal/mol, forces in kcal/mol/A):
``w_E MSE(E - <E>_mol) + w_F MSE(F) + w_q MSE(q - q_ref) + w_t mean(k_torsion^2)
+ w_LJ [mean((sigma/sigma_ref - 1)^2) + mean((ln eps - ln eps_ref)^2)]
+ w_R MSE(E(x*) - <E(x*)>_mol)``, the last over QM minima relaxed to ``x*`` on the model's
own energy (:func:`relax_minima`).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gnnff.chem.topology import Topology
from gnnff.errors import InputError, first_line
from gnnff.files import atomic_write_text
from gnnff.mm.energy import compute_energy, energy_and_forces, total_energy
from gnnff.nn.checkpoint import load_checkpoint, save_checkpoint
from gnnff.nn.devices import resolve_device, wants_gpu
from gnnff.nn.network import Graph, build_network
from gnnff.schema import IMPROPERS, NONBONDED, PROPERS, TERMS, ForceFieldParameters
from gnnff.train.config import TrainConfig
from gnnff.train.data import (
    MoleculeData,
    ReferenceCache,
    drop_broken,
    drop_distorted,
    drop_high_energy,
    read_dataset,
    split_by_molecule,
)
from gnnff.train.nonbonded_training import label_elements, lj_residuals, train_nonbonded
from gnnff.train.parallel import SINGLE, World, launch
from gnnff.units import KCAL_TO_KJ, KJ_TO_KCAL, NM_TO_ANGSTROM

__all__ = [
    "Batch",
    "Metrics",
    "make_batch",
    "minima",
    "predict",
    "prepare_data",
    "relax_minima",
    "relaxed_errors",
    "train",
    "train_parallel",
    "trains_on_gpu",
]

FORCE_TO_KCAL_A = KJ_TO_KCAL / NM_TO_ANGSTROM
METRIC_NAMES = ("loss", "energy_rmse", "force_rmse", "charge_rmse", "relaxed_rmse")


@dataclass(frozen=True, eq=False)
class Batch:
    """Molecules (for the network) and their conformations (for the energy)."""

    graph: Graph
    replicas: Topology
    pairs: np.ndarray
    rows: dict[str, torch.Tensor]
    positions: torch.Tensor  # (1, n_replica_atoms, 3) nm
    energies: torch.Tensor  # (n_conf,) kJ/mol
    forces: torch.Tensor  # (n_replica_atoms, 3) kJ/mol/nm, NaN where unknown
    conformation_molecule: torch.Tensor  # (n_conf,)
    references: dict[str, torch.Tensor]  # nonbonded field -> (n_atoms,)
    #: the batch of the first molecules alone, whose QM minima the relaxed-energy term relaxes
    #: (None: that term relaxes those of the whole batch)
    relax: Batch | None = None

    def to(self, device: torch.device) -> Batch:
        """The batch with its tensors on ``device`` (the replicas' topology and the
        nonbonded pairs stay numpy: the energy puts its indices where the positions are)."""
        if self.positions.device == device:
            return self
        return replace(
            self, graph=self.graph.to(device), rows={k: v.to(device) for k, v in self.rows.items()},
            positions=self.positions.to(device), energies=self.energies.to(device), forces=self.forces.to(device),
            conformation_molecule=self.conformation_molecule.to(device),
            references={k: v.to(device) for k, v in self.references.items()},
            relax=None if self.relax is None else self.relax.to(device))


def make_batch(items: Sequence[tuple[MoleculeData, dict[str, np.ndarray] | None]],
               dtype: torch.dtype = torch.float32, features: str = "v0", relax_molecules: int = 0) -> Batch:
    """Collate molecules with their reference nonbonded parameters (None: unknown) into a
    :class:`Batch`; ``features`` is the network's feature set. ``relax_molecules`` > 0 also
    collates that many molecules with at least two QM minima (every force known and zero)
    alone as ``Batch.relax``, and puts them first in the batch."""
    if relax_molecules > 0:
        chosen = [k for k, (d, _) in enumerate(items) if _has_minima(d)][:relax_molecules]
        items = [items[k] for k in chosen] + [it for k, it in enumerate(items) if k not in set(chosen)]
        relax = make_batch(items[: len(chosen)], dtype, features) if 0 < len(chosen) < len(items) else None
    else:
        relax = None
    molecules = [d for d, _ in items]
    unique = Topology.batch([d.topology for d in molecules])
    graph = Graph.from_topology(unique, np.concatenate([d.features(features) for d in molecules]), dtype)
    offsets = {term.name: 0 for term in TERMS}
    rows: dict[str, list[np.ndarray]] = {term.name: [] for term in TERMS}
    replicas, pairs, conf_mol = [], [], []
    atom_offset = 0
    for m, d in enumerate(molecules):
        counts = d.topology.counts()
        for _ in range(d.n_conformations):
            replicas.append(d.topology)
            for term in TERMS:
                rows[term.name].append(np.arange(counts[term.name]) + offsets[term.name])
            pairs.append(d.pairs + atom_offset)
            atom_offset += d.topology.n_atoms
            conf_mol.append(m)
        for term in TERMS:
            offsets[term.name] += counts[term.name]
    names = [f.name for f in NONBONDED.fields()]
    return Batch(
        graph=graph,
        replicas=Topology.batch(replicas),
        pairs=np.concatenate(pairs),
        rows={k: torch.as_tensor(np.concatenate(v)) for k, v in rows.items()},
        positions=torch.as_tensor(np.concatenate([d.positions.reshape(-1, 3) for d in molecules]),
                                  dtype=dtype)[None],
        energies=torch.as_tensor(np.concatenate([d.energies for d in molecules]), dtype=torch.float64),
        forces=torch.as_tensor(np.concatenate([d.forces.reshape(-1, 3) for d in molecules]), dtype=dtype),
        conformation_molecule=torch.as_tensor(conf_mol),
        references={n: torch.as_tensor(np.concatenate([r[n] if r is not None else np.full(d.topology.n_atoms, np.nan)
                                                      for d, r in items]), dtype=dtype) for n in names},
        relax=relax,
    )


def _has_minima(d: MoleculeData) -> bool:
    """Whether ``d`` holds at least two conformations with every force known and zero (QM minima)."""
    zero = np.all(d.forces.reshape(d.n_conformations, -1) == 0, axis=1)
    return int(zero.sum()) >= 2


def expand(parameters: ForceFieldParameters, rows: dict[str, torch.Tensor]) -> ForceFieldParameters:
    """Parameters of every conformation replica, gathered from the molecules' rows."""
    return parameters.map(lambda term, name, x: x[rows[term.name]])


def predict(parameters: ForceFieldParameters, batch: Batch, *, create_graph: bool
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies ``(n_conf,)`` kJ/mol and forces ``(n_replica_atoms, 3)`` kJ/mol/nm."""
    energies, forces = energy_and_forces(batch.replicas, expand(parameters, batch.rows), batch.positions,
                                         pairs=batch.pairs, create_graph=create_graph)
    return energies[0], forces[0]


def minima(batch: Batch) -> torch.Tensor:
    """``(n_conf,)`` bool: conformations whose every force is known and zero (QM minima)."""
    atom_conf = torch.as_tensor(batch.replicas.molecule_index, device=batch.forces.device)
    bad = (torch.isnan(batch.forces) | (batch.forces != 0)).any(-1).to(batch.energies.dtype)
    n_conf = batch.conformation_molecule.shape[0]
    return batch.energies.new_zeros(n_conf).index_add(0, atom_conf, bad) == 0


def relax_minima(parameters: ForceFieldParameters, batch: Batch, mask: torch.Tensor, steps: int) -> torch.Tensor:
    """Positions ``(1, n_replica_atoms, 3)`` nm with the conformations of ``mask`` relaxed on
    the energy of ``parameters`` (the others as given); no graph is kept.

    L-BFGS (``torch.optim.LBFGS``, strong-Wolfe line search) on the sum of the masked
    conformations' energies, at most ``steps`` iterations: the conformations are independent,
    so the minimum of the sum is each one's minimum, as OpenMM's minimiser of the industry
    protocol finds it (soft torsions and hydroxyl rotors included, which steepest descent
    or FIRE reach only after thousands of steps). At a minimum the gradient of the energy in
    the positions vanishes, so the derivative of the relaxed energy in the parameters is the
    partial one at the relaxed positions (the envelope theorem): a loss on relaxed energies
    needs no graph through the relaxation.
    """
    fixed = expand(parameters.map(lambda term, name, x: x.detach()), batch.rows)
    atom_conf = torch.as_tensor(batch.replicas.molecule_index, device=batch.positions.device)
    still = ~mask[atom_conf][None, :, None]
    x = batch.positions.detach().clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([x], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-3, tolerance_change=1e-9)

    def closure() -> torch.Tensor:  # LBFGS.step runs it with gradients enabled
        optimizer.zero_grad()
        total = total_energy(compute_energy(batch.replicas, fixed, x, pairs=batch.pairs))[0][mask].sum()
        total.backward()
        x.grad.masked_fill_(still, 0.0)  # conformations outside the mask stay where they are
        return total.detach()

    optimizer.step(closure)
    return x.detach()


def centred(energies: torch.Tensor, molecule: torch.Tensor, n_molecules: int) -> torch.Tensor:
    """Energies minus the mean over each molecule's conformations."""
    total = energies.new_zeros(n_molecules).index_add(0, molecule, energies)
    count = energies.new_zeros(n_molecules).index_add(0, molecule, torch.ones_like(energies))
    return energies - (total / count)[molecule]


@dataclass
class Metrics:
    """Running sums of squared errors (kcal/mol, kcal/mol/A, e) and their counts."""

    loss: float = 0.0
    batches: int = 0
    energy_sse: float = 0.0
    energy_n: int = 0
    force_sse: float = 0.0
    force_n: int = 0
    charge_sse: float = 0.0
    charge_n: int = 0
    relaxed_sse: float = 0.0
    relaxed_n: int = 0

    def summary(self) -> dict[str, float]:
        def rmse(sse: float, n: int) -> float:
            return math.sqrt(sse / n) if n else float("nan")

        return {"loss": self.loss / max(self.batches, 1),
                "energy_rmse": rmse(self.energy_sse, self.energy_n),
                "force_rmse": rmse(self.force_sse, self.force_n),
                "charge_rmse": rmse(self.charge_sse, self.charge_n),
                "relaxed_rmse": rmse(self.relaxed_sse, self.relaxed_n)}


def batch_loss(network: torch.nn.Module, batch: Batch, config: TrainConfig, metrics: Metrics,
               *, training: bool, world: World = SINGLE, weight: float = 1.0) -> torch.Tensor:
    """Loss of one batch; adds its squared errors to ``metrics``.

    Each term is a mean over the global batch: its sum here divided by the count summed
    over ``world`` (a rank's shard of a data-parallel step; the whole batch on one
    process). ``weight`` 0 marks a stand-in shard that contributes nothing.
    """
    w = config.loss
    parameters = network(batch.graph)
    energies, forces = predict(parameters, batch, create_graph=training)
    n_mol = batch.graph.net_charges.shape[0]
    de = (centred(energies.double(), batch.conformation_molecule, n_mol)
          - centred(batch.energies, batch.conformation_molecule, n_mol)) * KJ_TO_KCAL
    known = ~torch.isnan(batch.forces)
    df = (forces - batch.forces)[known] * FORCE_TO_KCAL_A
    q, sigma, eps = (getattr(parameters.nonbonded, f.name) for f in NONBONDED.fields())
    q_ref, sigma_ref, eps_ref = (batch.references[f.name] for f in NONBONDED.fields())
    dq = (q - q_ref)[~torch.isnan(q_ref)]
    torsions = torch.cat([parameters.term(PROPERS).k.flatten(), parameters.term(IMPROPERS).k.flatten()])
    fit_nonbonded = q.requires_grad  # a frozen nonbonded network cannot learn from the references
    lj_known = ~torch.isnan(sigma_ref) if fit_nonbonded else torch.zeros_like(sigma_ref, dtype=torch.bool)
    n_e, n_f, n_t, n_q, n_lj = world.sum([weight * x.numel() for x in (de, df, torsions, dq)]
                                         + [weight * int(lj_known.sum())])
    loss = w.energy * (de**2).sum().to(q.dtype) / max(n_e, 1)
    if n_f:
        loss = loss + w.forces * (df**2).sum() / n_f
    if n_t:
        loss = loss + (w.torsion_l2 * (torsions**2).sum() + w.torsion_l1 * torsions.sum()) / n_t
    if n_q and fit_nonbonded:
        d_sigma, d_eps = lj_residuals(sigma[lj_known], eps[lj_known], sigma_ref[lj_known], eps_ref[lj_known])
        loss = loss + w.charges * (dq**2).sum() / n_q
        if n_lj:
            loss = loss + w.lj_prior * ((d_sigma**2).sum() + (d_eps**2).sum()) / n_lj
    if w.relaxed_energy > 0:
        if batch.relax is None:
            dr = relaxed_errors(parameters, batch, w.relax_steps)
        else:  # the first molecules' rows lead every term's parameters
            size = {name: int(r.max()) + 1 if r.numel() else 0 for name, r in batch.relax.rows.items()}
            dr = relaxed_errors(parameters.map(lambda term, name, x: x[: size[term.name]]), batch.relax, w.relax_steps)
        (n_r,) = world.sum([weight * dr.numel()])
        if n_r:
            loss = loss + w.relaxed_energy * (dr**2).sum().to(q.dtype) / n_r
        metrics.relaxed_sse += weight * float((dr.detach() ** 2).sum())
        metrics.relaxed_n += int(weight * dr.numel())
    loss = weight * loss
    metrics.loss += float(loss.detach())
    metrics.batches += 1
    metrics.energy_sse += weight * float((de.detach() ** 2).sum())
    metrics.energy_n += int(weight * de.numel())
    metrics.force_sse += weight * float((df.detach() ** 2).sum())
    metrics.force_n += int(weight * df.numel())
    metrics.charge_sse += weight * float((dq.detach() ** 2).sum())
    metrics.charge_n += int(weight * dq.numel())
    return loss


def relaxed_errors(parameters: ForceFieldParameters, batch: Batch, steps: int) -> torch.Tensor:
    """kcal/mol: relaxed-energy errors of the QM minima (:func:`minima`) of the batch's
    molecules that have at least two, relaxed for ``steps`` L-BFGS iterations
    (:func:`relax_minima`); each molecule's model and QM energies are centred over its minima."""
    mask = minima(batch)
    molecule = batch.conformation_molecule
    n_mol = int(batch.graph.net_charges.shape[0])
    count = torch.zeros(n_mol, dtype=torch.long, device=mask.device).index_add(0, molecule, mask.long())
    mask = mask & (count[molecule] >= 2)
    if not bool(mask.any()):
        return batch.energies.new_zeros(0)
    x = relax_minima(parameters, batch, mask, steps)
    energies = total_energy(compute_energy(batch.replicas, expand(parameters, batch.rows), x, pairs=batch.pairs))[0]
    pick = mask.nonzero()[:, 0]
    return (centred(energies[pick].double(), molecule[pick], n_mol)
            - centred(batch.energies[pick], molecule[pick], n_mol)) * KJ_TO_KCAL


def prepare_data(config: TrainConfig) -> dict[str, list[tuple[MoleculeData, dict[str, np.ndarray]]]]:
    """Read, filter, split by molecule and attach reference nonbonded parameters."""
    kept: list[MoleculeData] = []
    train_only: list[MoleculeData] = []
    for source in config.data:
        data = read_dataset(source.path, format=source.format, dataset=source.name, limit=source.limit)
        if source.max_above_minimum is not None:
            data = drop_high_energy(data, source.max_above_minimum * KCAL_TO_KJ)
        (train_only if source.train_only else kept).extend(
            drop_broken(drop_distorted(data), source.max_spread * KCAL_TO_KJ))
    fractions = (1.0 - config.split.validation - config.split.test, config.split.validation, config.split.test)
    parts = split_by_molecule(kept, fractions, config.split.seed)
    held = {d.key for part in parts[1:] for d in part}
    parts[0] += [d for d in train_only if d.key not in held]
    if config.reference_charges is None:
        return {name: [(d, None) for d in part] for name, part in zip(("train", "validation", "test"), parts)}
    cache = ReferenceCache(config.reference_cache, config.reference_charges)
    out = {}
    for name, part in zip(("train", "validation", "test"), parts):
        references = cache.get(part, workers=config.optim.threads) if name != "test" else [None] * len(part)
        out[name] = [(d, r) for d, r in zip(part, references) if name == "test" or r is not None]
    return out


def _batches(items: list, size: int, rng: np.random.Generator | None) -> list[list]:
    order = rng.permutation(len(items)) if rng is not None else np.arange(len(items))
    return [[items[i] for i in order[k:k + size]] for k in range(0, len(items), size)]


def run_epoch(network, batches: list[Batch], config: TrainConfig, optimizer=None,
              desc: str = "", world: World = SINGLE, weights: Sequence[float] | None = None) -> dict[str, float]:
    """One pass; trains when ``optimizer`` is given.

    Data-parallel (``world.size`` > 1): training ``batches`` are this rank's shards of
    the global batches (``weights`` 0 for a stand-in where a batch had no molecule for
    this rank) and ``network`` is wrapped in DistributedDataParallel; validation
    ``batches`` are whole batches, each evaluated by one rank. Metrics are summed over
    the ranks either way.
    """
    metrics = Metrics()
    training = optimizer is not None
    network.train(training)
    quiet = None if world.main else True  # tqdm: None shows a bar on a terminal only
    device = next(network.parameters()).device
    for k, batch in enumerate(tqdm(batches, desc=desc, unit="batch", leave=False, disable=quiet)):
        loss = batch_loss(network, batch.to(device), config, metrics, training=training, world=world if training else SINGLE,
                          weight=1.0 if weights is None else weights[k])
        if training:
            optimizer.zero_grad()
            (loss * world.size).backward()  # DDP averages the ranks' gradients; the shares add up
            torch.nn.utils.clip_grad_norm_(network.parameters(), 10.0)
            optimizer.step()
    return _reduced(metrics, world, batches_summed=not training).summary()


def _reduced(metrics: Metrics, world: World, *, batches_summed: bool) -> Metrics:
    """``metrics`` summed over the ranks (a training step's batch is counted once)."""
    if world.size == 1:
        return metrics
    names = [f.name for f in fields(Metrics)]
    total = Metrics(**{n: type(getattr(metrics, n))(v) for n, v in zip(names, world.sum(
        [getattr(metrics, n) for n in names]))})
    if not batches_summed:
        total.batches = metrics.batches
    return total


def _elements(items) -> list[int]:
    return sorted({int(z) for d, _ in items for z in d.topology.atomic_numbers})


def _load_init(network: torch.nn.Module, path: str) -> dict[str, Any]:
    """Copy a checkpoint's weights into ``network`` (fine-tuning); a clear error when the
    architectures differ. Heads of opt-in terms the checkpoint lacks (a Urey-Bradley
    variant started from a model without it) keep their fresh initialisation."""
    payload = load_checkpoint(path)
    state = dict(network.state_dict())
    opt_in = tuple(f"heads.{t.name}." for t in TERMS if t.optional)
    fresh = {k: v for k, v in state.items() if k.startswith(opt_in) and k not in payload["state_dict"]}
    try:
        network.load_state_dict({**fresh, **payload["state_dict"]})
    except RuntimeError as err:
        raise InputError(f"config: init checkpoint {path} does not fit the configured network "
                         f"({first_line(err)}); use the checkpoint's own network sizes") from None
    return payload


def _in_order(world: World, step: Callable[[], Any]) -> Any:
    """``step()`` on rank 0 first (it writes caches and stage 1), then on the others (they read them)."""
    if world.main:
        value = step()
    world.barrier()
    if not world.main:
        value = step()
    return value


def _nonbonded_stage(network, config: TrainConfig, parts: dict, init: dict | None, out: Path,
                     world: World, device: torch.device) -> tuple[dict | None, list[int], set[int]]:
    """Stage 1 of a separate nonbonded network (or the init checkpoint's), then frozen:
    (stage summary, ion-only elements, elements the nonbonded network covers)."""
    if not config.network.separate_nonbonded:
        return None, [], set()
    if init is not None:  # fine-tuning: the checkpoint's nonbonded network is kept
        stage_one = (init.get("training") or {}).get("nonbonded") or {"best": None, "molecules": None}
        ions_only, covered = list(init["domain"].get("ions_only", [])), set(init["domain"].get("elements", []))
    else:
        held = {d.key for name in ("validation", "test") for d, _ in parts[name]}

        def stage() -> dict:  # rank 0 trains on all the threads while the others wait; they load
            threads = torch.get_num_threads()
            if world.main:
                torch.set_num_threads(config.optim.threads)
            try:
                return train_nonbonded(network.nonbonded, config.nonbonded, features=config.network.features,
                                       exclude=held, output=out, seed=config.optim.seed, device=device)
            finally:
                torch.set_num_threads(threads)

        stage_one = _in_order(world, stage)
        ions_only, covered = sorted(label_elements(config.nonbonded.labels) - set(_elements(parts["train"]))), set()
    network.nonbonded.requires_grad_(False)
    return stage_one, ions_only, covered


def _relax_molecules(config: TrainConfig, world: World = SINGLE) -> int:
    """Molecules per batch collated apart for the relaxed-energy term (0: none or all); with
    ``world``, this rank's part of those of a global batch (at least one each), so the term's
    cost and weight do not grow with the number of processes."""
    n = config.loss.relaxed_molecules if config.loss.relaxed_energy > 0 else 0
    return max(1, n // world.size + int(world.rank < n % world.size)) if n > 0 else 0


def _shards(items: list, config: TrainConfig, rng: np.random.Generator,
            world: World) -> tuple[list[Batch], list[float]]:
    """This rank's shard of every global training batch, with weight 1; a batch with no
    molecule for this rank gets a stand-in (its first molecule) of weight 0."""
    batches, weights = [], []
    for global_batch in _batches(items, config.optim.batch_molecules, rng):
        shard = world.shard(global_batch)
        batches.append(make_batch(shard or global_batch[:1], features=config.network.features,
                                  relax_molecules=_relax_molecules(config, world)))
        weights.append(1.0 if shard else 0.0)
    return batches, weights


def train(config: TrainConfig, *, resume: bool = False, world: World = SINGLE) -> dict[str, Any]:
    """Train a network as configured; write checkpoints, metrics.csv and the resolved config.

    ``world``: this process's place in a data-parallel run (:mod:`gnnff.train.parallel`); rank
    0 writes the files. Returns the summary written to ``summary.json`` (best validation
    metrics, paths). Torch's global random state and thread count are the caller's again
    afterwards (training seeds and sizes them for itself).
    """
    rng_state, threads = torch.get_rng_state(), torch.get_num_threads()
    try:
        return _train(config, resume, world)
    finally:
        torch.set_rng_state(rng_state)
        torch.set_num_threads(threads)


def _advance(state: dict[str, Any], epoch: int, loss: float) -> bool:
    """Record ``epoch``'s validation loss in the loop state; whether it is the best so far."""
    improved = loss < state["best"]
    if improved:
        state.update(best=loss, bad_epochs=0)
    else:
        state["bad_epochs"] += 1
    state["epoch"] = epoch
    return improved


def _epoch_line(epoch: int, train: dict[str, float], validation: dict[str, float]) -> str:
    charges = (f"  charge RMSE {validation['charge_rmse']:.4f} e"
               if math.isfinite(validation["charge_rmse"]) else "")  # none without reference charges
    relaxed = (f"  relaxed ddE RMSE {validation['relaxed_rmse']:.3f} kcal/mol"
               if math.isfinite(validation.get("relaxed_rmse", math.nan)) else "")  # loss.relaxed_energy 0
    return (f"epoch {epoch}: train loss {train['loss']:.4f}  validation energy RMSE "
            f"{validation['energy_rmse']:.3f} kcal/mol  force RMSE {validation['force_rmse']:.3f} kcal/mol/A"
            + charges + relaxed)


def _train(config: TrainConfig, resume: bool, world: World) -> dict[str, Any]:
    # this node's rank and process count (torchrun sets them; one machine otherwise)
    local_rank = int(os.environ.get("LOCAL_RANK", world.rank))
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
    device = resolve_device(config.optim.device, rank=local_rank, processes=local_size, field="config: optim.device")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's communicators go to this rank's own GPU
    torch.manual_seed(config.optim.seed)
    torch.set_num_threads(max(1, config.optim.threads // world.size))
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    if world.main:
        atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2))
    parts = _in_order(world, lambda: prepare_data(config))
    if world.main:
        atomic_write_text(out / "splits.json", json.dumps(
            {name: sorted({d.key for d, _ in items}) for name, items in parts.items()}, indent=1))
    network = build_network(config.network)
    init = _load_init(network, config.init) if config.init is not None else None
    network.to(device)
    stage_one, ions_only, covered = _nonbonded_stage(network, config, parts, init, out, world, device)
    elements = sorted(set(_elements(parts["train"])) | set(ions_only) | covered)
    trainable = network.valence_parameters() if config.network.separate_nonbonded else list(network.parameters())
    optimizer = torch.optim.Adam(trainable, lr=config.optim.learning_rate, weight_decay=config.optim.weight_decay)
    state = {"epoch": 0, "best": math.inf, "bad_epochs": 0}
    if resume and (out / "last.pt").is_file():
        payload = load_checkpoint(out / "last.pt")
        network.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["optimizer"])
        state = dict(payload["loop"])
    parallel = world.wrap(network, device)
    validation = [make_batch(b, features=config.network.features, relax_molecules=_relax_molecules(config)).to(device)
                  for k, b in enumerate(_batches(parts["validation"], config.optim.batch_molecules, None))
                  if k % world.size == world.rank]
    say = tqdm.write if world.main else (lambda text: None)
    if state["epoch"] == 0:
        metrics = run_epoch(network, validation, config, desc="validate", world=world)
        if world.main:
            _write_row(out / "metrics.csv", 0, {}, metrics, 0.0, new=True)
    for epoch in range(state["epoch"] + 1, config.optim.epochs + 1):
        start = time.perf_counter()
        for group in optimizer.param_groups:  # set per epoch, so a resumed run follows the same schedule
            group["lr"] = config.optim.learning_rate_at(epoch)
        batches, weights = _shards(parts["train"], config, np.random.default_rng(config.optim.seed + epoch), world)
        train_metrics = run_epoch(parallel, batches, config, optimizer, desc=f"epoch {epoch}", world=world,
                                  weights=weights)
        val_metrics = run_epoch(network, validation, config, desc="validate", world=world)
        summary = {"epoch": epoch, "train": train_metrics, "validation": val_metrics,
                   "molecules": {k: len(v) for k, v in parts.items()}}
        if stage_one is not None:
            summary["nonbonded"] = {"best": stage_one["best"], "molecules": stage_one["molecules"]}
        improved = _advance(state, epoch, val_metrics["loss"])
        if world.main:
            _write_row(out / "metrics.csv", epoch, train_metrics, val_metrics, time.perf_counter() - start)
            save = functools.partial(save_checkpoint, network=network, config=config.network, elements=elements,
                                     ions_only=ions_only, training=summary)
            if improved:
                save(out / "model.pt")
            save(out / "last.pt", extra={"optimizer": optimizer.state_dict(), "loop": dict(state)})
        say(_epoch_line(epoch, train_metrics, val_metrics))
        if state["bad_epochs"] >= config.optim.patience:
            say(f"early stop: no validation improvement for {config.optim.patience} epochs")
            break
    result = {"output": str(out), "model": str(out / "model.pt"), "best_validation_loss": state["best"],
              "epochs": state["epoch"], "molecules": {k: len(v) for k, v in parts.items()}}
    if world.main:
        atomic_write_text(out / "summary.json", json.dumps(result, indent=2))
    world.barrier()  # the files are there when any rank returns
    return result


def _train_rank(config: TrainConfig, resume: bool, *, world: World) -> None:
    train(config, resume=resume, world=world)


def trains_on_gpu(config: TrainConfig) -> bool:
    """Whether ``config`` trains on CUDA GPUs here (``optim.device`` cuda, cuda:N, or auto
    where torch sees one)."""
    return wants_gpu(config.optim.device)


def train_parallel(config: TrainConfig, nproc: int, *, resume: bool = False) -> dict[str, Any]:
    """:func:`train` data-parallel in ``nproc`` new processes on this machine
    (:mod:`gnnff.train.parallel`); returns rank 0's summary."""
    launch(_train_rank, nproc, config, resume, gpu=trains_on_gpu(config))
    return json.loads((Path(config.output) / "summary.json").read_text())


def _write_row(path: Path, epoch: int, train: dict, validation: dict, seconds: float, new: bool = False) -> None:
    header = ["epoch"] + [f"train_{m}" for m in METRIC_NAMES] + [f"validation_{m}" for m in METRIC_NAMES] + ["seconds"]
    row = [epoch] + [train.get(m, "") for m in METRIC_NAMES] + [validation.get(m, "") for m in METRIC_NAMES] + [
        round(seconds, 3)]
    with open(path, "w" if new else "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(header)
        writer.writerow(row)
