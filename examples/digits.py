"""Real data that ships with scikit-learn (handwritten digits), and a small VGG-style net.

The 8x8 digits are upscaled to 32x32 (bilinear) and normalised; train/test split is fixed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def load_digits_tensors(size: int = 32, seed: int = 0, test_fraction: float = 0.25):
    """(x_train, y_train, x_test, y_test): float images (N, 1, size, size), int64 labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(data.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(y) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


class SmallVGG(nn.Module):
    """conv-conv-pool x3, then a linear classifier: three stride-2 max pools to convert."""

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        layers, cin = [], 1
        for cout in (width, 2 * width, 4 * width):
            layers += [
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, 2),
            ]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
        self.input_size = (1, 32, 32)  # lets liftswap.patch pick example inputs on its own

    def forward(self, x):
        return self.head(self.features(x))


def small_vgg(num_classes: int = 10, width: int = 16) -> SmallVGG:
    return SmallVGG(num_classes, width)
