"""Supervised training and evaluation: the step functions and the factories that wrap them in an Engine.

This module owns what one iteration of plain supervised learning does: prepare the batch, run the
model, compute the loss, back-propagate (optionally with gradient accumulation, automatic mixed
precision, apex or torch_xla) and step the optimizer; or, for evaluation, run the model without
gradients and hand ``(y_pred, y)`` to the metrics. The semantics are pytorch-ignite's, with two
differences: ``amp_mode="amp"`` autocasts on the device the data (or model) is on, so it works on
CPU with bfloat16 as well as on CUDA with float16; and bad arguments are refused when the step is
created, not on the first iteration.

All state lives in the model, the optimizer and the engine; a step function keeps none, so pausing
and resuming between iterations changes nothing.

As in ignite, whose factories are defined in ``ignite.engine`` itself, the factories check the
device/``amp_mode``/``scaler`` combination with ``_check_arg`` and build their step with the step
functions that ``nbengine.engine`` exports, looked up there when they are called: replacing
``nbengine.engine.supervised_training_step`` (as ignite's tests do with ``ignite.engine``) changes
what they build.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from nbengine._checks import check_callable, is_int
from nbengine.utils.tensors import convert_tensor

if TYPE_CHECKING:
    from nbengine.engine.engine import Engine
    from nbengine.metrics.metric import Metric

__all__ = [
    "create_supervised_evaluator",
    "create_supervised_trainer",
    "supervised_evaluation_step",
    "supervised_evaluation_step_amp",
    "supervised_training_step",
    "supervised_training_step_amp",
    "supervised_training_step_apex",
    "supervised_training_step_tpu",
]


def _batch_layout_error(batch: Any) -> TypeError:
    shown = f"a {type(batch).__name__}" + (f" of {len(batch)} items" if hasattr(batch, "__len__") else "")
    return TypeError(
        f"prepare_batch: the default one takes a batch (x, y) of two items, got {shown}; pass "
        "prepare_batch=fn(batch, device, non_blocking) -> (x, y) for other batch layouts"
    )


def _prepare_batch(
    batch: Any, device: str | torch.device | None = None, non_blocking: bool = False
) -> tuple[Any, Any]:
    """Split a batch into ``(x, y)`` and move both to ``device``."""
    try:
        x, y = batch
    except (TypeError, ValueError) as error:
        raise _batch_layout_error(batch) from error
    return (
        convert_tensor(x, device=device, non_blocking=non_blocking),
        convert_tensor(y, device=device, non_blocking=non_blocking),
    )


def _apply_model(model: torch.nn.Module, x: Any) -> Any:
    return model(x)


def _identity(output: Any) -> Any:
    return output


def _loss_as_float(x: Any, y: Any, y_pred: Any, loss: torch.Tensor) -> float:
    return loss.item()


def _prediction_and_target(x: Any, y: Any, y_pred: Any) -> tuple[Any, Any]:
    return y_pred, y


# Argument checks, shared by the step functions and the factories.


def _check_model(model: Any) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"Argument model should be a torch.nn.Module, got {type(model).__name__}")


def _check_optimizer(optimizer: Any) -> None:
    if not (callable(getattr(optimizer, "zero_grad", None)) and callable(getattr(optimizer, "step", None))):
        raise TypeError(
            f"Argument optimizer should be a torch.optim.Optimizer (with zero_grad() and step()), "
            f"got {type(optimizer).__name__}"
        )


def _check_callables(**callables: Any) -> None:
    for name, value in callables.items():
        check_callable(f"Argument {name}", value)


def _check_device(device: Any) -> None:
    if device is not None and not isinstance(device, (str, torch.device)):
        raise TypeError(f"Argument device should be None, a str or a torch.device, got {device!r}")


def _check_accumulation(gradient_accumulation_steps: Any) -> None:
    if not is_int(gradient_accumulation_steps) or gradient_accumulation_steps < 1:
        raise ValueError(
            "Gradient_accumulation_steps must be strictly positive. Argument gradient_accumulation_steps "
            "should be an integer >= 1 (1 means no accumulation), "
            f"got {gradient_accumulation_steps!r}"
        )


def _check_training_arguments(
    model: Any,
    optimizer: Any,
    loss_fn: Any,
    device: Any,
    prepare_batch: Any,
    model_transform: Any,
    output_transform: Any,
    gradient_accumulation_steps: Any,
    model_fn: Any,
) -> None:
    _check_model(model)
    _check_optimizer(optimizer)
    _check_device(device)
    _check_callables(
        loss_fn=loss_fn,
        prepare_batch=prepare_batch,
        model_transform=model_transform,
        output_transform=output_transform,
        model_fn=model_fn,
    )
    _check_accumulation(gradient_accumulation_steps)


def _autocast() -> Callable[..., Any]:
    """``torch.amp.autocast``, imported when an amp step is created (so a replaced one is what it uses)."""
    try:
        from torch.amp import autocast
    except ImportError as error:
        raise ImportError(
            "Please install torch>=1.12.0 to use amp_mode='amp'. amp_mode='amp' runs the forward pass under "
            "torch.amp.autocast, and torch.amp cannot be imported"
        ) from error
    return autocast


def _autocast_device_type(model: torch.nn.Module, device: str | torch.device | None) -> str:
    """The device type to autocast on: that of ``device``, else of the model's first parameter, else CPU."""
    if device is not None:
        device_type = torch.device(device).type
    else:
        device_type = next((parameter.device.type for parameter in model.parameters()), "cpu")
    if not torch.amp.autocast_mode.is_autocast_available(device_type):
        raise ValueError(f"amp_mode='amp' needs autocast support on the device, but torch has none for {device_type!r}")
    return device_type


