"""A Lightning callback that times a ``src/train.py`` run from the inside and writes what it saw as JSON.

    python src/train.py ... +callbacks.step_timer._target_=step_timer.StepTimer \
        +callbacks.step_timer.out=timing.json +callbacks.step_timer.warm_steps=500     (with bench/ on PYTHONPATH)

Training time excludes validations; each validation is timed from its start to the next training batch, so the
checkpoints saved after it count as its time. ``steady_ms_per_step``: after ``warm_steps`` steps (start-up,
CUDA graph captures, compilation). The GPU is synchronised only at the points timed (start, warm step,
validations, end), never per step. Used by ``bench/throughput.py``, in its own process and in children.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import torch


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepTimer(L.Callback):
    def __init__(self, out: str, warm_steps: int = 500):
        self.out, self.warm_steps = Path(out), warm_steps
        self.created = time.perf_counter()
        self.created_at = time.time()  # wall clock, for the parent's process start and exit times
        self.start = self.warm_at = self.val_start = None
        self.val_times: list[float] = []

    def on_train_start(self, trainer, pl_module) -> None:
        sync()
        self.start = time.perf_counter()

    def _close_validation(self) -> None:
        if self.val_start is not None:
            sync()
            self.val_times.append(time.perf_counter() - self.val_start)
            self.val_start = None

    def on_train_batch_start(self, *args) -> None:
        self._close_validation()

    def on_train_batch_end(self, trainer, *args) -> None:
        if self.warm_at is None and trainer.global_step >= self.warm_steps:
            sync()
            self.warm_at, self.warm_step, self.val_before_warm = time.perf_counter(), trainer.global_step, sum(
                self.val_times)

    def on_validation_start(self, trainer, pl_module) -> None:
        if self.start is not None and not trainer.sanity_checking:
            sync()
            self.val_start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self._close_validation()
        sync()
        end = time.perf_counter()
        validation = sum(self.val_times)
        result = {"steps": trainer.global_step, "fit_s": end - self.start, "validations": len(self.val_times),
                  "validation_s": validation, "train_s": end - self.start - validation,
                  "setup_s": self.start - self.created,
                  "val_s_median": sorted(self.val_times)[len(self.val_times) // 2] if self.val_times else None,
                  "val_times": self.val_times, "created_at": self.created_at,
                  "train_end_at": self.created_at + (end - self.created)}
        if torch.cuda.is_available():  # what a job needs of the GPU (jobs_per_gpu: how many fit)
            result.update(gpu_max_allocated_gb=torch.cuda.max_memory_allocated() / 2**30,
                          gpu_max_reserved_gb=torch.cuda.max_memory_reserved() / 2**30)
        if self.warm_at is not None and trainer.global_step > self.warm_step:
            steady_s = end - self.warm_at - (validation - self.val_before_warm)
            result.update(warm_steps=self.warm_step,
                          warmup_s=self.warm_at - self.start - self.val_before_warm,
                          steady_ms_per_step=1000 * steady_s / (trainer.global_step - self.warm_step))
        self.out.write_text(json.dumps(result, indent=2))


# GPU kernels by what they do, from their names (first match wins): where a step's GPU time goes.
KERNEL_KINDS = [
    ("copies", r"^Memcpy|^Memset"),
    ("attention", r"fmha|flash|attention|efficient_attention"),
    ("matrix multiplications", r"gemm|xmma|cutlass|cublas|splitKreduce|sm\d+_"),
    ("optimizer and clipping (multi-tensor kernels)", r"multi_tensor_appl"),
    ("reductions", r"reduce_kernel"),
    ("layer norm", r"layer_norm"),
    ("dropout", r"dropout"),
]


def kernel_kinds(events, steps: int, per: str = "step") -> list[str]:
    """GPU time per step by kind of kernel (``KERNEL_KINDS``; the rest is element-wise and small kernels)."""
    import re

    totals: dict[str, list] = {}
    for e in events:
        if getattr(e, "device_type", None) != torch.autograd.DeviceType.CUDA:
            continue
        kind = next((k for k, pattern in KERNEL_KINDS if re.search(pattern, e.key, re.I)), "other")
        total = totals.setdefault(kind, [0.0, 0])
        total[0] += getattr(e, "self_device_time_total", 0)
        total[1] += e.count
    rows = sorted(totals.items(), key=lambda kv: -kv[1][0])
    return [f"GPU time per {per} by kind of kernel:"] + [
        f"  {kind:48s} {us / 1000 / steps:7.3f} ms  {count / steps:6.0f} kernels" for kind, (us, count) in rows]


class StepProfiler(L.Callback):
    """torch.profiler over ``steps`` training steps from step ``start`` on (after the CUDA graph captures of the
    common batch shapes, before the first validation at step 500, whose checkpoint copies would overlap the
    window): writes to ``out`` the wall time per step, the GPU's kernel time per step (how busy the GPU was), that
    time by kind of kernel, and the top operations by host time and by GPU time. For the next question after
    ms/step: host-bound or GPU-bound, and which kernels?"""

    def __init__(self, out: str, start: int = 300, steps: int = 50):
        self.out, self.start, self.steps = Path(out), start, steps
        self.profiler = None

    def _begin(self) -> None:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        sync()
        self.profiler = torch.profiler.profile(activities=activities)
        self.profiler.__enter__()
        self.began = time.perf_counter()

    def _end(self, per: str, count: int) -> None:
        """Stop profiling and write the report: ``count`` units of ``per`` (steps, or one validation)."""
        sync()
        wall = time.perf_counter() - self.began
        self.profiler.__exit__(None, None, None)
        events = self.profiler.key_averages()
        device_us = sum(getattr(e, "self_device_time_total", 0) for e in events)
        # GPU kernels (graph replays included): many microsecond-long ones say "fuse", few long ones "compute-bound"
        kernels = sum(e.count for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA)
        lines = [f"{count} {per}(s): {1000 * wall / count:.2f} ms/{per} wall (profiled), "
                 f"{device_us / 1000 / count:.2f} ms/{per} of GPU kernels, {kernels / count:.0f} kernels "
                 f"per {per} ({device_us / max(kernels, 1):.1f} us each on average)"]
        lines += [""] + kernel_kinds(events, count, per=per)
        for key in ("self_cpu_time_total", "self_device_time_total"):
            lines += ["", f"by {key}:", events.table(sort_by=key, row_limit=25, max_name_column_width=60)]
        self.out.write_text("\n".join(lines))

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.start and self.profiler is None:
            self._begin()

    def on_train_batch_end(self, trainer, *args) -> None:
        if self.profiler is not None and trainer.global_step >= self.start + self.steps and not self.out.exists():
            self._end("step", self.steps)


class ValidationProfiler(StepProfiler):
    """torch.profiler over the first validation at or after step ``start`` (the default 1000: the second one, whose
    graphs were captured by the first), from its start to the next training step, so the checkpoints saved after
    it count: wall time against the GPU's kernel time says whether a validation waits on the GPU or on the host."""

    def __init__(self, out: str, start: int = 1000):
        super().__init__(out, start=start, steps=1)

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.global_step >= self.start and self.profiler is None:
            self._begin()

    def on_train_batch_start(self, trainer, *args) -> None:
        if self.profiler is not None and not self.out.exists():
            self._end("validation", 1)

    def on_train_batch_end(self, trainer, *args) -> None:
        pass

    def on_train_end(self, trainer, pl_module) -> None:
        self.on_train_batch_start(trainer)
