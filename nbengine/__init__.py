"""nbengine: an ignite-compatible training engine whose runs pause, step, resume and replay.

The top-level package only carries the version. Import what you need from the subpackages, with the
same paths as pytorch-ignite: ``nbengine.engine``, ``nbengine.handlers``, ``nbengine.metrics``,
``nbengine.utils``. The notebook panels live in ``nbengine.widgets``, which is the only part that
imports ipywidgets, IPython or matplotlib.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
