"""Fine-tune BERT-style models on GLUE SST-2: Hydra configs in, Lightning training, W&B and CSV logs out."""

from glue_finetune.errors import UserError

__all__ = ["UserError"]
