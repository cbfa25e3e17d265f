"""JAX: jit-compiled losses on XLA's own thread pool (``threads`` is ignored).

Follows the interface of :mod:`fastxent._bench.builders`. The ``"evaluate"`` kind is not
applicable to JAX. jax is imported only when a builder runs, so that this module imports
without it.
"""

import numpy as np

MODULE = "jax"


def _arrays(data, softmax):
    """Enable float64 if needed and move the data to JAX arrays."""
    import jax
    import jax.numpy as jnp
    if data.inputs.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    inputs, targets = data.rows() if softmax else (data.inputs, data.targets)
    return jnp.asarray(inputs), jnp.asarray(targets)


def _softmax_loss(logits, labels):
    import jax
    import jax.numpy as jnp
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


def _binary_loss(logits, targets):
    import jax
    import jax.numpy as jnp
    return jnp.mean(jax.nn.softplus(logits) - logits * targets)


def _logloss(probabilities, targets):
    import jax.numpy as jnp
    return -jnp.mean(targets * jnp.log(probabilities) + (1 - targets) * jnp.log1p(-probabilities))


def _loss_and_grad(loss_fn, inputs, targets):
    import jax
    compiled = jax.jit(jax.value_and_grad(loss_fn))

    def run():
        loss, grad = compiled(inputs, targets)
        grad.block_until_ready()
        return float(loss)
    return run


def _loss_only(loss_fn, inputs, targets):
    import jax
    compiled = jax.jit(loss_fn)
    return lambda: float(compiled(inputs, targets).block_until_ready())


def softmax_ce(data, threads):
    return _loss_and_grad(_softmax_loss, *_arrays(data, softmax=True))


def softmax_ce_loss(data, threads):
    return _loss_only(_softmax_loss, *_arrays(data, softmax=True))


def binary_ce(data, threads):
    return _loss_and_grad(_binary_loss, *_arrays(data, softmax=False))


def binary_logloss(data, threads):
    return _loss_only(_logloss, *_arrays(data, softmax=False))

