"""Delta descriptors: the learning-free change of the frame descriptors over the window.

Garg, Harwood, Anand & Milford, "Delta Descriptors: Change-Based Place
Representation for Robust Visual Localization", RA-L 2020 (code:
oravus/DeltaDescriptors, ``src/ops.py``, op ``delta``). A place is described
by how the frame descriptors change along the route rather than by their
values: the mean of the newer half of an l-frame window minus the mean of the
older half, i.e. the frame descriptors smoothed over l/2 frames, differenced
l/2 frames apart. The authors compute it by convolving each dimension with the
kernel [-1 .. -1, +1 .. +1] / (l/2); a condition change that shifts every
descriptor of a traversal by the same offset cancels out. They match with
cosine distance, so the L2-normalised delta ranks exactly as theirs under
inner-product search.

Two details follow their code: a delta that is exactly zero (one frame, or a
robot standing still) is replaced by the raw descriptor (here: the newest
frame's); and the halves have floor(l/2) frames each. For odd l their kernel
gives the middle frame the weight of the older half, which leaks the window's
mean into the delta; here the middle frame gets weight 0, so the delta is a
pure difference for every l (identical to theirs for even l).
Any window length; reversing the frames negates the descriptor.
"""

from __future__ import annotations

import torch

from ..base import Aggregator, l2n
from ..registry import register_aggregator


class Delta(Aggregator):
    """[B, L, D] frame descriptors -> [B, D]: l2n(mean of newest L//2 - mean of oldest L//2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_length(x.shape[1])
        half = x.shape[1] // 2
        if half == 0:
            return l2n(x[:, -1])
        delta = x[:, -half:].float().mean(1) - x[:, :half].float().mean(1)
        moved = delta.abs().amax(1, keepdim=True) > 0
        return l2n(torch.where(moved, delta, x[:, -1].float())).to(x.dtype)


@register_aggregator()
def delta() -> Delta:
    """Delta descriptors (Garg et al., RA-L 2020): learning-free, any window length."""
    return Delta()
