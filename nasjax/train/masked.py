"""Parameters of the masked ConvNet (`nasjax.nn.convnet`, one program per depth) from and to those
of the true-size network: true leaves zero-padded into the max-shape ones (`embed`) and cut back out
(`extract`). Both forms have the same parameter names; a k x k kernel sits at the centre of the big
one, every other leaf at the start of its padded leaf."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nasjax.nn.convnet import masked, masks
from nasjax.spaces.convnet import ConvNetSpace


def _offsets(shape_small, shape_big) -> tuple[int, ...]:
    """Where a true leaf sits in its padded leaf: spatial dims of a 4-D kernel centred, others at 0."""
    if len(shape_big) == 4:
        return ((shape_big[0] - shape_small[0]) // 2, (shape_big[1] - shape_small[1]) // 2, 0, 0)
    return (0,) * len(shape_big)


def embed(space: ConvNetSpace, enc, variables, num_classes: int = 10):
    """True-size ConvNet variables -> masked ConvNet variables (zero-padded); same collections."""
    template = jax.eval_shape(lambda: masked(space, len(space.layers(enc)), num_classes).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), *masks(space, enc)))
    template = {col: template[col] for col in variables}
    return jax.tree.map(lambda t, v: jax.lax.dynamic_update_slice(jnp.zeros(t.shape, t.dtype), v,
                                                                  _offsets(v.shape, t.shape)),
                        template, variables)


def extract(space: ConvNetSpace, enc, masked_tree, true_tree):
    """Masked ConvNet collection -> the true-size one (`true_tree` gives structure and shapes)."""
    del space, enc  # same names, so the true tree's structure says where each leaf sits
    return jax.tree.map(lambda t, big: jax.lax.dynamic_slice(big, _offsets(t.shape, big.shape), t.shape),
                        true_tree, masked_tree)
