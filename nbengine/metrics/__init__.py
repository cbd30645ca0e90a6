"""Metrics computed while an engine runs: the ``Metric`` protocol, its usages and a core set.

Import paths mirror ``ignite.metrics``: ``from nbengine.metrics import Accuracy, Loss``.
"""

from nbengine.metrics.accuracy import Accuracy
from nbengine.metrics.average import Average
from nbengine.metrics.loss import Loss
from nbengine.metrics.mean_squared_error import MeanSquaredError
from nbengine.metrics.metric import (
    BatchFiltered,
    BatchWise,
    EpochWise,
    Metric,
    MetricUsage,
    NotComputableError,
    RunningBatchWise,
    RunningEpochWise,
    SingleEpochRunningBatchWise,
)
from nbengine.metrics.running_average import RunningAverage

__all__ = [
    "Accuracy",
    "Average",
    "BatchFiltered",
    "BatchWise",
    "EpochWise",
    "Loss",
    "MeanSquaredError",
    "Metric",
    "MetricUsage",
    "NotComputableError",
    "RunningAverage",
    "RunningBatchWise",
    "RunningEpochWise",
    "SingleEpochRunningBatchWise",
]
