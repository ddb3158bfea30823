"""Benchmark evaluation for SteerViT (reference §5); metrics live in `steervit.evaluation.metrics`."""
