"""The whole training step (and validation's forward) replayed as one CUDA graph per batch shape.

A BERT step at SST-2's lengths (16 sentences of ~14 tokens) is a few milliseconds of GPU work spread over about
a thousand kernels: launched one by one from Python, the launches take longer than the work. A CUDA graph records
the step's kernels once (forward, backward, clipping, the optimizer update, the step's bookkeeping) and replays
them with one call. PyTorch's recipe for it (https://pytorch.org/docs/stable/notes/cuda.html#whole-network-capture) needs:

- the same tensor shapes at every replay: one graph per batch shape (batches are padded to a multiple of a few
  tokens, so a run has ~10 shapes);
- inputs copied into the graph's own input tensors before each replay;
- no host sync inside the step, and an optimizer built for capture (``capturable=True``, its learning rate a
  tensor on the GPU that the scheduler updates in place);
- a warm-up before capture. Here the first batch of each shape runs eagerly: it is a real training step (nothing
  is run twice or thrown away, so a graphed run trains exactly as an eager one) and it creates the optimizer's
  state and the libraries' lazily built handles. The second batch of that shape is captured, then replayed.

All graphs share one memory pool: they run one at a time, so their temporaries can occupy the same memory.
Dropout stays random: the graph reads the generator's seed and offset at each replay (``torch.manual_seed``
before a replay gives the same masks as before an eager step).

Validation's forward is the same problem at batch 8: ~300 kernels launched from Python per batch, ~10 ms of host
time for ~1 ms of GPU work. The same class replays it (its own instance and memory pool); a forward has no side
effects, so its first eager run per shape is only a warm-up.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: Batch
    output: Any  # the step's tensors, as it returns them; overwritten by the next replay of this graph


def shape_key(batch: Batch) -> tuple:
    return tuple((name, tuple(t.shape), t.dtype) for name, t in sorted(batch.items()))


class CapturedSteps:
    """Runs ``step(batch)`` eagerly the first time a batch shape comes, then as a CUDA graph of it.

    ``step`` returns a tensor or a tuple of tensors; a replay returns the graph's own output tensors, which the
    next replay of the same shape overwrites: use them (or queue work on them) before that. ``max_graphs`` bounds
    the number of graphs (shapes beyond it, rare ones such as an epoch's last partial batch, keep running
    eagerly). ``captures`` counts the graphs made, ``replays`` the steps they ran.

    A capture that fails (an operation CUDA graphs cannot hold, from a library version or a setting not tried)
    costs speed, not the run: a warning names the error, ``before_eager_rerun`` clears what the aborted capture
    left behind (e.g. gradients allocated in it), the batch runs eagerly, and so does every later one.
    """

    def __init__(self, step: Callable[[Batch], Any], max_graphs: int = 64,
                 before_eager_rerun: Callable[[], None] | None = None):
        self.step = step
        self.max_graphs = max_graphs
        self.before_eager_rerun = before_eager_rerun
        self.graphs: dict[tuple, _Captured] = {}
        self.seen: Counter = Counter()
        self.pool = None
        self.replays = 0
        self.failure: str | None = None  # why capturing failed, if it did

    @property
    def captures(self) -> int:
        return len(self.graphs)

    def __call__(self, batch: Batch) -> Any:
        key = shape_key(batch)
        captured = self.graphs.get(key)
        if captured is None:
            self.seen[key] += 1
            if self.seen[key] == 1 or len(self.graphs) >= self.max_graphs or self.failure:
                return self.step(batch)
            try:
                captured = self._capture(key, batch)
            except Exception as err:  # noqa: BLE001 - whatever CUDA or a library raises, the eager step still runs
                return self._run_eagerly_after(err, batch)
        for name, tensor in batch.items():
            captured.inputs[name].copy_(tensor, non_blocking=True)
        captured.graph.replay()
        self.replays += 1
        return captured.output

    def _run_eagerly_after(self, err: Exception, batch: Batch) -> Any:
        self.failure = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        log.warning("Could not capture %s as a CUDA graph (%s); it runs eagerly from here on, slower but the same "
                    "computation. model.whole_step=false runs the whole run without graphs.",
                    self.name, self.failure[:300])
        if self.before_eager_rerun is not None:
            self.before_eager_rerun()
        return self.step(batch)

    @property
    def name(self) -> str:
        return getattr(self.step, "__name__", "the step")

    def _capture(self, key: tuple, batch: Batch) -> _Captured:
        inputs = {name: tensor.clone() for name, tensor in batch.items()}
        graph = torch.cuda.CUDAGraph()
        # Capture records kernels without running them; the replay right after runs this batch's step.
        # thread_local: only this thread must not sync while capturing; the checkpoint writer's thread (copying
        # the last checkpoint to the host) may go on.
        stream = torch.cuda.current_stream()
        step_error = None
        try:
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                try:
                    output = self.step(inputs)
                except BaseException as err:
                    step_error = err
                    raise
        except BaseException as err:
            # torch.cuda.graph's exit ends the capture before it restores the stream: when ending it fails (the
            # capture was invalidated), its side stream would stay current for every later kernel.
            torch.cuda.set_stream(stream)
            if step_error is not None and err is not step_error:
                raise step_error from None  # the step's own error, not the failed end of the capture it invalidated
            raise
        self.pool = graph.pool()
        captured = self.graphs[key] = _Captured(graph, inputs, output)
        log.debug("Captured %s for batch shape %s (%d graph(s))", self.name, key, len(self.graphs))
        return captured
