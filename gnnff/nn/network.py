"""The network: message passing over the bond graph, one symmetric head per MM term.

Stages: atom features -> :class:`GNN` atom embeddings -> per-term heads that pool
symmetrically over the term's symmetry group (:data:`gnnff.schema.Term.symmetry`) ->
transforms that make parameters valid by construction:

- bonds, angles: two positive weights ``w1, w2`` on fixed anchors:
  ``k = w1 + w2``, ``x0 = (w1 b1 + w2 b2) / k`` (k > 0, x0 between the anchors);
- torsions: signed ``k_n`` -> ``|k_n|`` with phase 0 or pi;
- charges: electronegativity and hardness -> analytic charge equilibration with the
  molecule's net charge (the sum is exact);
- Lennard-Jones: sigma and epsilon inside element-wise bounds (sigmoid, log scale for
  epsilon), starting at element defaults.

This module imports the schema and topology, never export or training.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gnnff.chem.features import FEATURE_SETS, N_FEATURES
from gnnff.chem.topology import Topology
from gnnff.errors import ModelError
from gnnff.schema import (
    ANGLES,
    BONDS,
    IMPROPERS,
    NONBONDED,
    PROPERS,
    TERMS,
    UREY_BRADLEYS,
    AngleParameters,
    BondParameters,
    ForceFieldParameters,
    ImproperParameters,
    NonbondedParameters,
    ProperParameters,
    Term,
    UreyBradleyParameters,
)

__all__ = ["NetworkConfig", "Graph", "Head", "HEADS", "GNNForceField", "NonbondedNetwork", "ARCHITECTURES",
           "build_network", "LJ_BOUNDS", "linear_angles", "linear_propers", "nonbonded_parameters"]

BOND_ANCHORS = (0.08, 0.32)  # nm
ANGLE_ANCHORS = (0.0, math.pi)  # rad
#: Starting points of the untrained model (typical values of organic force fields).
BOND_START = (3.0e5, 0.13)  # kJ/mol/nm^2, nm
ANGLE_START = (500.0, 1.91)  # kJ/mol/rad^2, rad
TORSION_SCALE = 2.0  # kJ/mol per unit of raw output
#: Urey-Bradley: force constant at raw output 0 (small, so an added term starts as a
#: small correction), its scale, and the bounds of the 1-3 distance
UREY_BRADLEY_K_START = 500.0  # kJ/mol/nm^2
UREY_BRADLEY_LENGTH = (0.24, 0.14, 0.34)  # nm: start, low, high

#: Element -> (sigma default, low, high [nm]; epsilon default, low, high [kJ/mol]).
LJ_BOUNDS: dict[int, tuple[float, float, float, float, float, float]] = {
    1: (0.25, 0.03, 0.32, 0.07, 1e-5, 0.3),
    6: (0.34, 0.28, 0.42, 0.36, 0.05, 1.5),
    7: (0.32, 0.27, 0.40, 0.70, 0.05, 1.5),
    8: (0.30, 0.26, 0.38, 0.88, 0.05, 1.5),
    9: (0.31, 0.27, 0.37, 0.25, 0.02, 1.0),
    15: (0.37, 0.30, 0.45, 0.84, 0.05, 2.5),
    16: (0.36, 0.30, 0.43, 1.05, 0.05, 2.5),
    17: (0.35, 0.30, 0.42, 1.10, 0.05, 2.5),
    35: (0.36, 0.30, 0.45, 1.30, 0.05, 3.0),
    53: (0.40, 0.32, 0.50, 1.60, 0.05, 3.5),
}
_LJ_OTHER = (0.30, 0.10, 0.50, 0.40, 1e-4, 4.0)
#: The bounds of a separate nonbonded network (gnnff-v1): around Sage 2.2's values, wide
#: enough for its halide ions (Cl- 0.448 nm, I- 0.510 nm) and its polar hydrogens.
LJ_BOUNDS_V1: dict[int, tuple[float, float, float, float, float, float]] = {
    1: (0.25, 0.04, 0.30, 0.07, 1e-5, 0.3),
    6: (0.34, 0.30, 0.40, 0.45, 0.2, 1.5),
    7: (0.32, 0.28, 0.38, 0.70, 0.3, 1.5),
    8: (0.30, 0.27, 0.35, 0.80, 0.3, 1.5),
    9: (0.31, 0.27, 0.45, 0.25, 0.005, 0.5),
    15: (0.374, 0.32, 0.44, 0.84, 0.3, 2.0),
    16: (0.356, 0.32, 0.42, 1.05, 0.4, 2.0),
    17: (0.33, 0.30, 0.48, 1.10, 0.1, 2.0),
    35: (0.35, 0.32, 0.50, 1.35, 0.1, 2.5),
    53: (0.42, 0.36, 0.55, 1.67, 0.1, 3.0),
}


@dataclass(frozen=True)
class NetworkConfig:
    """Hyperparameters of the network. Unknown keys are errors (:meth:`from_dict`)."""

    architecture: str = "gnn"
    width: int = 128
    depth: int = 3
    head_width: int = 128
    head_depth: int = 2
    #: atom feature set (:data:`gnnff.chem.features.FEATURE_SETS`)
    features: str = "v0"
    #: > 0: charges and Lennard-Jones come from a network of their own (this width), trained
    #: on labels before and frozen while the valence terms are fitted; 0: shared with valence
    nonbonded_width: int = 0
    nonbonded_depth: int = 4
    #: soft threshold (kJ/mol) on torsion force constants: smaller ones are exactly zero
    torsion_threshold: float = 0.0
    #: angles at sp centres (alkynes, nitriles, allenes, azides) get theta0 = pi exactly,
    #: and propers about such a centre get no terms (their dihedral is undefined there)
    linear_angles: bool = False
    #: proper torsions carry cosines of periodicity 1..max_periodicity only (the others
    #: are exactly zero): fewer exported terms
    max_periodicity: int = 6
    #: opt-in terms of :data:`gnnff.schema.TERMS` the network also predicts
    #: (``["urey_bradleys"]``); the required terms are always predicted
    optional_terms: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "NetworkConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ModelError(f"unknown network option(s) {unknown}; known: {sorted(known)}")
        if "optional_terms" in values:
            values = {**values, "optional_terms": tuple(values["optional_terms"])}
        config = cls(**values)
        optional = {t.name for t in TERMS if t.optional}
        bad = [name for name in config.optional_terms if name not in optional]
        if bad:
            raise ModelError(f"optional_terms {bad} are not opt-in terms of this gnnff; known: {sorted(optional)}")
        if config.features not in FEATURE_SETS:
            raise ModelError(f"unknown feature set '{config.features}'; known: {', '.join(FEATURE_SETS)}")
        if not 1 <= config.max_periodicity <= max(PROPERS.periodicities):
            raise ModelError(f"max_periodicity must be 1..{max(PROPERS.periodicities)}, got {config.max_periodicity}")
        return config

    @property
    def separate_nonbonded(self) -> bool:
        """Whether charges and Lennard-Jones have their own network."""
        return self.nonbonded_width > 0

    @property
    def terms(self) -> tuple[Term, ...]:
        """The terms this network predicts, in export order."""
        return tuple(t for t in TERMS if not t.optional or t.name in self.optional_terms)

    def to_dict(self) -> dict[str, Any]:
        """The options as plain data; ``optional_terms`` only when there are some, so a
        checkpoint without opt-in terms stays readable by a gnnff that predates them."""
        values = asdict(self)
        if self.optional_terms:
            values["optional_terms"] = list(self.optional_terms)
        else:
            del values["optional_terms"]
        return values


@dataclass(frozen=True, eq=False)
class Graph:
    """Tensors the network reads, for one molecule or a batch.

    Attributes
    ----------
    features
        ``(n_atoms, N_FEATURES)``
    atomic_numbers, molecule_index
        ``(n_atoms,)``
    net_charges
        ``(n_molecules,)`` float; its dtype is the dtype the parameters are formed in
        (the heads' outputs are cast to it before charge equilibration and the bounds),
        which may be wider than the features': inference runs the message passing in
        float32, as trained, and forms the parameters in float64
    edges
        ``(2, 2 n_bonds)`` both directions of every bond
    tuples
        term name -> ``(n, arity)`` atom tuples
    linear_angles
        ``(n_angles,)`` bool: the angle's vertex is an sp centre (degree 2)
    linear_propers
        ``(n_propers,)`` bool: a central atom of the proper is such a centre, so the
        dihedral is undefined at the linear geometry
    """

    features: torch.Tensor
    atomic_numbers: torch.Tensor
    molecule_index: torch.Tensor
    net_charges: torch.Tensor
    edges: torch.Tensor
    tuples: dict[str, torch.Tensor]
    linear_angles: torch.Tensor
    linear_propers: torch.Tensor

    def to(self, device: torch.device | str) -> "Graph":
        """The same graph with every tensor on ``device`` (itself when they are there already)."""
        device = torch.device(device)
        if self.features.device == device:
            return self
        return replace(
            self, **{f.name: ({k: v.to(device) for k, v in value.items()} if isinstance(value, dict)
                              else value.to(device))
                     for f in fields(self) for value in [getattr(self, f.name)]})

    @staticmethod
    def from_topology(topology: Topology, features: np.ndarray, dtype: torch.dtype = torch.float32,
                      output_dtype: torch.dtype | None = None) -> "Graph":
        """The graph of ``topology``: the network computes in ``dtype`` (its weights'
        dtype) and forms the parameters in ``output_dtype`` (default ``dtype``)."""
        bonds = torch.as_tensor(topology.bonds)
        return Graph(
            features=torch.as_tensor(features, dtype=dtype),
            atomic_numbers=torch.as_tensor(topology.atomic_numbers),
            molecule_index=torch.as_tensor(topology.molecule_index),
            net_charges=torch.as_tensor(topology.net_charges, dtype=output_dtype or dtype),
            edges=torch.cat([bonds.T, bonds.flip(1).T], dim=1),
            tuples={term.name: torch.as_tensor(topology.indices(term)) for term in TERMS},
            linear_angles=torch.as_tensor(linear_angles(topology)),
            linear_propers=torch.as_tensor(linear_propers(topology)),
        )


def _linear_centres(topology: Topology) -> np.ndarray:
    """``(n_atoms,)`` bool: sp-hybridised atoms with two neighbours (the middle atom of an
    alkyne, nitrile, allene, ketene, azide, diazo or CO2 group)."""
    degree = np.bincount(topology.bonds.ravel(), minlength=topology.n_atoms)
    return (topology.hybridization == 1) & (degree == 2)


def linear_angles(topology: Topology) -> np.ndarray:
    """``(n_angles,)`` bool: angles whose vertex is a linear centre."""
    return _linear_centres(topology)[topology.angles[:, 1]]


def linear_propers(topology: Topology) -> np.ndarray:
    """``(n_propers,)`` bool: propers i-j-k-l with j or k a linear centre. Their dihedral is
    undefined when i-j-k or j-k-l is straight, and its force diverges near it."""
    centres = _linear_centres(topology)
    return centres[topology.propers[:, 1]] | centres[topology.propers[:, 2]]


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


#: Row-wise layers run on blocks of at most this many rows (atoms, or tuples times their
#: orderings). Whole-graph tensors of a 100,000-atom system are hundreds of MB, each
#: allocated afresh and faulted in page by page; blocks of a few MB stay in the allocator's
#: reuse and the caches (the heads of a 100,000-atom peptide: 5.4 -> 2.0 s, 10,000 atoms:
#: 0.25 -> 0.19 s, identical values). Graphs of a few drug-like molecules are one block.
ROW_BLOCK = 4096


def _blocks(n: int) -> list[slice]:
    return [slice(k, min(k + ROW_BLOCK, n)) for k in range(0, n, ROW_BLOCK)] or [slice(0, 0)]


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """The blocks' rows as one tensor (one block: itself, not a copy)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class GNN(nn.Module):
    """Residual mean-aggregation message passing over bonds (plain ``index_add``)."""

    def __init__(self, n_features: int, width: int, depth: int) -> None:
        super().__init__()
        self.embed = _mlp([n_features, width, width])
        self.layers = nn.ModuleList(_mlp([2 * width, width, width]) for _ in range(depth))
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))

    def forward(self, graph: Graph) -> torch.Tensor:
        blocks = _blocks(graph.features.shape[0])
        h = _joined([self.embed(graph.features[b]) for b in blocks])
        src, dst = graph.edges
        degree = h.new_zeros(h.shape[0]).index_add(0, dst, torch.ones_like(dst, dtype=h.dtype))
        edges = _blocks(src.shape[0])
        for layer, norm in zip(self.layers, self.norms):
            messages = torch.zeros_like(h)
            for e in edges:  # in edge order, as one index_add would sum them
                messages.index_add_(0, dst[e], h[src[e]])
            messages = messages / degree.clamp(min=1.0)[:, None]
            h = _joined([norm(h[b] + layer(torch.cat([h[b], messages[b]], dim=1))) for b in blocks])
        return h


