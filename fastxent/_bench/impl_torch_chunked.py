"""PyTorch's batch-chunked ``F.linear_cross_entropy`` (``torch.nn.LinearCrossEntropyOptions``,
its automatic choices), for the fused linear kinds only.

Follows the interface of :mod:`fastxent._bench.builders`; torch is imported only when a builder
runs.
"""

from fastxent._bench.impl_torch import _linear_tensors

MODULE = "torch"


def linear_ce(data, threads):
    import torch
    import torch.nn.functional as F
    hidden, weight, labels = _linear_tensors(data, threads, True)
    options = torch.nn.LinearCrossEntropyOptions()

    def run():
        hidden.grad = weight.grad = None
        loss = F.linear_cross_entropy(hidden, weight, labels, options=options)
        loss.backward()
        return loss.item()
    return run
