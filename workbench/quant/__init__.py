"""The quantization lab: recipes swept over a model, quality against a reference, speed and
memory through the benchmark runner, one CSV and a Pareto plot. Knows the Engine, bench, runs
and reports; the mlx side (convert, forward passes) is engine.quantize / engine.quality."""

from workbench.quant.quality import QualityReport, eval_text, eval_text_sha256, measure_quality
from workbench.quant.spec import QuantSweepSpec
from workbench.quant.sweep import SweepRun, run_sweep

__all__ = [
    "QualityReport",
    "QuantSweepSpec",
    "SweepRun",
    "eval_text",
    "eval_text_sha256",
    "measure_quality",
    "run_sweep",
]
