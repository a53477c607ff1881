"""pachlocal: run Pachyderm pipeline specs and code on one machine."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lens-trust-feed")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
