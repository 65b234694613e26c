"""recon: an MRI reconstruction toolkit.

Pipeline stages, each a subpackage imported only "downwards":
``io`` -> ``sampling`` -> ``operators`` -> ``coils`` -> ``solvers`` -> ``metrics`` -> ``training``, and on top the
application layer ``recon.app`` (pipeline, batch, demo, report, viz, cli). ARCHITECTURE.md has the map.

Axis and FFT conventions are stated once, in ``data_specs/conventions.md`` (and ``recon.io.types``).
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("recon-mri")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from recon.errors import ReconError, InputError, OutputError  # noqa: E402
from recon.app._aliases import install as _install_aliases  # noqa: E402

_install_aliases()  # recon.pipeline, recon.batch, ... -> recon.app.* (deprecated names, one release)
del _install_aliases

__all__ = ["__version__", "ReconError", "InputError", "OutputError", "reconstruct"]


def __getattr__(name: str):
    if name == "reconstruct":  # lazy: importing recon stays light (no torch)
        # deferred: loads torch, tqdm, which importing recon does not
        from recon.solvers.reconstruct import reconstruct

        return reconstruct
    raise AttributeError(f"module 'recon' has no attribute {name!r}")
