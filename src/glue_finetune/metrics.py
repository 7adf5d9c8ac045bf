"""A task's metrics, computed as GLUE computes them, with torchmetrics: one definition for training's validation,
the evaluation command and the tests."""

from __future__ import annotations

import warnings

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryF1Score, BinaryMatthewsCorrCoef, MulticlassAccuracy
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

from glue_finetune.tasks import TaskSpec


class MatthewsCorrCoef(BinaryMatthewsCorrCoef):
    """GLUE's (scikit-learn's) Matthews correlation: 0 when it is undefined, e.g. when every prediction is the same
    class. torchmetrics approximates that case with an epsilon and reports a small nonzero value instead (0.0256
    for a model that calls every CoLA dev sentence acceptable)."""

    def compute(self) -> torch.Tensor:
        confmat = self.confmat.float()
        tn, fp, fn, tp = confmat.reshape(-1)
        if 0 in ((tp + fp) * (tp + fn), (tn + fp) * (tn + fn)):
            return torch.zeros((), device=confmat.device)
        return super().compute()


def task_metrics(spec: TaskSpec) -> MetricCollection:
    """The task's metrics (keys as in ``spec.metrics``). F1 and Matthews correlation are GLUE's binary ones (the
    positive class is label 1: equivalent, duplicate, acceptable). validate_args=False: the inputs are the model's
    own predictions and checked labels, and validating them would wait on the GPU."""
    factories = {
        "acc": lambda: MulticlassAccuracy(num_classes=max(spec.num_labels, 2), average="micro", validate_args=False),
        "f1": lambda: BinaryF1Score(validate_args=False),
        "mcc": lambda: MatthewsCorrCoef(validate_args=False),
        "pearson": PearsonCorrCoef,
        "spearman": SpearmanCorrCoef,
    }
    with warnings.catch_warnings():  # Spearman keeps every prediction: a dev set's worth, by design
        warnings.filterwarnings("ignore", message=".*will save all targets and predictions in the buffer")
        return MetricCollection({key: factories[key]() for key in spec.metrics}, compute_groups=False)


def predictions(spec: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    """What the metrics compare with the labels: the class id, or the score of a regression task (float32)."""
    return logits[..., 0].float() if spec.is_regression else logits.argmax(dim=-1)


def loss(spec: TaskSpec, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The training loss, as Hugging Face's sequence classifiers compute it: mean squared error for a regression
    task, cross-entropy otherwise."""
    if spec.is_regression:
        return torch.nn.functional.mse_loss(logits[..., 0].float(), labels.float())
    return torch.nn.functional.cross_entropy(logits.float(), labels)
