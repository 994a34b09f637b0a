"""Applications over the public API: the command line, batch mode with reports and resume,
output formats (System XML, ffxml, Amber, GROMACS) and MD (`gnnff simulate`), over the
OpenMM layer :mod:`gnnff.openmm`.
"""

from gnnff._lazy import submodules

__getattr__ = submodules(__name__)