def _mode_keeper(model: torch.nn.Module, training: bool) -> Callable[[], None]:
    """Return a function that puts ``model`` in train (or eval) mode unless all of its modules already are.

    ``model.train()`` walks the module tree through ``nn.Module.__setattr__`` (about 6 us for a 3-layer MLP,
    2% of its step); reading the flags of the modules, listed once here, costs a fortieth of that. The result
    is the same as calling ``model.train()`` every iteration, as pytorch-ignite does, for every module the
    model had when the step was created; a submodule added later is left in the mode it was given.
    """
    modules = tuple(model.modules())
    switch = model.train if training else model.eval

    def keep_mode() -> None:
        for module in modules:
            if module.training is not training:
                switch()
                return

    return keep_mode


# Training steps.


def _training_update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor] | torch.nn.Module,
    device: str | torch.device | None,
    non_blocking: bool,
    prepare_batch: Callable[..., tuple[Any, Any]],
    model_transform: Callable[[Any], Any],
    output_transform: Callable[[Any, Any, Any, torch.Tensor], Any],
    gradient_accumulation_steps: int,
    model_fn: Callable[[torch.nn.Module, Any], Any],
    *,
    forward_context: Callable[[], Any] | None = None,
    backward: Callable[[torch.Tensor], None] | None = None,
    optimizer_step: Callable[[torch.optim.Optimizer], None] | None = None,
) -> Callable[[Engine, Any], Any]:
    """The one training update every step variant is made of; the variants differ in where the
    forward pass runs (``forward_context``), how the loss is backpropagated (``backward``, default
    ``loss.backward()``) and how the optimizer steps (``optimizer_step``, default ``optimizer.step()``)."""
    steps = int(gradient_accumulation_steps)
    train_mode = _mode_keeper(model, training=True)
    # Defaults are resolved once, here, so that the common step makes as few Python calls as it can:
    # inside a training loop each costs several times its micro-benchmarked price
    # (benchmarks/bench_progress.py).
    split_only = prepare_batch is _prepare_batch and device is None
    plain_model = model_fn is _apply_model and model_transform is _identity
    loss_as_float = output_transform is _loss_as_float

    def update(engine: Engine, batch: Any) -> Any:
        if steps == 1 or (engine.state.iteration - 1) % steps == 0:
            optimizer.zero_grad()
        train_mode()
        if split_only:
            try:
                x, y = batch
            except (TypeError, ValueError) as error:
                raise _batch_layout_error(batch) from error
        else:
            x, y = prepare_batch(batch, device=device, non_blocking=non_blocking)
        if forward_context is None:
            y_pred = model(x) if plain_model else model_transform(model_fn(model, x))
            loss = loss_fn(y_pred, y)
        else:
            with forward_context():
                y_pred = model(x) if plain_model else model_transform(model_fn(model, x))
                loss = loss_fn(y_pred, y)
        # The gradients of k accumulated losses, each divided by k, are those of their mean.
        scaled_loss = loss if steps == 1 else loss / steps
        if backward is None:
            scaled_loss.backward()
        else:
            backward(scaled_loss)
        if steps == 1 or engine.state.iteration % steps == 0:
            if optimizer_step is None:
                optimizer.step()
            else:
                optimizer_step(optimizer)
        return loss.item() if loss_as_float else output_transform(x, y, y_pred, loss)

    return update


