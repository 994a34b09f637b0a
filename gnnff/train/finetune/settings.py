"""The settings of a fine-tuning run (:class:`FinetuneSettings`), validated and recorded in the checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from gnnff.errors import InputError
from gnnff.schema import NONBONDED

__all__ = ["DEFAULT_ENERGIES", "TUNES", "FinetuneSettings"]

#: what fine-tuning may change (:attr:`FinetuneSettings.tune`)
TUNES = ("torsions", "heads")
#: the default weight of the energies at the labeler's geometries, per ``tune``: torsion
#: residuals cannot fix the bond and angle errors that dominate the energies of the
#: off-equilibrium samples, and at weight 1 they bent the profiles to absorb them (on the
#: development ligands: held-out profile RMSE -30 %, 3 of 8 scans better; at 0.1: -60 %, 8 of 8)
DEFAULT_ENERGIES = {"heads": 1.0, "torsions": 0.1}


@dataclass(frozen=True)
class FinetuneSettings:
    """Every choice of a fine-tuning run (recorded in the checkpoint).

    ``scans``: at most this many torsions per molecule (None: every one found);
    ``step``: grid spacing of the drives, degrees; ``samples``: off-equilibrium
    geometries per fitted grid point, displaced by ``displacement`` nm (standard deviation
    per coordinate); ``hold_out``: every ``hold_out``-th grid point is held out (0: none);
    ``hold_out_scans``: each molecule with two or more scans also keeps its last scan
    out of the fit entirely (reported apart: the test of torsions never fitted);
    ``steps``/``learning_rate``/``schedule``: Adam on the valence heads, its step size
    decayed to zero along a cosine (``"cosine"``) or held (``"constant"``); ``profile``, ``energies``,
    ``forces``: loss weights (relaxed profiles, energies and forces at the labeler's
    geometries); ``pull``, ``anchor``: weights of the pull to the base model on the
    driven bonds' torsions and on everything else; ``relax_every``: steps between
    re-minimisations of the profile points; ``similarity``: Tanimoto below which a molecule is far from the series;
    ``terms``: the valence heads trained (default: all of them); ``conformers``: at most
    this many conformers per molecule embedded from its graph (RDKit ETKDG, seeded) and
    minimised with the labeler, fitted as energies and forces at the labeler's minima (0:
    none) and, with ``relax_conformers``, as relaxed relative energies (weight ``profile``).
    ``tune``: what the fit changes. ``"torsions"`` (default): nothing of the network, only
    per-environment residuals on the proper torsions about the driven bonds
    (:mod:`gnnff.nn.corrections`; ``pull`` weighs them, ``anchor`` does not apply and
    ``terms`` is refused): every other parameter of every molecule stays the base model's
    bit for bit. ``"heads"``: the valence heads' weights (every molecule's valence terms
    move, held near the base by ``pull``/``anchor``). ``energies`` None: the weight
    :data:`DEFAULT_ENERGIES` gives ``tune``.
    """

    labeler: str = "ani-2x"
    base: str | None = None
    scans: int | None = None
    step: float = 15.0
    samples: int = 2
    displacement: float = 0.003
    hold_out: int = 2
    hold_out_scans: bool = False
    steps: int = 300
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    profile: float = 1.0
    relax_every: int = 25
    energies: float | None = None
    forces: float = 0.02
    pull: float = 0.01
    anchor: float = 1.0
    similarity: float = 0.35
    terms: tuple[str, ...] | None = None
    conformers: int = 0
    relax_conformers: bool = True
    tune: str = "torsions"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tune not in TUNES:
            raise InputError(f"finetune: tune must be one of {', '.join(TUNES)}, got {self.tune!r}")
        if self.tune == "torsions" and self.terms is not None:
            raise InputError(f"finetune: --terms {','.join(self.terms)} chooses the heads that --tune heads trains; "
                             "--tune torsions fits torsion residuals only: drop --terms or add --tune heads")
        if self.energies is None:  # frozen: the resolved weight is what the checkpoint records
            object.__setattr__(self, "energies", DEFAULT_ENERGIES[self.tune])
        for name in ("samples", "hold_out", "steps", "profile", "energies", "forces", "pull", "anchor",
                     "conformers"):
            if getattr(self, name) < 0:
                raise InputError(f"finetune: {name} must be >= 0, got {getattr(self, name)}")
        if self.scans is not None and self.scans < 1:
            raise InputError(f"finetune: --scans must be 'auto' or a number >= 1, got {self.scans}")
        if self.terms is not None and NONBONDED.name in self.terms:
            raise InputError("finetune: --terms cannot include nonbonded; charges and Lennard-Jones stay frozen")
        if self.relax_every < 1:
            raise InputError(f"finetune: relax_every must be >= 1, got {self.relax_every}")
        if self.schedule not in ("cosine", "constant"):
            raise InputError(f"finetune: schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.hold_out == 1:
            raise InputError("finetune: --hold-out 1 would hold every point out; use 0 (none) or >= 2")
