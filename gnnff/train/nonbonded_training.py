"""Stage 1 of a separate-nonbonded model (gnnff-v1): charges and Lennard-Jones from labels.

The :class:`gnnff.nn.network.NonbondedNetwork` is fitted to per-atom labels
(:mod:`gnnff.train.labels`: AM1-BCC charges, Sage 2.2 sigma/epsilon) before any energy is seen,
then frozen: the gas-phase loss of stage 2 cannot reshape charges or Lennard-Jones.

Loss: ``w_q mean((q - q_ref)^2) / (0.01 e)^2 + w_LJ [mean((sigma/sigma_ref - 1)^2)
+ mean((ln eps - ln eps_ref)^2)] / 0.01^2``. Molecules are split by key (a hash, so the
split does not depend on the file's order) into training and validation; the best
validation state is kept in ``OUT/nonbonded.pt`` and a finished stage is not redone.
"""

from __future__ import annotations

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

__all__ = ["LabelledMolecule", "load_labelled", "lj_residuals", "train_nonbonded", "nonbonded_metrics"]

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


def load_labelled(path: str | Path, *, features: str, exclude: set[str] = frozenset(),
                  limit: int | None = None) -> list[LabelledMolecule]:
    """Labelled molecules of a :mod:`gnnff.train.labels` file, minus failures and ``exclude`` keys."""
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
                                    np.asarray(entry["epsilon"])))
    return out


def _validation_part(key: str, fraction: float) -> bool:
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass(frozen=True, eq=False)
class _Batch:
    graph: Graph
    charges: torch.Tensor
    sigma: torch.Tensor
    epsilon: torch.Tensor

    def to(self, device: torch.device) -> "_Batch":
        return _Batch(self.graph.to(device), self.charges.to(device), self.sigma.to(device), self.epsilon.to(device))


def _batch(items: Sequence[LabelledMolecule], dtype: torch.dtype) -> _Batch:
    topology = Topology.batch([m.topology for m in items]) if len(items) > 1 else items[0].topology
    graph = Graph.from_topology(topology, np.concatenate([m.features for m in items]), dtype)
    cat = lambda name: torch.as_tensor(np.concatenate([getattr(m, name) for m in items]), dtype=dtype)  # noqa: E731
    return _Batch(graph, cat("charges"), cat("sigma"), cat("epsilon"))


def lj_residuals(sigma: torch.Tensor, epsilon: torch.Tensor, sigma_ref: torch.Tensor,
                 epsilon_ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative sigma error ``sigma/sigma_ref - 1`` and log epsilon error ``ln eps - ln eps_ref``
    (the Lennard-Jones terms of both training stages' losses)."""
    return sigma / sigma_ref.clamp(min=1e-6) - 1.0, epsilon.log() - epsilon_ref.clamp(min=1e-8).log()


def _loss(network: NonbondedNetwork, batch: _Batch, weights: tuple[float, float]) -> tuple[torch.Tensor, dict]:
    p = network(batch.graph)
    dq = p.charge - batch.charges
    ds, de = lj_residuals(p.sigma, p.epsilon, batch.sigma, batch.epsilon)
    loss = (weights[0] * (dq**2).mean() / _CHARGE_SCALE**2
            + weights[1] * ((ds**2).mean() + (de**2).mean()) / _LJ_SCALE**2)
    sums = {"q": float((dq.detach() ** 2).sum()), "sigma": float((ds.detach() ** 2).sum()),
            "epsilon": float((de.detach() ** 2).sum()), "n": dq.numel(), "loss": float(loss.detach())}
    return loss, sums


def nonbonded_metrics(network: NonbondedNetwork, batches: Sequence[_Batch],
                      weights: tuple[float, float] = (1.0, 1.0)) -> dict[str, float]:
    """Charge RMSE (e), sigma and epsilon relative RMSE, mean loss over ``batches``."""
    network.eval()
    total = {"q": 0.0, "sigma": 0.0, "epsilon": 0.0, "n": 0, "loss": 0.0}
    with torch.no_grad():
        for batch in batches:
            _, sums = _loss(network, batch, weights)
            for k in total:
                total[k] += sums[k]
    n = max(total["n"], 1)
    return {"loss": total["loss"] / max(len(batches), 1), "charge_rmse": math.sqrt(total["q"] / n),
            "sigma_rel_rmse": math.sqrt(total["sigma"] / n), "epsilon_log_rmse": math.sqrt(total["epsilon"] / n)}


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
    weights = (stage.charges, stage.lennard_jones)
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
                   f"sigma {100 * metrics['sigma_rel_rmse']:.2f} %  epsilon {100 * metrics['epsilon_log_rmse']:.2f} %")
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
