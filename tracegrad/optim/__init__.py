"""Optimizers (`torch.optim`): `SGD`, `Adam`, `AdamW` and their base `Optimizer`.

>>> import tracegrad as torch
>>> net = torch.nn.Linear(2, 1)
>>> torch.optim.SGD(net.parameters(), lr=0.1).param_groups[0]["lr"]
0.1
"""

from .adam import Adam, AdamW  # noqa: F401
from .optimizer import Optimizer  # noqa: F401
from .sgd import SGD  # noqa: F401
