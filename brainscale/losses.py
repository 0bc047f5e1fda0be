"""Per-sample, per-step losses ``loss(out, target) -> scalar``.

The learners average them over the batch and, for sequences, over time.
"""
import jax
import jax.numpy as jnp


def cross_entropy(logits, label):
    """Softmax cross-entropy with an integer label; a negative label means
    "no loss at this step" and gives 0."""
    logp = jax.nn.log_softmax(logits)
    loss = -jnp.take(logp, jnp.maximum(label, 0))
    return jnp.where(label >= 0, loss, jnp.zeros_like(loss))


def mse(out, target):
    """Mean squared error."""
    return jnp.mean((out - target) ** 2)
