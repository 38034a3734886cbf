"""Write a qwen2-shaped MLX folder with random float32 weights and the embedded model's tokenizer,
for speed and memory work on a real shape without a hub (its replies are noise).

    python scripts/write_random_model.py OUT_DIR [--shape qwen2-0.5b|tiny] [--tokenizer DIR]

--tokenizer defaults to the embedded model's converted folder under the models dir (chat with
it once first: `workbench chat hi`). Shapes: workbench/engine/models/random_weights.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.engine.models.random_weights import SHAPES, write_random_model


def _embedded_tokenizer() -> Path:
    from workbench.config import Settings

    found = sorted((Settings.from_env().models_dir / "converted").glob("SmolLM2-135M-Instruct*/f32"))
    if not found:
        raise SystemExit(
            "no converted embedded model yet: chat with it once (workbench chat hi), or pass --tokenizer"
        )
    return found[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2-0.5b")
    parser.add_argument("--tokenizer", type=Path, help="a folder with the tokenizer files")
    args = parser.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"{args.out} exists")
    write_random_model(args.out, args.shape, args.tokenizer or _embedded_tokenizer())
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
