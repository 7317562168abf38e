"""Accuracy against ground truth on labeled validation sets, on one machine or sharded on Ray.

datasets.py (VOC / matting / depth layouts, synthetic sets), truth_metrics.py (per-image figures,
bootstrap), accuracy.py (`portrait evaluate`), toolchain/engines.py (`map_shards` on the local or Ray engine).
"""
