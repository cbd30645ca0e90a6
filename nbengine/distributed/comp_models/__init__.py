"""Which distributed frameworks this process can use, and ``_SerialModel`` (what a single process answers),
under the module paths of ignite's ``idist.comp_models``. nbengine has one computation model,
torch.distributed itself, read live by :mod:`nbengine.distributed.utils`; XLA and Horovod are not supported."""

import torch.distributed as dist

from nbengine.distributed.comp_models.base import _SerialModel

has_native_dist_support = dist.is_available()
has_xla_support = False
has_hvd_support = False

__all__ = ["_SerialModel", "has_hvd_support", "has_native_dist_support", "has_xla_support"]
