"""Classify sentences with a finished run's exported model.

    python src/predict.py run_dir=outputs/<date>/<time> text="a gorgeous, witty, seductive movie"
    python src/predict.py run_dir=outputs/<date>/<time> input=sentences.txt output=predictions.tsv
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from glue_finetune import UserError
from glue_finetune.inference import SentimentPredictor, format_predictions, read_sentences


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    try:
        if (cfg.text is None) == (cfg.input is None):
            raise UserError('give exactly one of text="..." or input=path/to/file.txt|.tsv')
        sentences = [cfg.text] if cfg.text is not None else read_sentences(Path(cfg.input))
        predictor = SentimentPredictor(cfg.model_dir, batch_size=cfg.batch_size, max_length=cfg.max_length,
                                       device=cfg.device)
        table = format_predictions(predictor.predict(sentences))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if cfg.output:
        Path(cfg.output).write_text(table)
        print(f"{len(sentences)} predictions written to {cfg.output}")
    else:
        print(table, end="")


if __name__ == "__main__":
    main()
