"""Stage 1 of a separate-nonbonded model (gnnff-v1): charges and Lennard-Jones from labels.

The :class:`gnnff.nn.network.NonbondedNetwork` is fitted to per-atom labels
(:mod:`gnnff.train.labels`: AM1-BCC charges, Sage 2.2 sigma/epsilon) before any energy is seen,
then frozen: the gas-phase loss of stage 2 cannot reshape charges or Lennard-Jones.

Loss: ``w_q mean((q - q_ref)^2) / (0.01 e)^2 + w_LJ [mean((sigma/sigma_ref - 1)^2)
+ mean((ln eps - ln eps_ref)^2)] / 0.01^2 + w_mu mean_mol |mu - mu_ref|^2 / (0.1 D)^2``, where the
dipoles ``mu = sum_i q_i r_i`` are taken on one fixed MMFF94 conformer per molecule (the
difference does not depend on the origin: both charge sets sum to the net charge). Molecules are split by key (a hash, so the
split does not depend on the file's order) into training and validation; the best
validation state is kept in ``OUT/nonbonded.pt`` and a finished stage is not redone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from rdkit import Chem
from tqdm import tqdm

from gnnff.chem.features import atom_features, feature_fingerprint
from gnnff.chem.topology import Topology, build_topology
from gnnff.errors import GnnffError, InputError
from gnnff.files import atomic_write, atomic_write_text
from gnnff.nn.network import Graph, NonbondedNetwork
from gnnff.train.labels import prepared_from_mapped_smiles, read_labels

__all__ = ["LabelledMolecule", "dipole_errors", "load_labelled", "lj_residuals", "nonbonded_metrics", "train_nonbonded",
           "with_conformers"]

_CHARGE_SCALE = 0.01  # e
_LJ_SCALE = 0.01  # relative


@dataclass(frozen=True, eq=False)
class LabelledMolecule:
    """One labelled molecule: topology, features and its label arrays."""

    key: str
    topology: Topology
    features: np.ndarray
    charges: np.ndarray
    sigma: np.ndarray
    epsilon: np.ndarray
    #: the label's mapped SMILES (atom order), to embed a conformer from
    smiles: str = ""
    #: ``(n_atoms, 3)`` nm, one fixed conformer for the dipole term (None: not used or not embeddable)
    positions: np.ndarray | None = None


def load_labelled(path: str | Path, *, features: str, exclude: set[str] = frozenset(),
                  limit: int | None = None) -> list[LabelledMolecule]:
    """Labelled molecules of a :mod:`gnnff.train.labels` file, minus failures and ``exclude`` keys
    (no conformers: see :func:`with_conformers`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such label file; make it with gnnff.train.labels (see recipes/v1/make_labels.py)")
    out: list[LabelledMolecule] = []
    entries = [e for e in read_labels(path) if "error" not in e and e.get("key") not in exclude]
    for entry in tqdm(entries[:limit], desc=f"read {path.name}", unit="mol", disable=None):
        try:
            mol = prepared_from_mapped_smiles(entry["smiles"], entry["smiles"])
        except GnnffError:
            continue
        if len(entry["charges"]) != mol.GetNumAtoms():
            continue
        out.append(LabelledMolecule(entry["key"], build_topology(mol), atom_features(mol, features),
                                    np.asarray(entry["charges"]), np.asarray(entry["sigma"]),
                                    np.asarray(entry["epsilon"]), smiles=entry["smiles"]))
    return out


def _conformer(smiles: str, key: str) -> np.ndarray | None:
    """One MMFF94-minimised ETKDG conformer (nm) of a mapped SMILES, seeded by the key, or None."""
    from rdkit.Chem import AllChem

    try:
        mol = prepared_from_mapped_smiles(smiles, key)
    except GnnffError:
        return None
    params = AllChem.ETKDGv3()
    params.randomSeed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") & 0x7FFFFFFF
    mol.RemoveAllConformers()
    if AllChem.EmbedMolecule(mol, params) != 0:
        return None
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=500)
    return mol.GetConformer().GetPositions() * 0.1  # angstrom -> nm


def with_conformers(molecules: Sequence[LabelledMolecule], cache: Path) -> list[LabelledMolecule]:
    """``molecules`` with one fixed conformer each (for the dipole term), embedded once and kept
    in ``cache`` (``.npz`` keyed by label key; written atomically, reused by later runs)."""
    stored: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache) as data:
            stored = {k: data[k] for k in data.files}
    out, added = [], 0
    for m in tqdm(molecules, desc="conformers for the dipole term", unit="mol", disable=None):
        positions = stored.get(m.key)
        if positions is None and m.key not in stored:
            positions = _conformer(m.smiles, m.key)
            stored[m.key] = positions if positions is not None else np.zeros((0, 3))
            added += 1
        if positions is not None and positions.shape != (len(m.charges), 3):
            positions = None
        out.append(dataclasses.replace(m, positions=positions))
    if added:
        atomic_write(cache, lambda tmp: _savez(tmp, stored))
    return out


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:  # a handle: given a path, numpy would append ".npz" to it
        np.savez_compressed(handle, **arrays)