def supervised_training_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor] | torch.nn.Module,
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    prepare_batch: Callable[..., tuple[Any, Any]] = _prepare_batch,
    model_transform: Callable[[Any], Any] = _identity,
    output_transform: Callable[[Any, Any, Any, torch.Tensor], Any] = _loss_as_float,
    gradient_accumulation_steps: int = 1,
    model_fn: Callable[[torch.nn.Module, Any], Any] = _apply_model,
) -> Callable[[Engine, Any], Any]:
    """Return ``update(engine, batch)``: one step of supervised training, for ``Engine(update)``.

    Args:
        model: the model to train; it is put in train mode every iteration but never moved.
        optimizer: steps the model's parameters.
        loss_fn: ``loss_fn(y_pred, y)`` returns the loss as a 0-d tensor.
        device: where ``prepare_batch`` moves the batch (None: leave it where it is).
        non_blocking: let host-to-GPU copies of pinned memory run asynchronously.
        prepare_batch: ``prepare_batch(batch, device=, non_blocking=)`` returns ``(x, y)``.
        model_transform: turns the model's output into what ``loss_fn`` takes (``y_pred``).
        output_transform: ``output_transform(x, y, y_pred, loss)`` becomes ``engine.state.output``;
            by default the loss as a float.
        gradient_accumulation_steps: sum the gradients of this many iterations, each loss divided
            by it, before one optimizer step; the result equals one step on their concatenation
            when ``loss_fn`` averages over the batch. The step happens on iterations k, 2k, ...
            counted by ``engine.state.iteration``; ``loss`` handed to ``output_transform`` is undivided.
        model_fn: ``model_fn(model, x)`` runs the model (default ``model(x)``).
    """
    _check_training_arguments(
        model, optimizer, loss_fn, device, prepare_batch, model_transform, output_transform,
        gradient_accumulation_steps, model_fn,
    )  # fmt: skip
    return _training_update(
        model, optimizer, loss_fn, device, non_blocking, prepare_batch, model_transform, output_transform,
        gradient_accumulation_steps, model_fn,
    )  # fmt: skip


