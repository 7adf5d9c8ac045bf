"""Learning-rate schedules configured by a warm-up *ratio*, as in Hugging Face's Trainer.

transformers' schedule factories take a warm-up step count; the step total is only known once the Trainer has
seen the data (``trainer.estimated_stepping_batches``), so the model completes this partial with it.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_scheduler


def warmup_schedule(
    optimizer: Optimizer, num_training_steps: int, name: str = "linear", warmup_ratio: float = 0.0
) -> LambdaLR:
    """transformers' ``name`` schedule with ``ceil(warmup_ratio * num_training_steps)`` warm-up steps."""
    return get_scheduler(
        name,
        optimizer,
        num_warmup_steps=math.ceil(warmup_ratio * num_training_steps),  # Trainer rounds up the same way
        num_training_steps=num_training_steps,
    )
