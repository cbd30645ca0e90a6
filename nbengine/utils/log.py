"""``setup_logger``: ignite's one-call logger configuration (name, level, format, stream, file)."""

from __future__ import annotations

import logging
from typing import TextIO

__all__ = ["setup_logger"]


def _process_rank() -> int:
    # torch.distributed is asked directly so that nbengine.utils never imports the distributed layer.
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def setup_logger(
    name: str | None = "ignite",
    level: int = logging.INFO,
    stream: TextIO | None = None,
    format: str = "%(asctime)s %(name)s %(levelname)s: %(message)s",
    filepath: str | None = None,
    distributed_rank: int | None = None,
    reset: bool = False,
    encoding: str | None = "utf-8",
) -> logging.Logger:
    """Return the logger ``name`` configured with a stream handler (and a file handler when
    ``filepath`` is given) at ``level``, not propagating to its ancestors.

    An existing logger keeps its configuration unless ``reset``. On a process of distributed rank
    above 0 the logger gets a ``NullHandler`` only, so that one message is printed once.

    >>> import io
    >>> out = io.StringIO()
    >>> log = setup_logger("nbengine.doctest", stream=out, format="%(name)s: %(message)s", reset=True)
    >>> log.info("hello")
    >>> out.getvalue()
    'nbengine.doctest: hello\\n'
    """
    existing = name is None or name in logging.root.manager.loggerDict
    logger = logging.getLogger(name)
    if distributed_rank is None:
        distributed_rank = _process_rank()

    if distributed_rank > 0 or reset:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
    if distributed_rank > 0:
        logger.addHandler(logging.NullHandler())
    if existing and not reset:
        return logger

    if distributed_rank == 0:
        logger.setLevel(level)
        formatter = logging.Formatter(format)
        stream_handler = logging.StreamHandler(stream=stream)
        stream_handler.setLevel(level)
        stream_handler.setFormatter(formatter)
        logger.addHandler(stream_handler)
        if filepath is not None:
            file_handler = logging.FileHandler(filepath, encoding=encoding)
            file_handler.setLevel(level)
            file_handler.setFormatter(formatter)
            logger.addHandler(file_handler)
    if name is not None:
        # Handlers are attached to this logger; propagating would print each message twice.
        logger.propagate = False
    return logger
