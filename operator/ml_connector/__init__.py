"""ml-connector: keeps Anaplan planning models fed with actuals from Infor CloudSuite."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ml-connector")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
