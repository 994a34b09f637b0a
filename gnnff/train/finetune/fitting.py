"""The fit: the valence heads, or the torsion residuals, trained with a pull to the base model."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import torch

from gnnff.errors import InputError
from gnnff.nn.corrections import TorsionCorrections
from gnnff.schema import NONBONDED, ForceFieldParameters
from gnnff.train.finetune.settings import FinetuneSettings
from gnnff.train.finetune.targets import Profile
from gnnff.units import KCAL_TO_KJ, KJ_TO_KCAL, NM_TO_ANGSTROM

__all__ = ["PULL_SCALES", "RESIDUAL_PERIODICITIES", "RESIDUAL_SCALE", "fit", "valence_heads"]

FORCE_TO_KCAL_A = KJ_TO_KCAL / NM_TO_ANGSTROM

#: (term, field) -> scale of the pull toward the base model: a number (the field's unit)
#: or "log" (relative change of a positive constant). Fields not named (phases) are fixed.
PULL_SCALES: dict[tuple[str, str], float | str] = {
    ("bonds", "k"): "log", ("bonds", "length"): 0.002,
    ("angles", "k"): "log", ("angles", "angle"): math.radians(2.0),
    ("propers", "k"): KCAL_TO_KJ, ("impropers", "k"): KCAL_TO_KJ,
    ("urey_bradleys", "k"): "log", ("urey_bradleys", "length"): 0.002,
}

#: kJ/mol per unit of the trained value of a torsion residual (``tune="torsions"``)
RESIDUAL_SCALE = 100.0
#: the periodicities a residual may have: the fitted points of a 15-degree scan are 30
#: degrees apart (every other one is held out), where cos(6 phi) and cos(5 phi) alias
#: with lower ones and could fit the points while missing the held-out ones between
RESIDUAL_PERIODICITIES = (1, 2, 3, 4)


def _residual(raw: torch.Tensor) -> torch.Tensor:
    """The residuals (kJ/mol) of the trained values ``raw``: scaled, zero beyond RESIDUAL_PERIODICITIES."""
    from gnnff.schema import PROPER_PERIODICITIES

    kept = torch.tensor([n in RESIDUAL_PERIODICITIES for n in PROPER_PERIODICITIES], dtype=raw.dtype)
    return RESIDUAL_SCALE * raw * kept


def _pull(tuned: ForceFieldParameters, base: ForceFieldParameters, driven: dict[str, torch.Tensor] | None,
          pull: float, anchor: float, n_molecules: int) -> torch.Tensor:
    """The restraint toward the base model: per molecule, the sum of squared scaled changes
    of the pulled fields (:data:`PULL_SCALES`), weighted ``pull`` on the rows ``driven``
    marks (the driven bonds' torsions) and ``anchor`` on all others (every row ``pull``
    when ``driven`` is None)."""
    total = torch.zeros((), dtype=torch.float64)
    for term in tuned.terms:
        if term is NONBONDED:
            continue
        for f in term.fields():
            scale = PULL_SCALES.get((term.name, f.name))
            if scale is None:
                continue
            new, old = getattr(tuned.term(term), f.name), getattr(base.term(term), f.name)
            if new.numel() == 0:
                continue
            d = (torch.log(new / old) if scale == "log" else (new - old) / scale).double() ** 2
            d = d.reshape(d.shape[0], -1).sum(1)
            if driven is None:
                weight = torch.full_like(d, pull)
            else:
                weight = torch.where(driven[term.name], pull, anchor).to(d.dtype)
            total = total + (weight * d).sum()
    return total / max(n_molecules, 1)


def valence_heads(network: torch.nn.Module, terms: Sequence[str] | None = None) -> list[str]:
    """Names of the heads fine-tuning trains: ``terms`` (default: every term's but the
    nonbonded one); InputError for a term the network has no head for."""
    heads = [name for name in network.heads if name != NONBONDED.name]
    if terms is None:
        return heads
    unknown = sorted(set(terms) - set(heads))
    if unknown:
        raise InputError(f"finetune: the base model has no valence head '{unknown[0]}' (heads: {', '.join(heads)})")
    return [name for name in heads if name in terms]


def fit(network: torch.nn.Module, data: Sequence, settings: FinetuneSettings, features: str = "v0",
        progress: bool = True, profiles: Sequence[Profile] = (),
        driven: dict[str, torch.Tensor] | None = None, corrections: TorsionCorrections | None = None
        ) -> tuple[list[dict[str, float]], TorsionCorrections | None]:
    """Fit on ``data`` (MoleculeData: energies and forces at the labeler's geometries) and
    ``profiles`` (relaxed torsion profiles), with the pull toward the base model
    (``driven``: :func:`driven_rows` of ``data``). ``settings.tune == "heads"``: trains
    ``network``'s valence heads in place (``corrections``, the base model's own, are
    applied and kept as they are); ``"torsions"``: trains the residuals of
    ``corrections`` (:func:`driven_corrections`) and leaves ``network`` as it is.
    Returns the loss history (every step: total, energy RMSE kcal/mol, force RMSE
    kcal/mol/A, profile RMSE kcal/mol, pull) and the corrections fitted. Runs on the threads
    :func:`gnnff.threads.inference_threads` chooses for the replicas' atoms (one on busy
    cores: torch's default there made each step 12x slower)."""
    from gnnff.threads import inference_threads

    atoms = sum(d.topology.n_atoms * d.n_conformations for d in [*data, *(q.data for q in profiles)])
    with inference_threads(atoms):
        return _fit(network, data, settings, features, progress, profiles, driven, corrections)



