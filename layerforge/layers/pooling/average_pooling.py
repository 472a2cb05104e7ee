"""AveragePooling1D, AveragePooling2D and AveragePooling3D."""

from __future__ import annotations

from ..base import Example, register
from .base_pooling import _AVG_DOC, _pool_config, _Pooling


@register
class AveragePooling1D(_Pooling):
    rank, average = 1, True
    type = "AveragePooling1D"
    aliases = {"AvgPool1D": {}}
    __doc__ = _AVG_DOC.format(w="pool_size-step", d="2", k1="pool_length, stride, border_mode")

    class Config(_pool_config(1, True)):
        pass

    examples = [
        Example({"type": "AveragePooling1D", "pool_size": 2, "padding": "same"}, (5, 3), output_shape=(3, 3),
                params=0),
        Example({"type": "AveragePooling1D", "pool_length": 3, "stride": 2}, (9, 2), output_shape=(4, 2)),
        Example({"type": "AveragePooling1D", "pool_size": 4, "strides": 3, "padding": "same",
                 "data_format": "channels_first"}, (2, 8), output_shape=(2, 3)),
    ]


@register
class AveragePooling2D(_Pooling):
    rank, average = 2, True
    type = "AveragePooling2D"
    aliases = {"AvgPool2D": {}}
    __doc__ = _AVG_DOC.format(w="pool_size", d="(2, 2)", k1="border_mode, dim_ordering")

    class Config(_pool_config(2, True)):
        pass

    examples = [
        Example({"type": "AveragePooling2D"}, (7, 7, 5), output_shape=(3, 3, 5), params=0),
        Example({"type": "AveragePooling2D", "pool_size": 3, "strides": 2, "border_mode": "same"}, (6, 5, 2),
                output_shape=(3, 3, 2)),
        Example({"type": "AveragePooling2D", "pool_size": [2, 3], "strides": [1, 2], "dim_ordering": "th"},
                (3, 5, 7), output_shape=(3, 4, 3)),
    ]


@register
class AveragePooling3D(_Pooling):
    rank, average = 3, True
    type = "AveragePooling3D"
    aliases = {"AvgPool3D": {}}
    __doc__ = _AVG_DOC.format(w="pool_size", d="(2, 2, 2)", k1="border_mode, dim_ordering")

    class Config(_pool_config(3, True)):
        pass

    examples = [
        Example({"type": "AveragePooling3D"}, (16, 16, 16, 8), output_shape=(8, 8, 8, 8), params=0,
                gradcheck=False, note="reference figure"),
        Example({"type": "AveragePooling3D", "pool_size": 2, "strides": 1, "padding": "same"}, (3, 4, 3, 2),
                output_shape=(3, 4, 3, 2)),
        Example({"type": "AveragePooling3D", "pool_size": [3, 2, 2], "strides": [2, 2, 1],
                 "data_format": "channels_first"}, (2, 5, 4, 3), output_shape=(2, 2, 2, 2)),
    ]
