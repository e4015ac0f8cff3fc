"""Utilities for training (`torch.nn.utils`): gradient clipping.

>>> import tracegrad as torch
>>> net = torch.nn.Linear(2, 1)
>>> net(torch.ones(1, 2)).sum().backward()
>>> torch.nn.utils.clip_grad_value_(net.parameters(), 0.5)
>>> net.bias.grad
tensor([0.5000])
"""

from .clip_grad import clip_grad_norm_, clip_grad_value_  # noqa: F401

clip_grad_norm = clip_grad_norm_