def supervised_training_step_amp(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor] | torch.nn.Module,
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    prepare_batch: Callable[..., tuple[Any, Any]] = _prepare_batch,
    model_transform: Callable[[Any], Any] = _identity,
    output_transform: Callable[[Any, Any, Any, torch.Tensor], Any] = _loss_as_float,
    scaler: torch.amp.GradScaler | None = None,
    gradient_accumulation_steps: int = 1,
    model_fn: Callable[[torch.nn.Module, Any], Any] = _apply_model,
) -> Callable[[Engine, Any], Any]:
    """Like :func:`supervised_training_step`, with the forward pass and loss under ``torch.autocast``.

    Autocast runs on the type of ``device`` (or, with ``device=None``, of the model's parameters)
    with that device's default low-precision dtype: float16 on CUDA, bfloat16 on CPU. With a
    ``scaler`` (a ``torch.amp.GradScaler``) the loss is scaled before ``backward`` and the optimizer
    is stepped through ``scaler.step`` followed by ``scaler.update``.
    """
    autocast = _autocast()
    _check_training_arguments(
        model, optimizer, loss_fn, device, prepare_batch, model_transform, output_transform,
        gradient_accumulation_steps, model_fn,
    )  # fmt: skip
    if scaler is not None and not all(callable(getattr(scaler, m, None)) for m in ("scale", "step", "update")):
        raise TypeError(f"Argument scaler should be None or a torch.amp.GradScaler, got {type(scaler).__name__}")
    device_type = _autocast_device_type(model, device)
    if scaler is None:
        return _training_update(
            model, optimizer, loss_fn, device, non_blocking, prepare_batch, model_transform, output_transform,
            gradient_accumulation_steps, model_fn, forward_context=lambda: autocast(device_type=device_type),
        )  # fmt: skip

    def scaled_step(optimizer: torch.optim.Optimizer) -> None:
        scaler.step(optimizer)
        scaler.update()

    return _training_update(
        model, optimizer, loss_fn, device, non_blocking, prepare_batch, model_transform, output_transform,
        gradient_accumulation_steps, model_fn, forward_context=lambda: autocast(device_type=device_type),
        backward=lambda loss: scaler.scale(loss).backward(), optimizer_step=scaled_step,
    )  # fmt: skip


def supervised_training_step_apex(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor] | torch.nn.Module,
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    prepare_batch: Callable[..., tuple[Any, Any]] = _prepare_batch,
    model_transform: Callable[[Any], Any] = _identity,
    output_transform: Callable[[Any, Any, Any, torch.Tensor], Any] = _loss_as_float,
    gradient_accumulation_steps: int = 1,
    model_fn: Callable[[torch.nn.Module, Any], Any] = _apply_model,
) -> Callable[[Engine, Any], Any]:
    """Like :func:`supervised_training_step`, with the loss scaled by NVIDIA apex (``apex.amp.scale_loss``).

    The model and optimizer must already have gone through ``apex.amp.initialize``. Raises
    ``ModuleNotFoundError`` naming apex when it is not installed.
    """
    try:
        from apex import amp as apex_amp
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "Please install apex from https://github.com/nvidia/apex to use amp_mode='apex'. "
            "supervised_training_step_apex (amp_mode='apex') needs NVIDIA apex, and the package 'apex' is not "
            "installed: install it from https://github.com/NVIDIA/apex, or use amp_mode='amp' (torch.amp)"
        ) from error
    _check_training_arguments(
        model, optimizer, loss_fn, device, prepare_batch, model_transform, output_transform,
        gradient_accumulation_steps, model_fn,
    )  # fmt: skip

    def apex_backward(loss: torch.Tensor) -> None:
        with apex_amp.scale_loss(loss, optimizer) as scaled_loss:
            scaled_loss.backward()

    return _training_update(
        model, optimizer, loss_fn, device, non_blocking, prepare_batch, model_transform, output_transform,
        gradient_accumulation_steps, model_fn, backward=apex_backward,
    )  # fmt: skip


def supervised_training_step_tpu(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor] | torch.nn.Module,
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    prepare_batch: Callable[..., tuple[Any, Any]] = _prepare_batch,
    model_transform: Callable[[Any], Any] = _identity,
    output_transform: Callable[[Any, Any, Any, torch.Tensor], Any] = _loss_as_float,
    gradient_accumulation_steps: int = 1,
    model_fn: Callable[[torch.nn.Module, Any], Any] = _apply_model,
) -> Callable[[Engine, Any], Any]:
    """Like :func:`supervised_training_step`, stepping through ``torch_xla``'s ``xm.optimizer_step``.

    Raises ``ModuleNotFoundError`` naming torch_xla when it is not installed.
    """
    try:
        import torch_xla.core.xla_model as xm
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "torch_xla cannot be imported, please install PyTorch XLA. "
            "supervised_training_step_tpu (an 'xla' device) needs PyTorch/XLA, and the package 'torch_xla' is not "
            "installed: see https://github.com/pytorch/xla for installation"
        ) from error
    _check_training_arguments(
        model, optimizer, loss_fn, device, prepare_batch, model_transform, output_transform,
        gradient_accumulation_steps, model_fn,
    )  # fmt: skip
    return _training_update(
        model, optimizer, loss_fn, device, non_blocking, prepare_batch, model_transform, output_transform,
        gradient_accumulation_steps, model_fn, optimizer_step=lambda opt: xm.optimizer_step(opt, barrier=True),
    )  # fmt: skip


