"""Small helpers shared by the engine, handlers and metrics: device moves (``convert_tensor``), seeding,
and ignite's ``setup_logger``, ``to_onehot`` and ``deprecated``."""

from nbengine.utils.checkpoint_hash import hash_checkpoint
from nbengine.utils.deprecation import deprecated
from nbengine.utils.formatting import to_str_list
from nbengine.utils.formatting import to_str_list as _to_str_list  # ignite's private name
from nbengine.utils.log import setup_logger
from nbengine.utils.onehot import to_onehot
from nbengine.utils.seed import (
    check_rng_states,
    derive_seed,
    get_rng_states,
    manual_seed,
    preserve_random_state,
    set_rng_states,
)
from nbengine.utils.tensors import apply_to_tensor, apply_to_type, convert_tensor
from nbengine.utils.tree import tree_map
from nbengine.utils.tree import tree_map as _tree_map  # ignite's private name, used by ported code

__all__ = [
    "check_rng_states",
    "derive_seed",
    "get_rng_states",
    "manual_seed",
    "preserve_random_state",
    "set_rng_states",
    "apply_to_tensor",
    "apply_to_type",
    "convert_tensor",
    "tree_map",
    "hash_checkpoint",
    "to_str_list",
    "deprecated",
    "setup_logger",
    "to_onehot",
]
