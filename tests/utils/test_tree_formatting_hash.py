"""tree_map, to_str_list and hash_checkpoint: exact outputs (ignite's names: _tree_map, _to_str_list, hash_checkpoint)."""

import collections
import doctest
import hashlib

import pytest
import torch

import nbengine.utils.checkpoint_hash
import nbengine.utils.formatting
import nbengine.utils.tree
from nbengine.utils import _to_str_list, _tree_map, hash_checkpoint, to_str_list, tree_map


@pytest.mark.parametrize(
    "module", [nbengine.utils.checkpoint_hash, nbengine.utils.formatting, nbengine.utils.tree], ids=str
)
def test_doctests(module):
    result = doctest.testmod(module, extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0


def test_tree_map_keeps_container_types_and_passes_keys():
    Point = collections.namedtuple("Point", "x y")
    tree = {"a": [1, (2, 3)], "p": Point(4, 5), "s": "text"}
    mapped = tree_map(lambda leaf, key: leaf if isinstance(leaf, str) else (key, leaf * 2), tree)
    assert mapped == {"a": [(0, 2), ((0, 4), (1, 6))], "p": Point((None, 8), (None, 10)), "s": "text"}
    assert type(mapped["p"]) is Point
    assert _tree_map is tree_map and _to_str_list is to_str_list


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (3, ["3.0000"]),
        ({"loss": torch.tensor(0.5), "lr": 1e-3}, ["loss: 0.5000", "lr: 0.0010"]),
        ({"vector": torch.arange(12.0)}, ["vector: [" + ", ".join(f"{i}.0000" for i in range(10)) + ", ...]"]),
        ({"matrix": torch.zeros(2, 3)}, ["matrix: Shape[2, 3]"]),
        ([{"a": [1, 2]}, {"b": None}], ["a: 1.0000, 2.0000", "b: "]),
        ({"empty": (), "nested": {"x": 1}}, ["empty: ", "x: 1.0000"]),
        ("text", []),
    ],
)
def test_to_str_list(data, expected):
    assert to_str_list(data) == expected


def test_hash_checkpoint_moves_the_file_under_its_hash(tmp_path):
    source = tmp_path / "net.pt"
    torch.save({"w": torch.arange(3)}, source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    path, sha_hash = hash_checkpoint(str(source), str(tmp_path / "out"))
    assert sha_hash == digest
    assert path == tmp_path / "out" / f"net-{digest[:8]}.pt"
    assert not source.exists()
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))
    with pytest.raises(FileNotFoundError, match=r"not_there.pt does not exist in .*"):
        hash_checkpoint(tmp_path / "not_there.pt", tmp_path)
