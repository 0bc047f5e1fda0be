"""A sparse op's weight gradient, sum_r x_r[pre] * cot_r[post], is formed a
group of rows at a time into one array of the synapse count (no gathers of
every row written out first): right for any number of rows."""
import jax
import jax.numpy as jnp
import numpy as np

import brainscale as bs
from gradcheck import float64
from test_const_args import N, batch, sparse_net
from transforms.learning import signals


def test_a_sparse_gradient_sums_any_number_of_rows():
    """One row, a few (one fused pass) and more than ``ROW_UNROLL`` (passes
    of that many, the last one padded) all give sum_r x_r[pre] * cot_r[post]."""
    with float64():
        model, pre = sparse_net()
        xs, _ = batch()
        learner = bs.online(model, "es_d_rtrl")
        learner.init(jax.random.PRNGKey(0), xs[0])
        graph = learner.graph
        op = next(o for o in graph.ops if o.kind == "sparse")
        post = np.repeat(np.arange(N), pre.shape[0] // N)
        rs = np.random.default_rng(3)
        for rows in (1, 3, signals.ROW_UNROLL, 2 * signals.ROW_UNROLL + 3):
            x = rs.standard_normal((rows,) + op.x_shape)
            cot = rs.standard_normal((rows,) + op.y_shape)
            got = signals.weight_grads(graph, {op.index: jnp.asarray(x)},
                                       {op.index: jnp.asarray(cot)})[op.index]
            want = np.einsum("re,re->e", x[:, np.asarray(pre)], cot[:, post])
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
