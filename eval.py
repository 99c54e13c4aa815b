"""Evaluate a checkpoint on the test split of its own data: ``python eval.py ckpt_path=PATH``."""

import hydra
from omegaconf import DictConfig

from zoo import cli


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    from zoo.evaluate import evaluate

    with cli.user_errors():
        evaluate(cfg)


if __name__ == "__main__":
    cli.main(main, config_name="eval")
