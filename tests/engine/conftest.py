"""Engine tests run tiny models on a shared 2-core CPU: one thread, seeded everywhere.

Helpers live in ``engine_toys.py`` (a unique module name, so test directories cannot shadow each other).
"""
import torch

torch.set_num_threads(1)