# Evaluation steps.


def _check_evaluation_arguments(
    model: Any, device: Any, prepare_batch: Any, model_transform: Any, output_transform: Any, model_fn: Any
) -> None:
    _check_model(model)
    _check_device(device)
    _check_callables(
        prepare_batch=prepare_batch,
        model_transform=model_transform,
        output_transform=output_transform,
        model_fn=model_fn,
    )


def supervised_evaluation_step(
    model: torch.nn.Module,
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    prepare_batch: Callable[..., tuple[Any, Any]] = _prepare_batch,
    model_transform: Callable[[Any], Any] = _identity,
    output_transform: Callable[[Any, Any, Any], Any] = _prediction_and_target,
    model_fn: Callable[[torch.nn.Module, Any], Any] = _apply_model,
) -> Callable[[Engine, Any], Any]:
    """Return ``evaluate(engine, batch)``: the model in eval mode under ``torch.no_grad()``.

    ``engine.state.output`` is ``output_transform(x, y, y_pred)``, by default ``(y_pred, y)``, which
    is what the metrics in :mod:`nbengine.metrics` take. Other arguments as in
    :func:`supervised_training_step`.
    """
    _check_evaluation_arguments(model, device, prepare_batch, model_transform, output_transform, model_fn)
    eval_mode = _mode_keeper(model, training=False)

    def evaluate(engine: Engine, batch: Any) -> Any:
        eval_mode()
        with torch.no_grad():
            x, y = prepare_batch(batch, device=device, non_blocking=non_blocking)
            y_pred = model_transform(model_fn(model, x))
            return output_transform(x, y, y_pred)

    return evaluate


def supervised_evaluation_step_amp(
    model: torch.nn.Module,
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    prepare_batch: Callable[..., tuple[Any, Any]] = _prepare_batch,
    model_transform: Callable[[Any], Any] = _identity,
    output_transform: Callable[[Any, Any, Any], Any] = _prediction_and_target,
    model_fn: Callable[[torch.nn.Module, Any], Any] = _apply_model,
) -> Callable[[Engine, Any], Any]:
    """Like :func:`supervised_evaluation_step`, with the forward pass under ``torch.autocast``
    (on the device type chosen as in :func:`supervised_training_step_amp`)."""
    autocast = _autocast()
    _check_evaluation_arguments(model, device, prepare_batch, model_transform, output_transform, model_fn)
    device_type = _autocast_device_type(model, device)
    eval_mode = _mode_keeper(model, training=False)

    def evaluate(engine: Engine, batch: Any) -> Any:
        eval_mode()
        with torch.no_grad():
            x, y = prepare_batch(batch, device=device, non_blocking=non_blocking)
            with autocast(device_type=device_type):
                y_pred = model_transform(model_fn(model, x))
            return output_transform(x, y, y_pred)

    return evaluate


# Factories.


def _device_type(device: str | torch.device | None) -> str | None:
    _check_device(device)
    return None if device is None else torch.device(device).type


def _exported(name: str) -> Any:
    """What the package ``nbengine.engine`` exports as ``name``, looked up when a factory runs.

    ignite defines its factories in ``ignite.engine`` itself, so code that replaces
    ``ignite.engine.supervised_training_step`` (or ``_check_arg``) changes what they build; looking the
    step functions up here keeps that true of ``nbengine.engine``.
    """
    import nbengine.engine as package

    return getattr(package, name)


