"""The application layer: what a user runs, on top of the library.

``pipeline`` (one raw file in, one reconstruction out), ``batch`` (folders of files, resume, workers, Dask),
``demo``, ``report`` (HTML reports, figures, panels), ``viz`` (notebook figures), ``cli`` (the ``recon``
command), ``runtime`` (thread policy) and ``memory`` (heap policy). The library packages (``io``,
``sampling``, ``operators``, ``coils``, ``simulate``, ``solvers``, ``metrics``, ``training``) never import
from here (``tests/test_architecture.py``).

The modules used to live at the top of the package (``recon.pipeline``, ``recon.batch``, ...); those names
still import, as the same module objects, with a :class:`DeprecationWarning` (:mod:`recon.app._aliases`), for
one release.
"""
