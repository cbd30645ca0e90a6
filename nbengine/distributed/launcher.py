"""``Parallel`` and ``spawn``: run a function on every rank of a torch.distributed job (ignite's launcher).

Three ways, chosen by the arguments:

- ``Parallel()`` (no backend): the function runs here, once, as local rank 0;
- ``Parallel(backend="gloo")`` inside processes that ``torchrun`` started: entering it joins the
  process group that the launcher's environment describes (``init_method="env://"``) unless one exists,
  and leaving it destroys the group it made;
- ``Parallel(backend="gloo", nproc_per_node=N)``: ``run`` starts N processes (``spawn`` start method,
  ``fork`` inside IPython), each joins the group and calls the function with its local rank. If a
  process fails, the others are terminated and ``run`` raises (torch.multiprocessing's
  ``ProcessRaisedException`` / ``ProcessExitedException``, naming the rank).

Without ``master_port`` a free port on ``master_addr`` (127.0.0.1 by default) is chosen for a spawned job.
"""

from __future__ import annotations

import builtins
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

import torch.multiprocessing as mp

from nbengine.distributed import utils as idist

__all__ = ["Parallel", "spawn"]

_logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _rank_main(local_rank: int, backend: str, fn: Callable, args: tuple, kwargs: Mapping, topology: Mapping,
               init_kwargs: Mapping) -> None:
    """Body of one spawned process: set the launcher's environment, join the group, run, leave."""
    rank = topology["node_rank"] * topology["nproc_per_node"] + local_rank
    os.environ.update(
        LOCAL_RANK=str(local_rank),
        RANK=str(rank),
        WORLD_SIZE=str(topology["world_size"]),
        LOCAL_WORLD_SIZE=str(topology["nproc_per_node"]),
        MASTER_ADDR=str(topology["master_addr"]),
        MASTER_PORT=str(topology["master_port"]),
    )
    init = dict(init_kwargs)
    if init.get("init_method") not in (None, "env://"):
        init.update(rank=rank, world_size=topology["world_size"])
    idist.initialize(backend, **init)
    try:
        fn(local_rank, *args, **kwargs)
        # Rank 0 hosts the job's store: no rank may leave while another still uses it.
        idist.barrier()
    finally:
        idist.finalize()


def spawn(backend: str, fn: Callable, args: tuple, kwargs_dict: Mapping | None = None, nproc_per_node: int = 1,
          nnodes: int = 1, node_rank: int = 0, master_addr: str | None = None, master_port: int | None = None,
          init_method: str | None = None, **kwargs: Any) -> None:
    """Start ``nproc_per_node`` processes of a ``backend`` job and call ``fn(local_rank, *args, **kwargs_dict)``
    in each; returns when all have finished (``join=False`` in ``kwargs`` returns the process context)."""
    if backend not in idist.available_backends():
        raise ValueError(f"Backend should be one of '{idist.available_backends()}', got {backend!r}")
    if init_method in (None, "env://"):
        master_addr = master_addr or os.environ.get("MASTER_ADDR", "127.0.0.1")
        master_port = master_port or free_port(master_addr)
    elif master_addr is not None or master_port is not None:
        raise ValueError("master_addr should be None if init_method is provided other then 'env://'")
    timeout = kwargs.pop("timeout", None)
    init_kwargs = {"init_method": init_method, **({"timeout": timeout} if timeout is not None else {})}
    topology = {
        "nproc_per_node": nproc_per_node,
        "node_rank": node_rank,
        "world_size": nnodes * nproc_per_node,
        "master_addr": master_addr,
        "master_port": master_port,
    }
    start_method = kwargs.pop("start_method", "fork" if "__IPYTHON__" in builtins.__dict__ else "spawn")
    return mp.start_processes(
        _rank_main,
        args=(backend, fn, tuple(args), dict(kwargs_dict or {}), topology, init_kwargs),
        nprocs=nproc_per_node,
        join=kwargs.pop("join", True),
        daemon=kwargs.pop("daemon", False),
        start_method=start_method,
    )