def _validation_part(key: str, fraction: float) -> bool:
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass(frozen=True, eq=False)
class _Batch:
    graph: Graph
    charges: torch.Tensor
    sigma: torch.Tensor
    epsilon: torch.Tensor
    #: per atom: positions (nm; zeros where a molecule has none), molecule index; per molecule: has positions
    positions: torch.Tensor
    molecule: torch.Tensor
    has_positions: torch.Tensor

    def to(self, device: torch.device) -> "_Batch":
        return _Batch(self.graph.to(device), *(t.to(device) for t in (
            self.charges, self.sigma, self.epsilon, self.positions, self.molecule, self.has_positions)))


def _batch(items: Sequence[LabelledMolecule], dtype: torch.dtype) -> _Batch:
    topology = Topology.batch([m.topology for m in items]) if len(items) > 1 else items[0].topology
    graph = Graph.from_topology(topology, np.concatenate([m.features for m in items]), dtype)
    cat = lambda name: torch.as_tensor(np.concatenate([getattr(m, name) for m in items]), dtype=dtype)  # noqa: E731
    positions = np.concatenate([m.positions if m.positions is not None else np.zeros((len(m.charges), 3))
                                for m in items])
    molecule = np.concatenate([np.full(len(m.charges), k) for k, m in enumerate(items)])
    return _Batch(graph, cat("charges"), cat("sigma"), cat("epsilon"), torch.as_tensor(positions, dtype=dtype),
                  torch.as_tensor(molecule, dtype=torch.long),
                  torch.as_tensor([m.positions is not None for m in items], dtype=torch.bool))


#: e nm per debye
DEBYE_E_NM = 0.020819434
_DIPOLE_SCALE = 0.1 * DEBYE_E_NM


def dipole_errors(charges: torch.Tensor, reference: torch.Tensor, positions: torch.Tensor,
                  molecule: torch.Tensor, n_molecules: int) -> torch.Tensor:
    """Per-molecule dipole difference ``sum_i (q_i - q_ref,i) r_i``, ``(n_molecules, 3)`` e nm
    (origin-free when both charge sets have the same net charge)."""
    out = torch.zeros((n_molecules, 3), dtype=charges.dtype, device=charges.device)
    return out.index_add(0, molecule, (charges - reference)[:, None] * positions)


