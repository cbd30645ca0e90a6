"""On one process (no process group) every ``idist`` query answers as rank 0 of 1 and every helper is a no-op."""

from __future__ import annotations

import doctest
import logging

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

import nbengine.distributed as idist
from nbengine.distributed import auto as auto_module
from nbengine.distributed import launcher as launcher_module


@pytest.mark.parametrize("module", [idist, auto_module, launcher_module])
def test_doctests_pass(module):
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


def test_queries_answer_as_one_process():
    assert (idist.get_rank(), idist.get_world_size(), idist.get_local_rank()) == (0, 1, 0)
    assert (idist.get_nproc_per_node(), idist.get_nnodes(), idist.get_node_rank()) == (1, 1, 0)
    assert idist.backend() is None
    assert idist.model_name() == "serial"
    assert idist.device() == torch.device("cpu")
    assert "gloo" in idist.available_backends()
    assert idist.has_native_dist_support and not idist.has_xla_support and not idist.has_hvd_support


def test_collectives_return_their_input():
    tensor = torch.tensor([1.0, 2.0])
    assert idist.all_reduce(tensor) is tensor
    assert idist.all_reduce(3.5, op="MAX") == 3.5
    assert idist.all_gather(tensor) is tensor
    assert idist.all_gather(4) == [4]
    assert idist.all_gather("word") == ["word"]
    assert idist.all_gather({"a": 1}) == [{"a": 1}]
    assert idist.broadcast(tensor) is tensor
    assert idist.broadcast("x", safe_mode=True) == "x"
    assert idist.all_gather_tensors_with_shapes(tensor, [[2]]) == [tensor]
    idist.barrier()
    idist.sync()
    idist.finalize()


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: idist.all_reduce("text"), TypeError, "Unhandled input type"),
        (lambda: idist.all_reduce(1, op="MEAN"), ValueError, "Unsupported reduction operation: 'MEAN'"),
        (lambda: idist.broadcast([1]), TypeError, "Unhandled input type"),
        (lambda: idist.broadcast(None), ValueError, "Source data can not be None"),
        (lambda: idist.new_group([0, "1"]), ValueError, "Argument ranks should be list of int"),
        (lambda: idist.set_local_rank(-1), ValueError, "index should be a non-negative int, got -1"),
        (lambda: idist.initialize("carrier-pigeon"), ValueError, "Backend should be one of"),
        (lambda: idist.Parallel(backend="xyz"), ValueError, "Unknown backend 'xyz'"),
        (lambda: idist.Parallel(nproc_per_node=2), ValueError, "argument 'nproc_per_node' should be also None, but given 2"),
        (lambda: idist.Parallel(backend="gloo", nproc_per_node=0), ValueError, "nproc_per_node should positive"),
        (lambda: idist.Parallel(backend="gloo", init_method="tcp://h:1"), ValueError, "will hang"),
        (lambda: idist.auto_optim("sgd"), TypeError, "should be a torch.optim.Optimizer"),
        (lambda: idist.DistributedProxySampler([1, 2], num_replicas=2, rank=0), TypeError, "instance of torch Sampler"),
    ],
)
def test_bad_input_is_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_one_rank_only_and_first_run_the_block_here():
    calls = []
    decorated = idist.one_rank_only(with_barrier=True)(lambda: calls.append("zero") or "done")
    assert decorated() == "done"
    assert idist.one_rank_only(rank=1)(lambda: calls.append("one"))() is None
    with idist.one_rank_first():
        calls.append("first")
    assert calls == ["zero", "first"]
    with pytest.raises(ValueError, match="rank should be between 0 and 0, but given 1"):
        with idist.one_rank_first(rank=1):
            pass


def test_auto_helpers_leave_a_single_process_alone():
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert idist.auto_model(model) is model
    assert idist.auto_optim(optimizer) is optimizer
    loader = idist.auto_dataloader(list(range(10)), batch_size=4, shuffle=True)
    assert isinstance(loader, DataLoader) and isinstance(loader.sampler, RandomSampler)
    assert loader.batch_size == 4 and loader.pin_memory is False
    assert isinstance(idist.auto_dataloader(list(range(3))).sampler, SequentialSampler)


def test_sharded_sampler_takes_disjoint_strides_of_one_permutation():
    generator = torch.Generator().manual_seed(5)
    order = torch.randperm(10, generator=generator).tolist()
    shards = []
    for rank in range(2):
        sampler = idist.ShardedSampler(range(10), num_replicas=2, rank=rank)
        sampler.generator = torch.Generator().manual_seed(5)
        shards.append(list(sampler))
    assert shards == [order[0::2], order[1::2]]
    plain = idist.ShardedSampler(range(10), num_replicas=2, rank=1, seed=3)
    plain.set_epoch(2)
    assert list(plain) == torch.randperm(10, generator=torch.Generator().manual_seed(5)).tolist()[1::2]


def test_show_config_logs_the_configuration(caplog):
    with caplog.at_level(logging.INFO, logger="nbengine.distributed.utils"):
        idist.show_config()
    assert "distributed configuration: serial" in caplog.text and "world size: 1" in caplog.text


def test_parallel_without_backend_runs_here_as_local_rank_zero():
    seen = []
    with idist.Parallel() as parallel:
        parallel.run(lambda local_rank, a, b=0: seen.append((local_rank, a, b)), 1, b=2)
    assert seen == [(0, 1, 2)]
