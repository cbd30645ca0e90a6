"""Metrics computed while an engine runs: the ``Metric`` protocol, its usages and a core set.

Import paths mirror ``ignite.metrics``: ``from nbengine.metrics import Accuracy, Loss``. Metrics that
need scikit-learn (``AveragePrecision``) import it when created, not here.
"""

from nbengine.exceptions import NotComputableError
from nbengine.metrics.accumulation import Average, GeometricAverage, VariableAccumulation
from nbengine.metrics.accuracy import Accuracy
from nbengine.metrics.average_precision import AveragePrecision
from nbengine.metrics.confusion_matrix import (
    ConfusionMatrix,
    DiceCoefficient,
    IoU,
    JaccardIndex,
    cmAccuracy,
    cmPrecision,
    cmRecall,
    mIoU,
)
from nbengine.metrics.epoch_metric import EpochMetric
from nbengine.metrics.fbeta import Fbeta
from nbengine.metrics.loss import Loss
from nbengine.metrics.mean_absolute_error import MeanAbsoluteError
from nbengine.metrics.mean_squared_error import MeanSquaredError
from nbengine.metrics.metric import (
    BatchFiltered,
    BatchWise,
    EpochWise,
    Metric,
    MetricUsage,
    RunningBatchWise,
    RunningEpochWise,
    SingleEpochRunningBatchWise,
)
from nbengine.metrics.metrics_lambda import MetricsLambda
from nbengine.metrics.precision import Precision
from nbengine.metrics.recall import Recall
from nbengine.metrics.root_mean_squared_error import RootMeanSquaredError
from nbengine.metrics.running_average import RunningAverage
from nbengine.metrics.top_k_categorical_accuracy import TopKCategoricalAccuracy

__all__ = [
    "Accuracy",
    "Average",
    "AveragePrecision",
    "BatchFiltered",
    "BatchWise",
    "ConfusionMatrix",
    "DiceCoefficient",
    "EpochMetric",
    "EpochWise",
    "Fbeta",
    "GeometricAverage",
    "IoU",
    "JaccardIndex",
    "Loss",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "Metric",
    "MetricUsage",
    "MetricsLambda",
    "NotComputableError",
    "Precision",
    "Recall",
    "RootMeanSquaredError",
    "RunningAverage",
    "RunningBatchWise",
    "RunningEpochWise",
    "SingleEpochRunningBatchWise",
    "TopKCategoricalAccuracy",
    "VariableAccumulation",
    "cmAccuracy",
    "cmPrecision",
    "cmRecall",
    "mIoU",
]