def lj_residuals(sigma: torch.Tensor, epsilon: torch.Tensor, sigma_ref: torch.Tensor,
                 epsilon_ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative sigma error ``sigma/sigma_ref - 1`` and log epsilon error ``ln eps - ln eps_ref``
    (the Lennard-Jones terms of both training stages' losses)."""
    return sigma / sigma_ref.clamp(min=1e-6) - 1.0, epsilon.log() - epsilon_ref.clamp(min=1e-8).log()


def _loss(network: NonbondedNetwork, batch: _Batch, weights: tuple[float, ...]) -> tuple[torch.Tensor, dict]:
    p = network(batch.graph)
    dq = p.charge - batch.charges
    ds, de = lj_residuals(p.sigma, p.epsilon, batch.sigma, batch.epsilon)
    loss = (weights[0] * (dq**2).mean() / _CHARGE_SCALE**2
            + weights[1] * ((ds**2).mean() + (de**2).mean()) / _LJ_SCALE**2)
    dmu = dipole_errors(p.charge, batch.charges, batch.positions, batch.molecule,
                        len(batch.has_positions))[batch.has_positions]
    mu_sq = (dmu**2).sum(dim=1)
    if len(weights) > 2 and weights[2] > 0 and mu_sq.numel():
        loss = loss + weights[2] * mu_sq.mean() / _DIPOLE_SCALE**2
    sums = {"q": float((dq.detach() ** 2).sum()), "sigma": float((ds.detach() ** 2).sum()),
            "epsilon": float((de.detach() ** 2).sum()), "n": dq.numel(), "loss": float(loss.detach()),
            "mu": float(mu_sq.detach().sum()), "n_mu": mu_sq.numel()}
    return loss, sums


def nonbonded_metrics(network: NonbondedNetwork, batches: Sequence[_Batch],
                      weights: tuple[float, ...] = (1.0, 1.0)) -> dict[str, float]:
    """Charge RMSE (e), sigma and epsilon relative RMSE, dipole-error RMSE (D, over molecules
    with a conformer; NaN without), mean loss over ``batches``."""
    network.eval()
    total = {"q": 0.0, "sigma": 0.0, "epsilon": 0.0, "n": 0, "loss": 0.0, "mu": 0.0, "n_mu": 0}
    with torch.no_grad():
        for batch in batches:
            _, sums = _loss(network, batch, weights)
            for k in total:
                total[k] += sums[k]
    n = max(total["n"], 1)
    return {"loss": total["loss"] / max(len(batches), 1), "charge_rmse": math.sqrt(total["q"] / n),
            "sigma_rel_rmse": math.sqrt(total["sigma"] / n), "epsilon_log_rmse": math.sqrt(total["epsilon"] / n),
            "dipole_rmse": math.sqrt(total["mu"] / total["n_mu"]) / DEBYE_E_NM if total["n_mu"] else math.nan}


def train_nonbonded(network: NonbondedNetwork, stage: Any, *, features: str, exclude: set[str],
                    output: Path, seed: int = 0, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> dict[str, Any]:
    """Fit ``network`` to the labels of ``stage`` (a :class:`gnnff.train.config.NonbondedStage`)
    on ``device`` (the network is moved there; its saved state is on the CPU).

    A finished stage (``OUT/nonbonded.json`` present) is loaded instead of redone, unless it
    was trained on features that the feature code no longer computes (an error then).
    Returns the stage summary (molecules, epochs, best validation metrics, feature fingerprint).
    """
    device = torch.device(device)
    network.to(device)
    state_path, summary_path = output / "nonbonded.pt", output / "nonbonded.json"
    fingerprint = feature_fingerprint(features)
    if summary_path.is_file() and state_path.is_file():
        summary = json.loads(summary_path.read_text())
        stored = summary.get("feature_fingerprint")
        if stored is not None and stored != fingerprint:
            raise InputError(f"{state_path}: trained on features '{features}' as computed by other code "
                             f"(fingerprint {stored}, now {fingerprint}); delete {output} to retrain the stage")
        network.load_state_dict(torch.load(state_path, map_location="cpu", weights_only=True))
        note = "" if stored else "; it records no feature fingerprint (older run): check it matches the features"
        tqdm.write(f"nonbonded stage: loaded {state_path} (delete it to redo the stage{note})")
        return summary
    molecules = load_labelled(stage.labels, features=features, exclude=exclude, limit=stage.limit)
    validation = [m for m in molecules if _validation_part(m.key, stage.validation)]
    train = [m for m in molecules if not _validation_part(m.key, stage.validation)]
    if not train or not validation:
        raise InputError(f"{stage.labels}: {len(molecules)} usable labelled molecules; need some for "
                         "training and some for validation")
    if stage.dipole > 0:  # one fixed conformer per molecule, embedded once (cache beside the stage output)
        molecules = with_conformers(molecules, output / "conformers.npz")
        validation = [m for m in molecules if _validation_part(m.key, stage.validation)]
        train = [m for m in molecules if not _validation_part(m.key, stage.validation)]
    weights = (stage.charges, stage.lennard_jones, stage.dipole)
    val_batches = [_batch(validation[k:k + 256], dtype).to(device) for k in range(0, len(validation), 256)]
    optimizer = torch.optim.Adam(network.parameters(), lr=stage.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(stage.patience // 3, 1))
    best, bad, rows = math.inf, 0, []
    rng = np.random.default_rng(seed)
    for epoch in range(1, stage.epochs + 1):
        start = time.perf_counter()
        network.train()
        order = rng.permutation(len(train))
        for k in tqdm(range(0, len(order), stage.batch_molecules), desc=f"nonbonded epoch {epoch}",
                      unit="batch", leave=False, disable=None):
            batch = _batch([train[i] for i in order[k:k + stage.batch_molecules]], dtype).to(device)
            loss, _ = _loss(network, batch, weights)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 10.0)
            optimizer.step()
        metrics = nonbonded_metrics(network, val_batches, weights)
        scheduler.step(metrics["loss"])
        rows.append({"epoch": epoch, **metrics, "seconds": round(time.perf_counter() - start, 2)})
        tqdm.write(f"nonbonded epoch {epoch}: validation charge RMSE {metrics['charge_rmse']:.4f} e  "
                   f"sigma {100 * metrics['sigma_rel_rmse']:.2f} %  epsilon {100 * metrics['epsilon_log_rmse']:.2f} %  "
                   f"dipole {metrics['dipole_rmse']:.2f} D")
        if metrics["loss"] < best:
            best, bad = metrics["loss"], 0
            state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
            atomic_write(state_path, lambda tmp: torch.save(state, tmp))
        else:
            bad += 1
            if bad >= stage.patience:
                break
    network.load_state_dict(torch.load(state_path, map_location="cpu", weights_only=True))
    summary = {"molecules": {"train": len(train), "validation": len(validation)}, "epochs": rows,
               "best": min(rows, key=lambda r: r["loss"]), "labels": str(stage.labels),
               "features": features, "feature_fingerprint": fingerprint}
    atomic_write_text(summary_path, json.dumps(summary, indent=1))
    return summary


def label_elements(path: str | Path) -> set[int]:
    """Elements of the monatomic ions among the labels (covered by the nonbonded network alone)."""
    out = set()
    for entry in read_labels(path):
        if "error" not in entry:
            mol = Chem.MolFromSmiles(entry["smiles"])
            if mol is not None and mol.GetNumAtoms() == 1:
                out.add(mol.GetAtomWithIdx(0).GetAtomicNum())
    return out
