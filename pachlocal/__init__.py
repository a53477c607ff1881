"""pachlocal: run Pachyderm pipeline specs and code on one machine."""

__version__ = "0.1.0"