class _Predictor:
    """Parameters of one batch's molecules as the fit sees them: the network's (its
    valence heads training, ``raw`` None) or the base network's with the torsion
    residuals ``corrections.k + _residual(raw)`` on the rows whose environment has one."""

    def __init__(self, network: torch.nn.Module, batch, molecules: Sequence, corrections: TorsionCorrections | None,
                 raw: torch.Tensor | None) -> None:
        self.network, self.graph, self.raw = network, batch.graph, raw
        self.corrections = corrections if corrections is not None else TorsionCorrections.empty()
        rows, index, offset = [], [], 0
        for d in molecules:  # make_batch's row order: each molecule's propers in turn
            r, i = self.corrections.rows(d.mol, d.topology)
            rows.append(r + offset)
            index.append(i)
            offset += len(d.topology.propers)
        self.rows, self.index = np.concatenate(rows or [np.zeros(0, np.int64)]), np.concatenate(
            index or [np.zeros(0, np.int64)])
        with torch.no_grad():
            self.embeddings = network.gnn(batch.graph)
            self.base = network(batch.graph, self.embeddings) if raw is not None else None

    def __call__(self) -> ForceFieldParameters:
        if self.raw is None:
            return self.corrections.apply(self.network(self.graph, self.embeddings), self.rows, self.index)
        k = self.corrections.k + _residual(self.raw)
        return self.corrections.apply(self.base, self.rows, self.index, k=k)


class _Relaxed:
    """The relaxed-profile loss: every ``relax_every`` steps each profile's fitted points
    are minimised with the current parameters' System (OpenMM, the dihedral restrained
    at its grid value, from the labeler's geometry: :func:`~gnnff.train.scan.mm_profile`,
    as the report does); in between, the loss is the mean squared difference of the MM
    energies at those geometries from the labeler's, each scan relative to its mean. The
    geometries are held fixed within a round: at a restrained minimum the energy's
    derivative by a parameter is its partial derivative at fixed positions (the
    restraint does not depend on the parameters), the ForceBalance treatment of
    optimised-geometry targets. A profile without a torsion (conformers) is minimised
    without a restraint: at an unconstrained minimum the same holds."""

    def __init__(self, network: torch.nn.Module, profiles: Sequence[Profile], features: str,
                 corrections: TorsionCorrections | None = None, raw: torch.Tensor | None = None) -> None:
        from gnnff.train.training import centred, make_batch

        self.profiles = list(profiles)
        self.batch = make_batch([(q.data, None) for q in self.profiles], features=features)
        self.predict = _Predictor(network, self.batch, [q.data for q in self.profiles], corrections, raw)
        self.n = len(self.profiles)
        self.reference = centred(self.batch.energies, self.batch.conformation_molecule, self.n)
        self.positions = self.batch.positions
        self.frozen = torch.zeros_like(self.batch.energies)

    def relax(self) -> None:
        from gnnff.mm.energy import compute_energy
        from gnnff.mm.export import to_openmm
        from gnnff.nn.checkpoint import _split
        from gnnff.train.scan import ScanPoint, mm_profile
        from gnnff.train.training import expand

        topologies = [q.data.topology for q in self.profiles]
        with torch.no_grad():
            parameters = self.predict()
            relaxed = []
            for q, p in zip(self.profiles, _split(parameters, topologies)):
                start = [ScanPoint(float(t), float(t), 0.0, x) for t, x in zip(q.targets, q.data.positions)]
                points = mm_profile(to_openmm(q.data.topology, p), start, q.torsion)
                relaxed.append(np.concatenate([point.positions for point in points]))
            self.positions = torch.as_tensor(np.concatenate(relaxed), dtype=self.batch.positions.dtype)[None]
            energies = compute_energy(self.batch.replicas, expand(parameters, self.batch.rows), self.positions,
                                      pairs=self.batch.pairs, terms=[NONBONDED])
            self.frozen = energies[NONBONDED.name][0].double()

    def mse(self, valence) -> torch.Tensor:
        """Mean squared profile error (kcal/mol)^2 of the current parameters at the last relaxed geometries."""
        from gnnff.mm.energy import compute_energy, total_energy
        from gnnff.train.training import centred, expand

        parameters = self.predict()
        energies = compute_energy(self.batch.replicas, expand(parameters, self.batch.rows), self.positions,
                                  terms=valence)
        e = total_energy(energies)[0].double() + self.frozen
        d = (centred(e, self.batch.conformation_molecule, self.n) - self.reference) * KJ_TO_KCAL
        return (d**2).mean()