def _check_amp_mode(amp_mode: Any, allowed: tuple[str, ...]) -> None:
    if amp_mode is not None and amp_mode not in allowed:
        raise ValueError(f"Argument amp_mode should be None or one of {list(allowed)}, got {amp_mode!r}")


def _has_xla() -> bool:
    return importlib.util.find_spec("torch_xla") is not None


def _check_arg(
    on_tpu: bool, on_mps: bool, amp_mode: str | None, scaler: Any, *, device_type: str = "cuda"
) -> tuple[str | None, torch.amp.GradScaler | None]:
    """Check the combination of device, ``amp_mode`` and ``scaler`` and say how to train (ignite's helper).

    Returns ``(mode, scaler)``: ``mode`` is ``"tpu"`` on an XLA device, else ``amp_mode``; ``scaler`` is
    the GradScaler to step through, or None. ``scaler=True`` creates one for ``device_type`` (the
    device autocast runs on); a GradScaler instance is returned as given. Raises ``ValueError`` for
    ``amp_mode`` on an MPS or XLA device and for a scaler without ``amp_mode="amp"``,
    ``RuntimeError`` on XLA without torch_xla, ``TypeError`` for a scaler that is neither.
    """
    if on_mps and amp_mode:
        raise ValueError(
            "amp_mode cannot be used with mps device. Consider using amp_mode=None or device='cuda'. "
            f"Argument amp_mode={amp_mode!r} cannot be used with a 'mps' device"
        )
    if on_tpu and not _has_xla():
        raise RuntimeError(
            "In order to run on TPU, please install PyTorch XLA. Argument device is an 'xla' device, and the "
            "package 'torch_xla' is not installed: see https://github.com/pytorch/xla for installation"
        )
    if on_tpu and amp_mode:
        raise ValueError(
            "amp_mode cannot be used with xla device. Consider using amp_mode=None or device='cuda'. "
            f"Argument amp_mode={amp_mode!r} cannot be used with a 'xla' device"
        )
    if scaler is None or scaler is False:
        return ("tpu" if on_tpu else amp_mode), None
    if amp_mode != "amp":
        raise ValueError(
            f"scaler argument is {scaler}, but amp_mode is {amp_mode}. Consider using amp_mode='amp'. "
            f"Argument scaler={scaler!r} needs amp_mode='amp', got amp_mode={amp_mode!r}"
        )
    if scaler is True:
        try:
            from torch.amp import GradScaler
        except ImportError as error:
            raise ImportError(
                "Please install torch>=2.3.1 to use scaler argument. Argument scaler=True creates a "
                "torch.amp.GradScaler, and torch.amp cannot be imported"
            ) from error
        scaler = GradScaler(device_type)
    elif not all(callable(getattr(scaler, method, None)) for method in ("scale", "step", "update")):
        raise TypeError(f"Argument scaler should be a bool or a torch.amp.GradScaler, got {type(scaler).__name__}")
    return ("tpu" if on_tpu else amp_mode), scaler


def _scaler_device_type(model: Any, device: str | torch.device | None) -> str:
    """The device type a created GradScaler is for: that of ``device``, else of the model's parameters."""
    if device is not None:
        return torch.device(device).type
    if isinstance(model, torch.nn.Module):
        return next((parameter.device.type for parameter in model.parameters()), "cpu")
    return "cpu"


