"""The whole training step replayed as one CUDA graph per batch shape.

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
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: Batch
    output: torch.Tensor


def shape_key(batch: Batch) -> tuple:
    return tuple((name, tuple(t.shape), t.dtype) for name, t in sorted(batch.items()))


class CapturedSteps:
    """Runs ``step(batch) -> tensor`` eagerly the first time a batch shape comes, then as a CUDA graph of it.

    ``max_graphs`` bounds the number of graphs (shapes beyond it, rare ones such as an epoch's last partial
    batch, keep running eagerly). ``captures`` counts the graphs made, ``replays`` the steps they ran.
    """

    def __init__(self, step: Callable[[Batch], torch.Tensor], max_graphs: int = 64):
        self.step = step
        self.max_graphs = max_graphs
        self.graphs: dict[tuple, _Captured] = {}
        self.seen: Counter = Counter()
        self.pool = None
        self.replays = 0

    @property
    def captures(self) -> int:
        return len(self.graphs)

    def __call__(self, batch: Batch) -> torch.Tensor:
        key = shape_key(batch)
        captured = self.graphs.get(key)
        if captured is None:
            self.seen[key] += 1
            if self.seen[key] == 1 or len(self.graphs) >= self.max_graphs:
                return self.step(batch)
            captured = self._capture(key, batch)
        for name, tensor in batch.items():
            captured.inputs[name].copy_(tensor, non_blocking=True)
        captured.graph.replay()
        self.replays += 1
        return captured.output

    def _capture(self, key: tuple, batch: Batch) -> _Captured:
        inputs = {name: tensor.clone() for name, tensor in batch.items()}
        graph = torch.cuda.CUDAGraph()
        # Capture records kernels without running them; the replay right after runs this batch's step.
        # thread_local: only this thread must not sync while capturing; the checkpoint writer's thread (copying
        # the last checkpoint to the host) may go on.
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            output = self.step(inputs)
        self.pool = graph.pool()
        captured = self.graphs[key] = _Captured(graph, inputs, output)
        log.debug("Captured the training step for batch shape %s (%d graph(s))", key, len(self.graphs))
        return captured
