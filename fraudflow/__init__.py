"""fraudflow: real-time fraud detection core library."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fraudflow")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