def create_supervised_trainer(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor] | torch.nn.Module,
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    prepare_batch: Callable[..., tuple[Any, Any]] = _prepare_batch,
    model_transform: Callable[[Any], Any] = _identity,
    output_transform: Callable[[Any, Any, Any, torch.Tensor], Any] = _loss_as_float,
    deterministic: bool = False,
    amp_mode: str | None = None,
    scaler: bool | torch.amp.GradScaler = False,
    gradient_accumulation_steps: int = 1,
    model_fn: Callable[[torch.nn.Module, Any], Any] = _apply_model,
) -> Engine:
    """Return an Engine (a DeterministicEngine with ``deterministic=True``) that trains ``model``.

    The step is chosen from the arguments: :func:`supervised_training_step_tpu` for an ``'xla'``
    device, :func:`supervised_training_step_amp` for ``amp_mode='amp'``,
    :func:`supervised_training_step_apex` for ``amp_mode='apex'``, else
    :func:`supervised_training_step`; see them for the other arguments. ``scaler=True`` (only with
    ``amp_mode='amp'``) creates a ``torch.amp.GradScaler`` for the autocast device and stores it as
    ``trainer.state.scaler`` so it can be checkpointed; a GradScaler instance is used as given.
    ``engine.state.output`` is the loss as a float by default.

    The model is never moved: move it to its device before creating the optimizer.
    """
    device_type = _device_type(device)
    _check_amp_mode(amp_mode, ("amp", "apex"))
    if not isinstance(deterministic, bool):
        raise TypeError(f"Argument deterministic should be a bool, got {deterministic!r}")
    mode, step_scaler = _exported("_check_arg")(
        device_type == "xla", device_type == "mps", amp_mode, scaler, device_type=_scaler_device_type(model, device)
    )
    arguments = (model, optimizer, loss_fn, device, non_blocking, prepare_batch, model_transform, output_transform)
    if mode == "tpu":
        update = _exported("supervised_training_step_tpu")(*arguments, gradient_accumulation_steps, model_fn)
    elif mode == "amp":
        update = _exported("supervised_training_step_amp")(
            *arguments, step_scaler, gradient_accumulation_steps, model_fn
        )
    elif mode == "apex":
        update = _exported("supervised_training_step_apex")(*arguments, gradient_accumulation_steps, model_fn)
    else:
        update = _exported("supervised_training_step")(*arguments, gradient_accumulation_steps, model_fn)

    if deterministic:
        from nbengine.engine.deterministic import DeterministicEngine

        trainer = DeterministicEngine(update)
    else:
        from nbengine.engine.engine import Engine

        trainer = Engine(update)
    if scaler is True and step_scaler is not None:
        # Created here, so only the engine knows it: kept in the state to be checkpointed.
        trainer.state.scaler = step_scaler
    return trainer


def create_supervised_evaluator(
    model: torch.nn.Module,
    metrics: Mapping[str, Metric] | None = None,
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    prepare_batch: Callable[..., tuple[Any, Any]] = _prepare_batch,
    model_transform: Callable[[Any], Any] = _identity,
    output_transform: Callable[[Any, Any, Any], Any] = _prediction_and_target,
    amp_mode: str | None = None,
    model_fn: Callable[[torch.nn.Module, Any], Any] = _apply_model,
) -> Engine:
    """Return an Engine that runs ``model`` without gradients and computes ``metrics`` every epoch.

    ``metrics`` maps names to metrics; each is attached epoch-wise, so after ``evaluator.run(data)``
    its value is in ``evaluator.state.metrics[name]``. ``amp_mode='amp'`` runs the forward pass
    under autocast (:func:`supervised_evaluation_step_amp`). Other arguments as in
    :func:`supervised_evaluation_step`.
    """
    from nbengine.engine.engine import Engine
    from nbengine.metrics.metric import Metric

    device_type = _device_type(device)
    _check_amp_mode(amp_mode, ("amp",))
    mode, _ = _exported("_check_arg")(device_type == "xla", device_type == "mps", amp_mode, None)
    if metrics is None:
        metrics = {}
    if not isinstance(metrics, Mapping):
        raise TypeError(f"Argument metrics should be a dict of name -> Metric, got {type(metrics).__name__}")
    for name, metric in metrics.items():
        if not isinstance(name, str) or not isinstance(metric, Metric):
            raise TypeError(
                f"Argument metrics should map str names to Metric instances, got {name!r}: {type(metric).__name__}"
            )

    step = _exported("supervised_evaluation_step_amp" if mode == "amp" else "supervised_evaluation_step")
    evaluator = Engine(
        step(
            model,
            device,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            model_transform=model_transform,
            output_transform=output_transform,
            model_fn=model_fn,
        )
    )
    for name, metric in metrics.items():
        metric.attach(evaluator, name)
    return evaluator
