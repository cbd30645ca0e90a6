"""Saving and loading a 100 MB checkpoint (model + SGD momentum + engine state), side by side in one run.

Save: ``torch.save`` + fsync of the same dict (the reference), a raw write + fsync of as many bytes,
nbengine's ``Checkpoint`` handler with a ``DiskSaver`` (temporary file, fsync, ``os.replace``, folder
fsync, removal of the previous file), and pytorch-ignite's ``Checkpoint`` + ``DiskSaver`` when it is
installed (it does not fsync).

Load (the file hot in the page cache): a raw read of the file (the reference), ``torch.load(...,
weights_only=True)`` (checks no CRC), nbengine's ``load_checkpoint`` (every byte CRC-checked, read
and checked in one pass split across threads), the same with ``mmap=True``, integrity checking alone,
and ``Checkpoint.load_objects`` into the model and optimizer. Listing reads trailers only.

Repetitions of the cases are interleaved so drift hits them alike; medians are reported, with ratios.
The raw read allocates one fresh 100 MB buffer each time (new pages to fault in), while torch's
storages of a few MB reuse freed heap memory, which is why ``torch.load`` can beat the raw read. The
CRC-32 (zlib, about 6.5 GB/s on one core here) is the whole cost of checking; it is split across the
CPUs this process may use, so the load ratio is best on an idle machine.

    python benchmarks/bench_checkpoint.py [--quick] [--dir FOLDER] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import torch

from nbengine.engine import Engine
from nbengine.handlers import Checkpoint, DiskSaver, list_checkpoints, load_checkpoint, verify_checkpoint

try:
    import ignite.engine as ignite_engine
    import ignite.handlers as ignite_handlers
except ImportError:  # the table still shows nbengine against torch and the raw disk
    ignite_engine = ignite_handlers = None

SAVE_BUDGET = 1.2  # x torch.save + fsync
LOAD_BUDGET = 1.15  # x raw read


def build_state() -> tuple[torch.nn.Module, torch.optim.Optimizer, Engine]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) for _ in range(12)])  # 48 MB of weights
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model(torch.randn(2, 1024)).sum().backward()
    optimizer.step()  # 48 MB of momentum buffers
    trainer = Engine(lambda engine, batch: None)
    trainer.run([0, 1, 2], max_epochs=1)
    return model, optimizer, trainer


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions instead of 11")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the run")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    repetitions = 3 if args.quick else 11

    root = Path(tempfile.mkdtemp(prefix="bench-checkpoint-", dir=args.dir))
    try:
        model, optimizer, trainer = build_state()
        to_save = {"trainer": trainer, "model": model, "optimizer": optimizer}
        state = {key: obj.state_dict() for key, obj in to_save.items()}
        payload_mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) * 2 / 2**20

        torch_path = root / "torch" / "checkpoint.pt"
        torch_path.parent.mkdir()
        raw_path = root / "raw" / "blob.bin"
        raw_path.parent.mkdir()
        ours = Checkpoint(to_save, DiskSaver(root / "nbengine"), n_saved=1)

        def torch_save() -> None:
            torch.save({key: obj.state_dict() for key, obj in to_save.items()}, torch_path)
            fsync_path(torch_path)

        torch_save()
        blob = os.urandom(1 << 20) * (torch_path.stat().st_size >> 20)

        def raw_write() -> None:
            with open(raw_path, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())

        iteration = [0]

        def nbengine_save() -> None:
            iteration[0] += 1
            trainer.state.iteration = iteration[0]  # a new file name each time, the previous one removed
            ours(trainer)

        save_cases: dict[str, Callable[[], None]] = {
            "torch.save + fsync": torch_save,
            "raw write + fsync": raw_write,
            "nbengine Checkpoint": nbengine_save,
        }
        if ignite_handlers is not None:
            ignite_trainer = ignite_engine.Engine(lambda engine, batch: None)
            ignite_trainer.run([0, 1, 2], max_epochs=1)
            theirs = ignite_handlers.Checkpoint(
                {"trainer": ignite_trainer, "model": model, "optimizer": optimizer},
                ignite_handlers.DiskSaver(root / "ignite"),
                n_saved=1,
            )

            def ignite_save() -> None:
                ignite_trainer.state.iteration += 1
                theirs(ignite_trainer)

            save_cases["ignite Checkpoint (no fsync)"] = ignite_save

        # Loads read a file of their own: the saves above rotate theirs away.
        ours_path = DiskSaver(root / "load")(state, "checkpoint.pt", {"iteration": trainer.state.iteration})
        to_load = {"model": model, "optimizer": optimizer}
        load_cases: dict[str, Callable[[], object]] = {
            "raw read": lambda: ours_path.read_bytes(),
            "torch.load (no CRC check)": lambda: torch.load(ours_path, weights_only=True),
            "nbengine load_checkpoint": lambda: load_checkpoint(ours_path),
            "nbengine load_checkpoint mmap": lambda: load_checkpoint(ours_path, mmap=True),
            "nbengine verify only": lambda: verify_checkpoint(ours_path),
            "zlib.crc32 of the file bytes": None,
            "Checkpoint.load_objects": lambda: Checkpoint.load_objects(to_load, ours_path),
            "Checkpoint.load_objects mmap": lambda: Checkpoint.load_objects(to_load, ours_path, mmap=True),
        }
        file_bytes = ours_path.read_bytes()
        load_cases["zlib.crc32 of the file bytes"] = lambda: zlib.crc32(file_bytes)

        save_times: dict[str, list[float]] = {name: [] for name in save_cases}
        load_times: dict[str, list[float]] = {name: [] for name in load_cases}
        for _ in range(repetitions):
            for name, fn in save_cases.items():
                save_times[name].append(timed(fn))
            for name, fn in load_cases.items():
                load_times[name].append(timed(fn))
        listing = [timed(lambda: list_checkpoints(ours_path.parent)) for _ in range(50)]

        print(
            f"checkpoint of {payload_mb:.1f} MB of tensors ({ours_path.stat().st_size / 2**20:.1f} MB file), "
            f"{repetitions} interleaved repetitions, torch {torch.__version__}, {torch.get_num_threads()} torch "
            f"threads, {os.cpu_count()} CPUs, folder {root}"
        )
        report("save", save_times, "torch.save + fsync")
        report("load", load_times, "raw read")
        print(f"\nlist_checkpoints (1 file): median {statistics.median(listing) * 1e6:.0f} us")

        save_ratio = statistics.median(save_times["nbengine Checkpoint"]) / statistics.median(
            save_times["torch.save + fsync"]
        )
        load_ratio = statistics.median(load_times["nbengine load_checkpoint"]) / statistics.median(
            load_times["raw read"]
        )
        print(
            f"\nbudgets: save {save_ratio:.2f}x torch.save+fsync (budget <= {SAVE_BUDGET}x: "
            f"{'met' if save_ratio <= SAVE_BUDGET else 'NOT met'}); load {load_ratio:.2f}x raw read "
            f"(budget <= {LOAD_BUDGET}x: {'met' if load_ratio <= LOAD_BUDGET else 'NOT met'})"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(title: str, times: dict[str, list[float]], reference: str) -> None:
    base = statistics.median(times[reference])
    print(f"\n{title:<34} {'median ms':>10} {'min ms':>8} {'ratio':>7}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<32} {median * 1e3:10.1f} {min(values) * 1e3:8.1f} {median / base:7.2f}")


if __name__ == "__main__":
    main()