class Parallel:
    """Context manager that runs a function on every rank of a job (see the module docstring for the modes).

    >>> with Parallel() as parallel:
    ...     parallel.run(lambda local_rank, word: print(local_rank, word), "alone")
    0 alone
    """

    def __init__(self, backend: str | None = None, nproc_per_node: int | None = None, nnodes: int | None = None,
                 node_rank: int | None = None, master_addr: str | None = None, master_port: int | None = None,
                 init_method: str | None = None, **spawn_kwargs: Any) -> None:
        if backend is not None:
            if backend not in idist.available_backends():
                raise ValueError(f"Unknown backend '{backend}'. Available backends: {idist.available_backends()}")
        else:
            named = {"nproc_per_node": nproc_per_node, "nnodes": nnodes, "node_rank": node_rank,
                     "master_addr": master_addr, "master_port": master_port}
            for name, value in named.items():
                if value is not None:
                    raise ValueError(f"If backend is None, argument '{name}' should be also None, but given {value}")
        if init_method is not None and init_method.startswith("tcp://"):
            raise ValueError(
                f"TCP initialization via init_method='{init_method}' will hang. "
                "To fix this, please configure MASTER_ADDR and MASTER_PORT in the environment and "
                "use 'env://' (or omit init_method)."
            )
        self.backend = backend
        self.init_method = init_method
        self._spawn_params: dict | None = None
        self._made_group = False
        if backend is not None and nproc_per_node is not None:
            self._spawn_params = self._setup_spawn_params(
                nproc_per_node, nnodes, node_rank, master_addr, master_port, init_method, **spawn_kwargs
            )

    @staticmethod
    def _setup_spawn_params(nproc_per_node: int, nnodes: int | None = None, node_rank: int | None = None,
                            master_addr: str | None = None, master_port: int | None = None,
                            init_method: str | None = None, **spawn_kwargs: Any) -> dict:
        if nproc_per_node < 1:
            raise ValueError(f"Argument nproc_per_node should positive, but given {nproc_per_node}")
        nnodes = 1 if nnodes is None else nnodes
        if nnodes < 1:
            raise ValueError(f"Argument nnodes should positive, but given {nnodes}")
        if node_rank is None:
            if nnodes > 1:
                raise ValueError("If number of nodes larger than one, arguments node_rank should be given")
            node_rank = 0
        if node_rank >= nnodes or node_rank < 0:
            raise ValueError(f"Argument node_rank should be between 0 and {nnodes - 1}, but given {node_rank}")
        if nnodes > 1 and (master_addr is None or master_port is None) and init_method is None:
            raise ValueError(
                "If number of nodes larger than one, arguments master_addr and master_port or init_method "
                f"should be specified, but given master_addr={master_addr}, master_port={master_port} and "
                f"init_method={init_method}."
            )
        params = {"nproc_per_node": nproc_per_node, "nnodes": nnodes, "node_rank": node_rank,
                  "master_addr": master_addr, "master_port": master_port, "init_method": init_method, **spawn_kwargs}
        return {key: value for key, value in params.items() if value is not None}

    def run(self, func: Callable, *args: Any, **kwargs: Any) -> None:
        """Call ``func(local_rank, *args, **kwargs)`` on every rank of the job."""
        if self._spawn_params is not None and self.backend is not None:
            _logger.info("Spawn %r in %s processes", func, self._spawn_params["nproc_per_node"])
            spawn(self.backend, func, args=args, kwargs_dict=kwargs, **self._spawn_params)
        else:
            func(idist.get_local_rank(), *args, **kwargs)

    def __enter__(self) -> Parallel:
        if self.backend is not None and self._spawn_params is None and not idist.model_name() == "native-dist":
            idist.initialize(self.backend, init_method=self.init_method)
            self._made_group = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._made_group:
            idist.finalize()
            self._made_group = False
