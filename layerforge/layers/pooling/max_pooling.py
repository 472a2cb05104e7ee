"""MaxPooling1D, MaxPooling2D and MaxPooling3D."""

from __future__ import annotations

from ..base import Example, register
from .base_pooling import _MAX_DOC, _pool_config, _Pooling


@register
class MaxPooling1D(_Pooling):
    rank, average = 1, False
    type = "MaxPooling1D"
    aliases = {"MaxPool1D": {}}
    __doc__ = _MAX_DOC.format(w="pool_size-step", k1="pool_length, stride, border_mode")

    class Config(_pool_config(1, False)):
        pass

    examples = [
        Example({"type": "MaxPooling1D", "pool_length": 2}, (10, 64), output_shape=(5, 64), params=0,
                gradcheck=False, note="reference figure"),
        Example({"type": "MaxPooling1D", "pool_size": 3, "strides": 2, "padding": "same"}, (7, 3),
                output_shape=(4, 3), params=0),
        Example({"type": "MaxPooling1D", "pool_size": 2, "stride": 1, "border_mode": "valid"}, (5, 2),
                output_shape=(4, 2)),
        Example({"type": "MaxPooling1D", "pool_size": 2, "data_format": "channels_first"}, (3, 7),
                output_shape=(3, 3)),
    ]


@register
class MaxPooling2D(_Pooling):
    rank, average = 2, False
    type = "MaxPooling2D"
    aliases = {"MaxPool2D": {}}
    __doc__ = _MAX_DOC.format(w="pool_size", k1="border_mode, dim_ordering")

    class Config(_pool_config(2, False)):
        pass

    examples = [
        Example({"type": "MaxPooling2D", "pool_size": [2, 2], "border_mode": "same"}, (7, 7, 5),
                output_shape=(4, 4, 5), params=0, note="reference figure"),
        Example({"type": "MaxPooling2D", "pool_size": [2, 2]}, (7, 7, 5), output_shape=(3, 3, 5), params=0,
                note="reference figure"),
        Example({"type": "MaxPooling2D", "pool_size": [3, 2], "strides": [2, 1], "dim_ordering": "th"}, (2, 7, 6),
                output_shape=(2, 3, 5)),
        Example({"type": "MaxPooling2D", "pool_size": 3, "strides": 2, "padding": "same"}, (6, 5, 2),
                output_shape=(3, 3, 2)),
    ]


@register
class MaxPooling3D(_Pooling):
    rank, average = 3, False
    type = "MaxPooling3D"
    aliases = {"MaxPool3D": {}}
    __doc__ = _MAX_DOC.format(w="pool_size", k1="border_mode, dim_ordering")

    class Config(_pool_config(3, False)):
        pass

    examples = [
        Example({"type": "MaxPooling3D"}, (4, 5, 6, 2), output_shape=(2, 2, 3, 2), params=0),
        Example({"type": "MaxPooling3D", "pool_size": 3, "strides": 2, "padding": "same"}, (5, 4, 5, 1),
                output_shape=(3, 2, 3, 1)),
        Example({"type": "MaxPooling3D", "pool_size": [2, 1, 3], "data_format": "channels_first"}, (2, 4, 3, 6),
                output_shape=(2, 2, 3, 2)),
    ]
