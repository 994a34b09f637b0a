"""Unit constants. Internally gnnff uses OpenMM's units: nm, kJ/mol, rad, e.

Convert only at I/O, by multiplying with one of the named factors below.
"""

from __future__ import annotations

import math

#: Coulomb constant 1/(4 pi eps0) in kJ mol^-1 nm e^-2, the value OpenMM 8 uses.
ONE_4PI_EPS0 = 138.93545764438198

KCAL_TO_KJ = 4.184
KJ_TO_KCAL = 1.0 / KCAL_TO_KJ
ANGSTROM_TO_NM = 0.1
NM_TO_ANGSTROM = 10.0
BOHR_TO_NM = 0.0529177210903
HARTREE_TO_KJ = 2625.4996394799
DEGREE_TO_RAD = math.pi / 180.0
#: Lennard-Jones r_min/2 to sigma: sigma = 2 * rmin_half / 2**(1/6)
RMIN_HALF_TO_SIGMA = 2.0 / 2.0 ** (1.0 / 6.0)
