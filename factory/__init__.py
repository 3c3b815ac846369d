"""distill-factory: turn prompt sets into reasoning-distillation datasets and distilled students.

Importing this package is cheap: it must not import torch, vllm, deepspeed, transformers or ray
(tests/unit/test_lazy_imports.py checks this in a subprocess). Heavy libraries are imported inside
the functions that need them.
"""

__version__ = "0.1.0"
