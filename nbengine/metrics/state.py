"""One process's part of a metric's state dict: the attributes named in ``_state_dict_all_req_keys``.

Saving copies every leaf (numbers, None, strings, tensors cloned so later in-place updates never
reach a saved dict); a metric held in an attribute, or in a list or dict attribute, contributes its
own state. Loading writes each leaf back into the same place, recursing into held metrics, so a
metric that held ``{"m1": Accuracy(), "n": 3}`` holds the same Accuracy object, restored, afterwards.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nbengine.utils.tree import tree_map

__all__ = ["load_metric_state", "metric_state"]

_LEAF_TYPES = (int, float, str, torch.Tensor)


def _save_leaf(value: Any, key: Any = None, keep_config: bool = False) -> Any:
    from nbengine.metrics.metric import Metric

    if isinstance(value, Metric):
        return metric_state(value)
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if value is None or isinstance(value, _LEAF_TYPES):
        return value
    if keep_config:
        # Configuration among the state (a dtype or an index given to a MetricsLambda): not saved, kept on load.
        return None
    raise TypeError(
        "Found attribute of unsupported type. Currently, supported types include numeric types, tensor, "
        f"Metric or sequence/mapping of metrics; got {type(value).__name__} under {key!r}"
    )


def metric_state(metric: Any) -> OrderedDict:
    """This process's state of ``metric``: ``{attribute name: saved value}``."""
    keep_config = getattr(type(metric), "_state_dict_keeps_config", False)

    def save_leaf(value: Any, key: Any = None) -> Any:
        return _save_leaf(value, key, keep_config)

    state: OrderedDict[str, Any] = OrderedDict()
    for name in metric._state_dict_all_req_keys:
        if name not in metric.__dict__:
            raise ValueError(
                f"Found a value in _state_dict_all_req_keys that is not among metric attributes: {name} "
                f"({type(metric).__name__})"
            )
        state[name] = tree_map(save_leaf, metric.__dict__[name], key=name)
    return state


def load_metric_state(metric: Any, state: Mapping) -> None:
    """Write ``state`` (from :func:`metric_state`) back into ``metric``'s attributes."""
    if not isinstance(state, Mapping):
        raise TypeError(f"Argument state_dict should be a dictionary, but given {type(state)}")
    for name in metric._state_dict_all_req_keys:
        if name not in state:
            raise ValueError(f"Required state attribute '{name}' is absent in provided state_dict '{state.keys()}'")
    for name in metric._state_dict_all_req_keys:
        _restore(metric.__dict__, name, metric.__dict__.get(name), state[name])
    if "_result" in metric.__dict__:
        metric._result = None  # a cached result belongs to the accumulators just replaced


def _restore(container: dict | list, key: Any, current: Any, saved: Any) -> None:
    from nbengine.metrics.metric import Metric

    if isinstance(current, Metric):
        load_metric_state(current, saved)
    elif saved is None and current is not None and not isinstance(current, (*_LEAF_TYPES, list, dict)):
        pass  # configuration saved as None (see _save_leaf): the metric keeps its own
    elif not _holds_metric(current):
        # Plain accumulators (numbers, tensors, lists of them that may have grown): take the saved ones.
        container[key] = tree_map(_load_leaf, saved, key=key)
    elif isinstance(current, dict) and isinstance(saved, Mapping):
        for k, value in current.items():
            if k not in saved:
                raise ValueError(f"Key '{k}' from x is not found in y: {saved.keys()}")
            _restore(current, k, value, saved[k])
    elif isinstance(current, list) and isinstance(saved, Sequence) and not isinstance(saved, str):
        if len(current) != len(saved):
            raise ValueError(f"Size of y: {len(saved)} does not match the size of x: '{len(current)}'")
        for i, value in enumerate(current):
            _restore(current, i, value, saved[i])
    else:
        raise ValueError(
            f"Unsupported type for provided state_dict data: {type(saved)} under {key!r}, where the metric holds "
            f"{type(current).__name__}"
        )


def _holds_metric(value: Any) -> bool:
    from nbengine.metrics.metric import Metric

    if isinstance(value, Metric):
        return True
    if isinstance(value, Mapping):
        return any(_holds_metric(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_metric(item) for item in value)
    return False


def _load_leaf(saved: Any, key: Any = None) -> Any:
    if isinstance(saved, torch.Tensor):
        return saved.detach().clone()
    if saved is None or isinstance(saved, _LEAF_TYPES):
        return saved
    raise ValueError(f"Unsupported type for provided state_dict data: {type(saved)} under {key!r}")
