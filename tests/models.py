"""Small models with every kind of pooling site, for the surgery tests."""

import torch
import torch.nn.functional as F
from torch import nn


def conv(cin, cout, dims=2):
    return {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims](cin, cout, 3, padding=1)


class SegNetFunctional(nn.Module):
    """Encoder/decoder whose pools and unpools are functional calls, in two different modules."""

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = conv(3, 8), conv(8, 16)

        def forward(self, x):
            x, i1 = F.max_pool2d(torch.relu(self.c1(x)), 2, 2, return_indices=True)
            s1 = x.shape
            x, i2 = F.max_pool2d(torch.relu(self.c2(x)), kernel_size=2, stride=2, return_indices=True)
            return x, (i1, i2), s1

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.c2, self.c1 = conv(16, 8), conv(8, 4)

        def forward(self, x, indices, s1, size):
            i1, i2 = indices
            x = self.c2(F.max_unpool2d(x, i2, 2, 2, output_size=s1[2:]))
            return self.c1(F.max_unpool2d(x, i1, kernel_size=2, stride=2, output_size=size))

    def __init__(self):
        super().__init__()
        self.encoder, self.decoder = self.Encoder(), self.Decoder()

    def forward(self, x):
        y, indices, s1 = self.encoder(x)
        return self.decoder(y, indices, s1, x.shape[2:])


class SegNetModules(nn.Module):
    """Pool/unpool modules; one MaxUnpool2d module reused at both depths."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.d2, self.d1 = conv(3, 8), conv(8, 16), conv(16, 8), conv(8, 4)
        self.pool1 = nn.MaxPool2d(2, 2, return_indices=True)
        self.pool2 = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)

    def forward(self, x):
        h1, i1 = self.pool1(torch.relu(self.c1(x)))
        h2, i2 = self.pool2(torch.relu(self.c2(h1)))
        u2 = self.d2(self.unpool(h2, i2, output_size=h1.shape))
        return self.d1(self.unpool(u2, i1, output_size=x.shape))


class PoolUnpool(nn.Module):
    """The decoder unpools the pooled map directly: a LiftPool pair reconstructs the input."""

    def __init__(self, dims=2):
        super().__init__()
        self.pool = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[dims](2, 2, return_indices=True)
        self.unpool = {1: nn.MaxUnpool1d, 2: nn.MaxUnpool2d, 3: nn.MaxUnpool3d}[dims](2, 2)

    def forward(self, x):
        y, idx = self.pool(x)
        return self.unpool(y, idx, output_size=x.shape)


class ReusedPool(nn.Module):
    """One pool module called at three depths with different channel counts: three sites."""

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.c1, self.c2, self.c3 = conv(3, 4), conv(4, 8), conv(8, 16)

    def forward(self, x):
        x = self.pool(self.c1(x))
        x = self.pool(self.c2(x))
        return self.pool(self.c3(x))


class MixedFunctional(nn.Module):
    """Functional stride-2 pools next to stride-1, adaptive and torch.* pools."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = conv(3, 6), conv(6, 6)

    def forward(self, x):
        x = F.avg_pool2d(self.c1(x), 2)  # replaced (haar)
        x = F.max_pool2d(x, 3, 1, 1)  # stride 1: skipped
        x = torch.max_pool2d(self.c2(x), 3, 2, 1)  # replaced (stride-1 max + lazy)
        x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)  # replaced
        return F.adaptive_avg_pool2d(x, 1).flatten(1)  # adaptive: skipped


class CeilStems(nn.Module):
    """ceil_mode, padding, dilation and divisor variants that must keep shape and function."""

    def __init__(self):
        super().__init__()
        self.pools = nn.ModuleList(
            [
                nn.MaxPool2d(3, 2, ceil_mode=True),
                nn.MaxPool2d(2, 2, padding=1, ceil_mode=True),
                nn.MaxPool2d(3, 2, padding=1, dilation=2),
                nn.MaxPool2d(2, 2, padding=1, dilation=2, ceil_mode=True),
                nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
                nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=True),
                nn.AvgPool2d(2, 2, ceil_mode=True),
                nn.AvgPool2d(2, 2),
                nn.AvgPool2d(3, 2, divisor_override=4),
                nn.MaxPool2d((2, 1), (2, 1)),  # text-recogniser style: halves H only
                nn.MaxPool2d((3, 3), (1, 2), (1, 1)),  # stride 2 along W only
            ]
        )

    def forward(self, x):
        return [p(x) for p in self.pools]


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace this forward."""

    def __init__(self):
        super().__init__()
        self.c = conv(3, 4)
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x):
        x = self.pool(self.c(x))
        if x.sum() > 0:  # data-dependent branch
            x = x * 2
        return F.avg_pool2d(x, 2)


class Net1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = conv(2, 4, 1), conv(4, 4, 1)
        self.pool = nn.MaxPool1d(3, 2, 1)

    def forward(self, x):
        return F.avg_pool1d(self.c2(self.pool(self.c1(x))), 2)


class Net3d(nn.Module):
    """Video net: frames pooled in H, W only, then a full 3d average pool."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = conv(3, 4, 3), conv(4, 4, 3)
        self.frame_pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        self.pool = nn.AvgPool3d(2)

    def forward(self, x):
        return self.pool(self.c2(self.frame_pool(self.c1(x))))


def raising_factory():
    """A factory with a bug of its own: the command line reports it on one line."""
    raise RuntimeError("broken on purpose")