def _fit(network: torch.nn.Module, data: Sequence, settings: FinetuneSettings, features: str,
         progress: bool, profiles: Sequence[Profile], driven: dict[str, torch.Tensor] | None,
         corrections: TorsionCorrections | None) -> tuple[list[dict[str, float]], TorsionCorrections | None]:
    from tqdm import tqdm

    from gnnff.mm.energy import energy_and_forces
    from gnnff.train.training import centred, expand, make_batch

    torch.manual_seed(settings.seed)
    batch = make_batch([(d, None) for d in data], features=features)
    network.eval()
    network.requires_grad_(False)
    torsions = settings.tune == "torsions"
    if torsions:
        if corrections is None:
            raise ValueError("fit: tune='torsions' needs the corrections table (driven_corrections)")
        # Adam moves each raw value by about the learning rate per step: in units of
        # RESIDUAL_SCALE, 300 steps at 1e-3 can move a barrier by up to 30 kJ/mol
        raw = torch.zeros_like(corrections.k, requires_grad=True)
        trained = [raw]
    else:
        raw = None
        trained = [p for name in valence_heads(network, settings.terms) for p in network.heads[name].parameters()]
        for p in trained:
            p.requires_grad_(True)
    predict = _Predictor(network, batch, data, corrections, raw)
    with torch.no_grad():
        base = predict()
    # the nonbonded term is frozen: its energies and forces once, the valence terms every step
    nb_energies, nb_forces = energy_and_forces(batch.replicas, expand(base, batch.rows), batch.positions,
                                               term=NONBONDED, pairs=batch.pairs)
    valence = [t for t in base.terms if t is not NONBONDED]
    relaxed = (_Relaxed(network, profiles, features, corrections, raw)
               if profiles and settings.profile > 0 else None)
    optimizer = torch.optim.Adam(trained, lr=settings.learning_rate)
    # cosine decay to zero: late steps settle instead of oscillating between relaxations
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(settings.steps, 1))
                 if settings.schedule == "cosine" else None)
    n_mol = batch.graph.net_charges.shape[0]
    reference = centred(batch.energies, batch.conformation_molecule, n_mol)
    history = []
    for step in tqdm(range(settings.steps), desc="fit", unit="step", disable=not progress, leave=False):
        if relaxed is not None and step % settings.relax_every == 0:
            relaxed.relax()
        parameters = predict()
        energies, forces = energy_and_forces(batch.replicas, expand(parameters, batch.rows), batch.positions,
                                             terms=valence, create_graph=True)
        energies, forces = energies[0] + nb_energies[0].detach(), forces[0] + nb_forces[0].detach()
        de = (centred(energies.double(), batch.conformation_molecule, n_mol) - reference) * KJ_TO_KCAL
        df = (forces - batch.forces).double() * FORCE_TO_KCAL_A
        if torsions:  # the residuals themselves, in kcal/mol
            pull = settings.pull * ((_residual(raw) / KCAL_TO_KJ) ** 2).sum() / max(n_mol, 1)
        else:
            pull = _pull(parameters, base, driven, settings.pull, settings.anchor, n_mol)
        e_mse, f_mse = (de**2).mean(), (df**2).mean()
        p_mse = relaxed.mse(valence) if relaxed is not None else torch.zeros((), dtype=torch.float64)
        loss = settings.energies * e_mse + settings.forces * f_mse + settings.profile * p_mse + pull
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 10.0)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        history.append({"loss": loss.item(), "energy_rmse": math.sqrt(e_mse.item()),
                        "force_rmse": math.sqrt(f_mse.item()), "profile_rmse": math.sqrt(p_mse.item()),
                        "pull": pull.item()})
    network.requires_grad_(False)
    if torsions:
        corrections = dataclasses.replace(corrections, k=(corrections.k + _residual(raw)).detach())
    return history, corrections

