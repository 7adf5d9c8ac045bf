"""Fine-tune BERT-style models on GLUE: Hydra configs in, Lightning training, W&B and CSV logs out."""

from glue_finetune.config import register_resolvers
from glue_finetune.errors import UserError

register_resolvers()  # conf/ uses ${package_path:...} and ${run_name:}; any import of the package enables them

__all__ = ["UserError"]
