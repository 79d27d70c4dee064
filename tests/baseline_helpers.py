"""Encoders whose processing traces differ by construction, for baseline and comparison tests.

The tiny trace detector's first three features are log high/low-frequency
ratios near 2.2 on the tiny set: they point the same way whatever the
processing, so its cosine drift is small (about 0.0045 for jpeg75_420).
``tiny_strong`` subtracts 2.2 from them: the processing now turns the
embedding (drift about 0.23, fifty times more); ``tiny_weak`` multiplies
them by 3, which lengthens that common direction (drift about 0.0008);
``tiny_same`` is ``tiny`` under another name: equal numbers, another id.
"""

from __future__ import annotations

from plugin_helpers import TINY_CONFTEST

GAIN_CONFTEST = (
    TINY_CONFTEST
    + '''

class Scaled(torch.nn.Module):
    """TinyNet with its three trace features (log HF/LF ratios) mapped to gain * (f - shift)."""

    def __init__(self, gain, shift):
        super().__init__()
        self.net = TinyNet()
        self.gain = gain
        self.shift = shift

    def forward(self, x):
        out = self.net(x)
        return torch.cat([(out[:, :3] - self.shift) * self.gain, out[:, 3:]], 1)


def scaled(gain, shift):
    def factory(**options):
        _, cfg = make_tiny(**options)
        return Scaled(gain, shift).eval(), cfg

    return factory


def pytest_metatrace_register_encoders(registry):
    registry.register("tiny", make_tiny, description="tiny trace detector")
    registry.register("tiny_same", make_tiny, description="tiny under another name")
    registry.register("tiny_strong", scaled(1.0, 2.2), description="tiny, trace centred")
    registry.register("tiny_weak", scaled(3.0, 0.0), description="tiny, trace features x3")
'''
)
