"""Train any zoo model on any dataset: ``python train.py model=resnet18 data=cifar10``."""

import hydra
from omegaconf import DictConfig

from zoo import cli


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from zoo.run import train  # imported here so a bad command line fails before torch loads
    from zoo.sweeps import run_trial  # status.json; in a sweep a failed trial is recorded and the sweep goes on

    with cli.user_errors():
        return run_trial(train, cfg)


if __name__ == "__main__":
    cli.main(main, resume=True)
