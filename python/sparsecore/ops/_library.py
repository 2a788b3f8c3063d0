"""The torch.library namespace all sparsecore ops are defined in."""

import torch

lib = torch.library.Library("sparsecore", "DEF")