class SymmetricHead(nn.Module):
    """MLP over a term's atom tuple, averaged over the term's symmetry group (Janossy)."""

    def __init__(self, term: Term, width: int, hidden: int, depth: int, n_out: int) -> None:
        super().__init__()
        self.term = term
        self.mlp = _mlp([term.arity * width] + [hidden] * depth + [n_out])
        last = self.mlp[-1]
        nn.init.normal_(last.weight, std=0.01)  # start near the bias: sensible values
        nn.init.zeros_(last.bias)

    def forward(self, h: torch.Tensor, tuples: torch.Tensor) -> torch.Tensor:
        # The first layer acts on the concatenation [h_t0, h_t1, ...], i.e. it is a sum of
        # one block of its weight per tuple position: those blocks are applied once per
        # atom and gathered, not once per tuple and ordering (the same function, about
        # arity x fewer multiply-adds in the largest layer).
        first, rest = self.mlp[0], self.mlp[1:]
        arity, width = self.term.arity, h.shape[1]
        hidden = first.out_features
        blocks = first.weight.view(hidden, arity, width).permute(2, 1, 0).reshape(width, arity * hidden)
        per_atom = (h @ blocks).view(-1, hidden)  # row atom * arity + position
        symmetry = self.term.symmetry
        orderings = torch.as_tensor(symmetry, device=tuples.device)  # (orderings, arity): source slots
        positions = torch.arange(arity, device=tuples.device)

        def rows(t: torch.Tensor) -> torch.Tensor:
            # every ordering of every tuple is one bag of `arity` rows of per_atom, summed in
            # position order by embedding_bag (no (tuples, arity, hidden) gather in between)
            bags = t[:, orderings].transpose(0, 1) * arity + positions  # (orderings, tuples, arity)
            x = F.embedding_bag(bags.reshape(-1, arity), per_atom, mode="sum") + first.bias
            return rest(x).view(len(symmetry), t.shape[0], rest[-1].out_features).mean(0)

        step = max(ROW_BLOCK // len(symmetry), 1)
        if tuples.shape[0] <= step:
            return rows(tuples)
        return torch.cat([rows(tuples[k:k + step]) for k in range(0, tuples.shape[0], step)])


def _two_point(raw: torch.Tensor, start: tuple[float, float], anchors: tuple[float, float]):
    """(k, x0) from two log-weights, shifted so raw = 0 gives ``start``."""
    k0, x0 = start
    b1, b2 = anchors
    w1_0 = k0 * (b2 - x0) / (b2 - b1)
    w2_0 = k0 * (x0 - b1) / (b2 - b1)
    w1 = torch.exp(raw[:, 0] + math.log(w1_0))
    w2 = torch.exp(raw[:, 1] + math.log(w2_0))
    k = w1 + w2
    return k, (w1 * b1 + w2 * b2) / k


def _signed_torsion(raw: torch.Tensor, threshold: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``|k|`` (soft-thresholded: ``max(|k| - threshold, 0)``, exact zeros below it) and
    phase 0 or pi from the sign of ``k``.

    The threshold's gradient is passed straight through (as if it were ``|k| - threshold``
    everywhere): a pruned cosine still feels the loss and comes back when the energy needs
    it, instead of sitting in a dead zone where nothing moves it.
    """
    k = TORSION_SCALE * raw
    magnitude = k.abs()
    if threshold > 0.0:
        shifted = magnitude - threshold
        magnitude = torch.relu(shifted) + (shifted - shifted.detach()) * (shifted <= 0).to(raw.dtype)
    return magnitude, math.pi * (k < 0).to(raw.dtype)


def charge_equilibration(electronegativity: torch.Tensor, hardness: torch.Tensor,
                         molecule_index: torch.Tensor, net_charges: torch.Tensor) -> torch.Tensor:
    """Charges ``q_i = -e_i/s_i + (1/s_i) (Q + sum_j e_j/s_j) / sum_j 1/s_j`` per molecule."""
    inv = 1.0 / hardness
    n_mol = net_charges.shape[0]
    sum_es = inv.new_zeros(n_mol).index_add(0, molecule_index, electronegativity * inv)
    sum_inv = inv.new_zeros(n_mol).index_add(0, molecule_index, inv)
    shift = (net_charges + sum_es) / sum_inv
    return -electronegativity * inv + inv * shift[molecule_index]


def _lj_table(dtype: torch.dtype, bounds: dict[int, tuple[float, ...]],
              device: torch.device | None = None) -> torch.Tensor:
    table = torch.tensor([_LJ_OTHER] * 119, dtype=dtype)
    for z, row in bounds.items():
        table[z] = torch.tensor(row, dtype=dtype)
    return table.to(device)


def _bounded(raw: torch.Tensor, default, low, high, log: bool = False) -> torch.Tensor:
    if log:
        default, low, high = default.log(), low.log(), high.log()
    frac = ((default - low) / (high - low)).clamp(1e-4, 1 - 1e-4)
    value = low + (high - low) * torch.sigmoid(raw + torch.logit(frac))
    return value.exp() if log else value


def nonbonded_parameters(raw: torch.Tensor, graph: Graph,
                         bounds: dict[int, tuple[float, ...]] = LJ_BOUNDS) -> NonbondedParameters:
    """Charges (charge equilibration, exact net charge per molecule) and Lennard-Jones
    (inside the element-wise ``bounds``) from the nonbonded head's four outputs per atom."""
    table = _lj_table(raw.dtype, bounds, raw.device)[graph.atomic_numbers]
    hardness = nn.functional.softplus(raw[:, 1] + 1.0) + 0.05
    charge = charge_equilibration(raw[:, 0], hardness, graph.molecule_index, graph.net_charges)
    sigma = _bounded(raw[:, 2], table[:, 0], table[:, 1], table[:, 2])
    epsilon = _bounded(raw[:, 3], table[:, 3], table[:, 4], table[:, 5], log=True)
    return NonbondedParameters(charge=charge, sigma=sigma, epsilon=epsilon)


class NonbondedNetwork(nn.Module):
    """Charges and Lennard-Jones from the graph through message passing of their own:
    trained on labels (AM1-BCC charges, Sage's sigma/epsilon), then frozen."""

    def __init__(self, width: int, depth: int, head_width: int, head_depth: int) -> None:
        super().__init__()
        self.gnn = GNN(N_FEATURES, width, depth)
        self.head = SymmetricHead(NONBONDED, width, head_width, head_depth, 4)

    def forward(self, graph: Graph) -> NonbondedParameters:
        h = self.gnn(graph)
        raw = self.head(h, graph.tuples[NONBONDED.name]).to(graph.net_charges.dtype)
        return nonbonded_parameters(raw, graph, LJ_BOUNDS_V1)


def _bond_parameters(raw: torch.Tensor, graph: Graph, config: NetworkConfig) -> BondParameters:
    k, length = _two_point(raw, BOND_START, BOND_ANCHORS)
    return BondParameters(k=k, length=length)


def _angle_parameters(raw: torch.Tensor, graph: Graph, config: NetworkConfig) -> AngleParameters:
    k, angle = _two_point(raw, ANGLE_START, ANGLE_ANCHORS)
    if config.linear_angles:
        angle = torch.where(graph.linear_angles, torch.full_like(angle, math.pi), angle)
    return AngleParameters(k=k, angle=angle)


def _proper_parameters(raw: torch.Tensor, graph: Graph, config: NetworkConfig) -> ProperParameters:
    k, phase = _signed_torsion(raw, config.torsion_threshold)
    if config.linear_angles:  # no torsion about a straight angle
        k = torch.where(graph.linear_propers[:, None], torch.zeros_like(k), k)
    if config.max_periodicity < max(PROPERS.periodicities):
        kept = torch.tensor([n <= config.max_periodicity for n in PROPERS.periodicities], device=k.device)
        k = k * kept.to(k.dtype)
    return ProperParameters(k=k, phase=phase)


def _improper_parameters(raw: torch.Tensor, graph: Graph, config: NetworkConfig) -> ImproperParameters:
    k, phase = _signed_torsion(raw, config.torsion_threshold)
    return ImproperParameters(k=k, phase=phase)


def _nonbonded_head(raw: torch.Tensor, graph: Graph, config: NetworkConfig) -> NonbondedParameters:
    return nonbonded_parameters(raw, graph)


def _urey_bradley_parameters(raw: torch.Tensor, graph: Graph, config: NetworkConfig) -> UreyBradleyParameters:
    k = UREY_BRADLEY_K_START * torch.exp(raw[:, 0])
    start, low, high = (torch.tensor(v, dtype=raw.dtype, device=raw.device) for v in UREY_BRADLEY_LENGTH)
    return UreyBradleyParameters(k=k, length=_bounded(raw[:, 1], start, low, high))


@dataclass(frozen=True)
class Head:
    """A term's head: ``n_out`` raw outputs per tuple and the transform that makes them
    valid parameters, ``transform(raw (n, n_out), graph, config) -> parameter container``."""

    n_out: int
    transform: Callable[[torch.Tensor, Graph, NetworkConfig], Any]


#: Term name -> its head. Adding a term to the network is an entry here.
HEADS: dict[str, Head] = {
    BONDS.name: Head(2, _bond_parameters),
    ANGLES.name: Head(2, _angle_parameters),
    PROPERS.name: Head(len(PROPERS.periodicities), _proper_parameters),
    IMPROPERS.name: Head(len(IMPROPERS.periodicities), _improper_parameters),
    NONBONDED.name: Head(4, _nonbonded_head),
    UREY_BRADLEYS.name: Head(2, _urey_bradley_parameters),
}


class GNNForceField(nn.Module):
    """Atom embeddings -> parameters of every term of ``config.terms`` (the required terms
    of :data:`gnnff.schema.TERMS` and the opt-in ones the config names), one
    :class:`SymmetricHead` and :data:`HEADS` transform per term.

    With ``config.nonbonded_width`` > 0 the nonbonded term has its own
    :class:`NonbondedNetwork` (attribute ``nonbonded``) and the valence network has no
    nonbonded head; otherwise one network serves every term (gnnff-industry-v0).
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.gnn = GNN(N_FEATURES, config.width, config.depth)
        own = [t for t in config.terms if not (config.separate_nonbonded and t is NONBONDED)]
        self.heads = nn.ModuleDict({
            term.name: SymmetricHead(term, config.width, config.head_width, config.head_depth,
                                     HEADS[term.name].n_out)
            for term in own
        })
        if config.separate_nonbonded:
            self.nonbonded = NonbondedNetwork(config.nonbonded_width, config.nonbonded_depth,
                                              config.head_width, config.head_depth)

    @property
    def terms(self) -> tuple[Term, ...]:
        """The terms this network predicts."""
        return self.config.terms

    def forward(self, graph: Graph, embeddings: torch.Tensor | None = None) -> ForceFieldParameters:
        """Parameters of every term; ``embeddings``: the trunk's output ``self.gnn(graph)``
        computed before (fine-tuning only the heads reuses it), else computed here."""
        h = self.gnn(graph) if embeddings is None else embeddings
        out = graph.net_charges.dtype
        containers = {name: HEADS[name].transform(head(h, graph.tuples[name]).to(out), graph, self.config)
                      for name, head in self.heads.items()}
        if self.config.separate_nonbonded:
            containers[NONBONDED.name] = self.nonbonded(graph)
        return ForceFieldParameters(**containers)

    def valence_parameters(self) -> list[nn.Parameter]:
        """The weights the gas-phase loss may change: everything but a separate nonbonded network."""
        frozen = {id(p) for p in self.nonbonded.parameters()} if self.config.separate_nonbonded else set()
        return [p for p in self.parameters() if id(p) not in frozen]


#: Architecture name -> factory(config) -> nn.Module producing ForceFieldParameters.
ARCHITECTURES: dict[str, Callable[[NetworkConfig], nn.Module]] = {"gnn": GNNForceField}


def build_network(config: NetworkConfig) -> nn.Module:
    """Instantiate the architecture ``config.architecture``."""
    try:
        factory = ARCHITECTURES[config.architecture]
    except KeyError:
        raise ModelError(
            f"unknown architecture '{config.architecture}'; known: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
    return factory(config)
