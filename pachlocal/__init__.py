"""pachlocal: run Pachyderm pipeline specs and code on one machine.

Versioned on its own (``pachlocal/pyproject.toml``), independently of any project whose
pipelines it runs; it finds their code from the specs (:mod:`pachlocal.code`).
"""

__version__ = "0.7.0"
