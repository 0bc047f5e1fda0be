"""Generated stroke characters: deterministic, in range, and classes that a
pixel nearest neighbour separates from one example (so that few-shot
episodes on them are meaningful)."""
import numpy as np
import pytest

from brainscale.tasks.strokes import render, stroke_characters


def test_shapes_range_and_determinism():
    x, y = stroke_characters(7, 3, size=10, seed=4)
    assert x.shape == (21, 100) and x.dtype == np.float32 and y.tolist() == sorted(y.tolist())
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() == 1.0
    x2, _ = stroke_characters(7, 3, size=10, seed=4)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, stroke_characters(7, 3, size=10, seed=5)[0])
    assert not np.array_equal(x[0], x[1])                    # samples of a class differ


def test_a_stroke_is_drawn_where_it_lies():
    img = render(np.array([[[0.1, 0.5], [0.5, 0.5], [0.9, 0.5]]]), 10, np.random.default_rng(0),
                 rotate=0.0, scale=0.0, shift=0.0, jitter=0.0).reshape(10, 10)
    assert img[:, 4:6].sum() > 0.9 * img.sum()               # the row through y = 0.5
    assert img[1:9, 4:6].min() > 0.3                         # ... along its whole length


def test_one_shot_nearest_neighbour_separates_classes():
    x, y = stroke_characters(40, 4, seed=0)
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(100):
        cls = rng.choice(40, 5, replace=False)
        idx = [rng.choice(np.flatnonzero(y == c), 2, replace=False) for c in cls]
        sup, qry = x[[i[0] for i in idx]], x[[i[1] for i in idx]]
        d = ((qry[:, None] - sup[None]) ** 2).sum(-1)
        hits.append(np.mean(d.argmin(1) == np.arange(5)))
    assert np.mean(hits) > 0.7                                # chance 0.2


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_classes >= 1"):
        stroke_characters(0, 3)
