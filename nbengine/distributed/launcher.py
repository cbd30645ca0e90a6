"""``Parallel`` and ``spawn``: run a function on every rank of a torch.distributed job (ignite's launcher).

Three ways, chosen by the arguments:

- ``Parallel()`` (no backend): the function runs here, once, as local rank 0;
- ``Parallel(backend="gloo")`` inside processes that ``torchrun`` started: entering it joins the
  process group that the launcher's environment describes (``init_method="env://"``) unless one exists,
  and leaving it destroys the group it made;
- ``Parallel(backend="gloo", nproc_per_node=N)``: ``run`` starts N processes, each joins the group and
  calls the function with its local rank. If a process fails, the others are terminated and ``run``
  raises, naming the rank.

  - In a script: torch.multiprocessing with the ``spawn`` start method (``start_method=`` chooses
    another); failures raise torch's ``ProcessRaisedException`` / ``ProcessExitedException``. A
    ``fork`` after CUDA was initialised here is refused before anything starts: the children would
    crash with "Cannot re-initialize CUDA in forked subprocess".
  - Inside IPython (a Jupyter kernel, the IPython shell): never ``fork`` (ignite's choice there, which
    copies a kernel's threads and breaks on CUDA, accelerate#3925, Lightning-AI#21389) and never
    ``spawn`` (it cannot find functions defined in cells). The ranks are started by
    :func:`nbengine.distributed.notebook_launcher.launch`: fresh interpreters that receive the function
    by value, print into the cell, and stop together; a rank's failure raises ``RankError``. CUDA
    initialised in the kernel is refused with what to do. ``start_method`` is then ignored. One node
    only (``nnodes=1``, ``init_method`` None or ``env://``).

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
    in each; returns when all have finished (``join=False`` in ``kwargs`` returns the process context, or
    from IPython the ``RankJob`` of ``notebook_launcher.launch``)."""
    if backend not in idist.available_backends():
        raise ValueError(f"Backend should be one of '{idist.available_backends()}', got {backend!r}")
    given_port = master_port
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
    start_method = kwargs.pop("start_method", "spawn")
    if "__IPYTHON__" in builtins.__dict__:
        return _spawn_from_ipython(backend, fn, args, kwargs_dict, {**topology, "master_port": given_port},
                                   init_method, timeout, start_method, join=kwargs.pop("join", True))
    if start_method == "fork":
        refuse_cuda_before_fork()
    return mp.start_processes(
        _rank_main,
        args=(backend, fn, tuple(args), dict(kwargs_dict or {}), topology, init_kwargs),
        nprocs=nproc_per_node,
        join=kwargs.pop("join", True),
        daemon=kwargs.pop("daemon", False),
        start_method=start_method,
    )


def refuse_cuda_before_fork(cuda: Any = None) -> None:
    """Raise ``RuntimeError`` when this process initialised CUDA (or is itself a bad fork): a forked
    child could not use CUDA and would crash in the middle of the job."""
    if cuda is None:
        import torch.cuda as cuda
    if cuda._is_in_bad_fork() or cuda.is_initialized():
        raise RuntimeError(
            "Cannot start ranks with start_method='fork': CUDA is already initialised in this process "
            "(torch.cuda.is_initialized() is True), and a forked child cannot re-initialise it. Use "
            "start_method='spawn' (the default), or create CUDA tensors only inside the function each rank runs."
        )


def _spawn_from_ipython(backend: str, fn: Callable, args: tuple, kwargs_dict: Mapping | None, topology: Mapping,
                        init_method: str | None, timeout: Any, start_method: str, join: bool) -> Any:
    """``spawn`` from IPython: the ranks are fresh interpreters started by ``notebook_launcher.launch``."""
    from nbengine.distributed.notebook_launcher import launch

    if topology["world_size"] != topology["nproc_per_node"] or init_method not in (None, "env://"):
        raise ValueError(
            "From IPython, ranks are started on this host only by notebook_launcher.launch: nnodes should be 1 "
            f"and init_method None or 'env://', but given nnodes={topology['world_size'] // topology['nproc_per_node']} "
            f"and init_method={init_method!r}; run a multi-node job from a script with torchrun"
        )
    _logger.info("From IPython: %s ranks started by notebook_launcher.launch (start_method=%r not used)",
                 topology["nproc_per_node"], start_method)
    job = launch(fn, tuple(args), dict(kwargs_dict or {}), nproc_per_node=topology["nproc_per_node"],
                 backend=backend, master_addr=topology["master_addr"], master_port=topology["master_port"],
                 init_timeout=timeout)
    if not join:
        return job
    job.wait()
    return None


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
