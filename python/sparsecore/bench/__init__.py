"""Benchmarks: sparsecore against dense torch, numpy, torch.sparse and scipy in the same run."""
