"""Applications over the public API: the command line, batch mode with reports and resume,
output formats (System XML, ffxml, Amber, GROMACS), MD (`gnnff simulate`) and the template
cache of the OpenMM generator (:mod:`gnnff.openmm`).
"""

from gnnff._lazy import submodules

__getattr__ = submodules(__name__)
