"""convert_tensor / apply_to_type: structure preserved, tensors moved, bad leaves refused with their path."""

import doctest
from collections import namedtuple

import pytest
import torch

import nbengine.utils.tensors
from nbengine.utils import apply_to_tensor, apply_to_type, convert_tensor

Pair = namedtuple("Pair", ["image", "label"])


def test_module_doctests_pass():
    result = doctest.testmod(nbengine.utils.tensors)
    assert result.attempted >= 5
    assert result.failed == 0


def test_device_none_returns_the_object_itself():
    batch = {"x": torch.ones(2), "y": [torch.zeros(1)]}
    assert convert_tensor(batch) is batch


def test_tensor_already_on_device_is_returned_as_is():
    tensor = torch.arange(3)
    assert convert_tensor(tensor, device="cpu") is tensor
    assert convert_tensor(tensor, device=torch.device("cpu")) is tensor


def test_every_tensor_moves_and_containers_keep_their_types():
    batch = {
        "pair": Pair(torch.ones(2, 2), torch.tensor(1)),
        "list": [torch.zeros(3), "name", b"raw"],
        "tuple": (torch.full((1,), 7.0),),
    }
    moved = convert_tensor(batch, device="meta")
    assert type(moved) is dict
    assert isinstance(moved["pair"], Pair)
    assert moved["pair"].image.device.type == "meta" and moved["pair"].image.shape == (2, 2)
    assert moved["pair"].label.device.type == "meta"
    assert type(moved["list"]) is list and moved["list"][1:] == ["name", b"raw"]
    assert moved["list"][0].device.type == "meta"
    assert type(moved["tuple"]) is tuple and moved["tuple"][0].device.type == "meta"
    # The source is untouched.
    assert batch["pair"].image.device.type == "cpu"


def test_a_leaf_that_is_not_a_tensor_is_refused_with_its_path():
    with pytest.raises(TypeError, match=r"x\['ids'\]\[1\] has type int; expected Tensor"):
        convert_tensor({"ids": [torch.ones(1), 5]}, device="cpu")
    with pytest.raises(TypeError, match=r"x.label has type float"):
        convert_tensor(Pair(torch.ones(1), 0.5), device="cpu")


def test_bad_device_argument_is_refused():
    with pytest.raises(TypeError, match=r"argument device should be None, a str or a torch.device, got 0 \(int\)"):
        convert_tensor(torch.ones(1), device=0)


def test_apply_to_type_and_apply_to_tensor():
    assert apply_to_type([1, (2, "s")], int, lambda v: -v) == [-1, (-2, "s")]
    doubled = apply_to_tensor({"a": torch.tensor([1, 2])}, lambda t: t * 2)
    assert torch.equal(doubled["a"], torch.tensor([2, 4]))
    with pytest.raises(TypeError, match="argument func should be callable, got int"):
        apply_to_type([1], int, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pinned_batch_moves_to_cuda_without_blocking():
    batch = (torch.ones(4, 3).pin_memory(), torch.arange(4).pin_memory())
    x, y = convert_tensor(batch, device="cuda", non_blocking=True)
    torch.cuda.synchronize()
    assert x.is_cuda and y.is_cuda
    assert torch.equal(x.cpu(), batch[0]) and torch.equal(y.cpu(), batch[1])
