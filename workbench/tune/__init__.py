"""The fine-tuning lab: a spec file, and runs of it on the shared Engine (mlx-lm's trainer)."""

from workbench.tune.runner import FinetuneRun, run_finetune
from workbench.tune.spec import FinetuneSpec

__all__ = ["FinetuneRun", "FinetuneSpec", "run_finetune"]
