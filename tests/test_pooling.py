"""Visit pooling: one prediction per visit, mixed from its videos, labels and points averaged."""
import numpy as np

from benchmark.contracts import Predictive
from benchmark.evaluation.pooling import pool_by_visit


def test_videos_of_a_visit_become_one_prediction():
    samples = np.array([[10.0, 11, 12, 13], [20, 21, 22, 23], [30, 31, 32, 33]])
    predictive = Predictive(samples=samples, point=samples.mean(axis=1), mean=samples.mean(axis=1))
    pooled = pool_by_visit(["a", "b", "a"], np.array([40.0, 50.0, 44.0]), predictive)

    assert pooled.ids == ["a", "b"]
    assert pooled.members == [[0, 2], [1]]
    np.testing.assert_allclose(pooled.ef, [42.0, 50.0])
    np.testing.assert_allclose(pooled.predictive.point, [(11.5 + 31.5) / 2, 21.5])
    # K samples taken from the visit's videos in turn: 10, 30, 11, 31
    np.testing.assert_allclose(pooled.predictive.samples, [[10, 30, 11, 31], [20, 21, 22, 23]])
    assert pooled.predictive.mean is None  # closed forms of single videos do not describe the visit
