"""Small helpers shared by the engine, handlers and metrics: device moves (``convert_tensor``) and seeding."""

from nbengine.utils.tensors import apply_to_tensor, apply_to_type, convert_tensor
