"""The `training:` and `data:` sections: names and arguments that the engine implements.

Pure tables and pydantic models, so `validate` can check them without the engine.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ..errors import did_you_mean
from .data_options import PreprocessOptions, TextOptions, check_image_size

LOSSES = {
    "mean_squared_error": {}, "mean_absolute_error": {}, "mean_absolute_percentage_error": {},
    "mean_squared_logarithmic_error": {}, "hinge": {}, "squared_hinge": {}, "categorical_hinge": {},
    "binary_crossentropy": {"from_logits": False, "label_smoothing": 0.0},
    "categorical_crossentropy": {"from_logits": False, "label_smoothing": 0.0},
    "sparse_categorical_crossentropy": {"from_logits": False},
    "kl_divergence": {}, "poisson": {}, "cosine_similarity": {"axis": -1}, "huber": {"delta": 1.0},
    "log_cosh": {},
}
LOSS_ALIASES = {
    "mse": "mean_squared_error", "mae": "mean_absolute_error", "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error", "kld": "kl_divergence", "kullback_leibler_divergence": "kl_divergence",
    "cosine_proximity": "cosine_similarity", "cosine": "cosine_similarity", "logcosh": "log_cosh",
    "huber_loss": "huber", "bce": "binary_crossentropy", "cce": "categorical_crossentropy",
}

METRICS = {
    "accuracy", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "mean_absolute_error",
    "mean_squared_error", "root_mean_squared_error", "auc", "precision", "recall", "f1_score",
    "mean_absolute_percentage_error",
}
METRIC_ALIASES = {"acc": "accuracy", "mae": "mean_absolute_error", "mse": "mean_squared_error",
                  "rmse": "root_mean_squared_error", "mape": "mean_absolute_percentage_error",
                  "top_k": "top_k_categorical_accuracy", "fmeasure": "f1_score", "f1": "f1_score"}

_COMMON_OPT = {"learning_rate": None, "clipnorm": None, "clipvalue": None, "global_clipnorm": None,
               "decay": 0.0, "weight_decay": None}
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
    "rmsprop": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False},
    "adagrad": {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
    "adadelta": {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7},
    "adam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False},
    "adamw": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False,
              "weight_decay": 0.004},
    "adamax": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "nadam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
}
OPTIMIZER_ARG_RENAMES = {"lr": "learning_rate"}

SCHEDULES = {
    "exponential_decay": {"initial_learning_rate": None, "decay_steps": None, "decay_rate": None, "staircase": False},
    "inverse_time_decay": {"initial_learning_rate": None, "decay_steps": None, "decay_rate": None, "staircase": False},
    "piecewise_constant": {"boundaries": None, "values": None},
    "polynomial_decay": {"initial_learning_rate": None, "decay_steps": None, "end_learning_rate": 0.0001,
                         "power": 1.0, "cycle": False},
    "cosine_decay": {"initial_learning_rate": None, "decay_steps": None, "alpha": 0.0, "warmup_target": None,
                     "warmup_steps": 0},
}

# ---------------------------------------------------------------------- callbacks: one typed model per callback


def _callback_number(v):
    """A YAML number (an int is fine); booleans and strings are not numbers."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"must be a number, not {v!r}")
    return float(v)


def _callback_whole(v):
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"must be a whole number, not {v!r}")
    return v


def _callback_flag(v):
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, not {v!r}")
    return v


CbNumber = Annotated[float, BeforeValidator(_callback_number)]
CbWhole = Annotated[int, BeforeValidator(_callback_whole)]
CbFlag = Annotated[bool, BeforeValidator(_callback_flag)]
CbMode = Literal["auto", "min", "max"]
MONITOR_DOC = "the logged value to watch: loss, val_loss, accuracy, val_accuracy, ..."
MODE_DOC = "min: lower is better, max: higher is better, auto: max for accuracy-like names, else min"


class _CallbackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verbose: CbWhole = Field(0, ge=0, description="1: print a line when the callback acts")


class EarlyStoppingConfig(_CallbackConfig):
    """Stop training when the monitored value has stopped improving (Keras 3 semantics)."""

    type: Literal["EarlyStopping"] = "EarlyStopping"
    monitor: str = Field("val_loss", min_length=1, description=MONITOR_DOC)
    min_delta: CbNumber = Field(0.0, description="smaller changes do not count as an improvement")
    patience: CbWhole = Field(0, ge=0, description="epochs without improvement before training stops")
    mode: CbMode = Field("auto", description=MODE_DOC)
    baseline: CbNumber | None = Field(None, description="the value to beat: waiting counts until it is beaten")
    restore_best_weights: CbFlag = Field(False, description="end with the weights of the best epoch")
    start_from_epoch: CbWhole = Field(0, ge=0, description="epochs to train before watching starts (warm-up)")


class ModelCheckpointConfig(_CallbackConfig):
    """Save the model during training: a run directory, or a .safetensors weights file."""

    type: Literal["ModelCheckpoint"] = "ModelCheckpoint"
    filepath: str = Field("checkpoints/epoch{epoch:03d}", min_length=1,
                          description="relative to the run directory; {epoch} and logged values are filled in, "
                                      "e.g. ckpt-{epoch:02d}-{val_loss:.3f}")
    monitor: str = Field("val_loss", min_length=1, description=MONITOR_DOC)
    save_best_only: CbFlag = Field(False, description="save only when the monitored value improves")
    mode: CbMode = Field("auto", description=MODE_DOC)
    save_weights_only: CbFlag = Field(False, description="write only the weights (.safetensors) instead of a whole "
                                                       "run directory")
    period: CbWhole = Field(1, ge=1, description="save every this many epochs (Keras 1/2 `period`)")
    initial_value_threshold: CbNumber | None = Field(None, description="with save_best_only: a value to beat first")


class ReduceLROnPlateauConfig(_CallbackConfig):
    """Lower the learning rate when the monitored value has stopped improving (Keras 3 semantics)."""

    type: Literal["ReduceLROnPlateau"] = "ReduceLROnPlateau"
    monitor: str = Field("val_loss", min_length=1, description=MONITOR_DOC)
    factor: CbNumber = Field(0.1, gt=0.0, lt=1.0, description="new learning rate = old * factor")
    patience: CbWhole = Field(10, ge=0, description="epochs without improvement before the rate is lowered")
    mode: CbMode = Field("auto", description=MODE_DOC)
    min_delta: CbNumber = Field(1e-4, description="smaller changes do not count as an improvement")
    cooldown: CbWhole = Field(0, ge=0, description="epochs to wait after lowering before watching again")
    min_lr: CbNumber = Field(0.0, ge=0.0, description="the learning rate never goes below this")


class LearningRateSchedulerConfig(_CallbackConfig):
    """Set the learning rate at the start of every epoch from an expression."""

    type: Literal["LearningRateScheduler"] = "LearningRateScheduler"
    schedule: str = Field(min_length=1, description="an expression in `epoch` (from 0) and `lr`, "
                                                    "e.g. \"lr * 0.5 if epoch >= 10 else lr\"")


class CSVLoggerConfig(BaseModel):
    """Write every epoch's logged values to a CSV file."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["CSVLogger"] = "CSVLogger"
    filename: str = Field("training.csv", min_length=1,
                          description="relative to the run directory (`train`) or the current folder (Python)")
    separator: str = Field(",", min_length=1, description="the column separator")
    append: CbFlag = Field(False, description="add to an existing file instead of replacing it")


class TerminateOnNaNConfig(BaseModel):
    """Stop training at the first batch whose loss is NaN or infinite."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["TerminateOnNaN"] = "TerminateOnNaN"
    raise_error: CbFlag = Field(False, description="fail at once instead of ending the run (the run still keeps "
                                                 "the last good epoch)")


CALLBACK_MODELS: dict[str, type[BaseModel]] = {
    m.model_fields["type"].default: m for m in (EarlyStoppingConfig, ModelCheckpointConfig, ReduceLROnPlateauConfig,
                                                LearningRateSchedulerConfig, CSVLoggerConfig, TerminateOnNaNConfig)}
# name -> {parameter: default}; a required parameter's default is None
CALLBACKS: dict[str, dict[str, Any]] = {
    name: {k: (None if f.is_required() else f.default) for k, f in m.model_fields.items() if k != "type"}
    for name, m in CALLBACK_MODELS.items()}
CallbackConfig = Annotated[Union[tuple(CALLBACK_MODELS.values())], Field(discriminator="type")]  # noqa: UP007
CALLBACK_ARG_RENAMES = {"epsilon": "min_delta"}


class SettingError(ValueError):
    """A ValueError that knows which argument below the pydantic field is wrong (``path``, e.g.
    ("learning_rate", "decay_steps")), so the error points at that line, not at the whole field."""

    def __init__(self, message: str, path: tuple = ()):
        super().__init__(message)
        self.path = tuple(path)


def _under(path: tuple, fn, *args):
    """``fn(*args)``, with ``path`` put in front of the location of any error it raises."""
    try:
        return fn(*args)
    except SettingError as exc:
        raise SettingError(str(exc), (*path, *exc.path)) from None
    except ValueError as exc:
        raise SettingError(str(exc), path) from None


# ---------------------------------------------------------------------- typed arguments
# A rule checks one argument's value and raises SettingError(path=(argument,)) if the engine could not use it:
# the checks `validate` makes so that a config it accepts also trains.

def _number(lo=None, hi=None, *, lo_open=False, hi_open=False, integer=False, allow_inf=False, null=False):
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi}")
    what = ("an integer" if integer else "a number") + (" " + " and ".join(parts) if parts else "") + (
        " or null" if null else "")

    def check(key: str, v):
        if v is None and null:
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and isinstance(v, float)
                                                                       and not v.is_integer()):
            raise SettingError(f"{key} must be {what}, not {v!r}", (key,))
        if math.isnan(v) or (math.isinf(v) and not allow_inf):
            raise SettingError(f"{key} must be {what} (finite), not {v!r}", (key,))
        if lo is not None and (v < lo or (lo_open and v == lo)) or hi is not None and (v > hi or (hi_open
                                                                                                  and v == hi)):
            raise SettingError(f"{key} must be {what}, not {v!r}", (key,))
    return check


def _boolean(key: str, v):
    if not isinstance(v, bool):
        raise SettingError(f"{key} must be true or false, not {v!r}", (key,))


_POSITIVE = _number(0, lo_open=True)
_CLIP = _number(0, lo_open=True, allow_inf=True, null=True)
_FRACTION = _number(0, 1, hi_open=True)  # betas and rho: 1 would divide by zero in the bias correction
OPTIMIZER_RULES = {
    "momentum": _number(0, 1), "nesterov": _boolean, "centered": _boolean, "amsgrad": _boolean,
    "rho": _FRACTION, "beta_1": _FRACTION, "beta_2": _FRACTION, "epsilon": _number(0),
    "initial_accumulator_value": _number(0), "clipnorm": _CLIP, "clipvalue": _CLIP, "global_clipnorm": _CLIP,
    "decay": _number(0), "weight_decay": _number(0, null=True), "schedule_decay": _number(0),
}
SCHEDULE_RULES = {
    "initial_learning_rate": _POSITIVE, "decay_steps": _POSITIVE, "staircase": _boolean, "cycle": _boolean,
    "end_learning_rate": _number(0), "power": _number(0), "alpha": _number(0, 1),
    "warmup_target": _number(0, lo_open=True, null=True), "warmup_steps": _number(0),
}
LOSS_RULES = {"from_logits": _boolean, "label_smoothing": _number(0, 1), "delta": _POSITIVE,
              "axis": _number(integer=True)}
METRIC_RULES = {"k": _number(1, integer=True), "threshold": _number(0, 1),
                "num_thresholds": _number(2, 100_000, integer=True)}


def _check_rules(args: dict, rules: dict, keys: dict | None = None) -> None:
    """Apply ``rules`` to ``args``; ``keys`` maps a canonical argument name to the one the user wrote."""
    for k, v in args.items():
        rule = rules.get(k)
        if rule is not None:
            _under((), rule, (keys or {}).get(k, k), v)


def check_schedule(name: str, args: dict) -> None:
    _check_rules(args, SCHEDULE_RULES)
    if name == "exponential_decay" or name == "inverse_time_decay":
        _number(0, lo_open=True)("decay_rate", args.get("decay_rate"))
    if name == "piecewise_constant":
        boundaries, values = args.get("boundaries"), args.get("values")
        if not isinstance(boundaries, list):
            raise SettingError(f"boundaries must be a list of step numbers, not {boundaries!r}", ("boundaries",))
        if not isinstance(values, list) or not values:
            raise SettingError(f"values must be a non-empty list of learning rates, not {values!r}", ("values",))
        for i, b in enumerate(boundaries):
            _under(("boundaries",), _number(0), i, b)
        for i, v in enumerate(values):
            _under(("values",), _POSITIVE, i, v)
        if len(values) != len(boundaries) + 1:
            raise SettingError(f"piecewise_constant needs one more value than boundaries; got {len(boundaries)} "
                               f"boundaries and {len(values)} values", ("values",))
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise SettingError(f"boundaries must increase, got {boundaries}", ("boundaries",))


def canonical_name(value: str, table, aliases: dict, kind: str) -> str:
    key = str(value).lower()
    key = aliases.get(key, key)
    if key not in table:
        near = did_you_mean(str(value), sorted(set(table) | set(aliases)))
        raise ValueError(f"unknown {kind} {value!r}" + (f"; did you mean {near!r}?" if near else
                                                        f" (known: {', '.join(sorted(table))})"))
    return key


def _check_args(kind: str, name: str, args: dict, allowed: dict):
    for k in args:
        if k not in allowed:
            near = did_you_mean(k, list(allowed))
            raise ValueError(f"{kind} {name!r} has no argument {k!r}" + (f"; did you mean {near!r}?" if near else "")
                             + f" (it takes: {', '.join(allowed) or 'nothing'})")


def normalize_loss(value: Any) -> dict:
    if isinstance(value, str):
        return {"type": canonical_name(value, LOSSES, LOSS_ALIASES, "loss")}
    if isinstance(value, dict) and "type" in value:
        args = dict(value)
        if not isinstance(args["type"], str):
            raise SettingError(f"a loss type is a name like 'mse', not {args['type']!r}", ("type",))
        name = _under(("type",), canonical_name, args.pop("type"), LOSSES, LOSS_ALIASES, "loss")
        _check_args("loss", name, args, LOSSES[name])
        _check_rules(args, LOSS_RULES)
        return {"type": name, **args}
    raise ValueError(f"a loss is a name like 'mse' or {{type: ..., from_logits: true}}, not {value!r}")


def normalize_optimizer(value: Any) -> dict:
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or "type" not in value:
        raise ValueError(f"an optimizer is a name like 'adam' or {{type: adam, learning_rate: 0.01}}, not {value!r}")
    args = dict(value)
    if not isinstance(args["type"], str):
        raise SettingError(f"an optimizer type is a name like 'adam', not {args['type']!r}", ("type",))
    name = _under(("type",), canonical_name, args.pop("type"), OPTIMIZERS, {}, "optimizer")
    keys = {}  # canonical argument -> the name the user wrote (to point at it)
    for old, new in OPTIMIZER_ARG_RENAMES.items():
        if old in args:
            if new in args:
                raise SettingError(f"'{old}' and '{new}' mean the same argument; give only one", (old,))
            args[new] = args.pop(old)
            keys[new] = old
    allowed = {**_COMMON_OPT, **OPTIMIZERS[name]}
    if name == "nadam":
        allowed["schedule_decay"] = 0.004
    _check_args("optimizer", name, args, allowed)
    _check_rules(args, OPTIMIZER_RULES, keys)
    lr = args.get("learning_rate")
    lr_key = keys.get("learning_rate", "learning_rate")
    if isinstance(lr, dict):
        sched = dict(lr)
        if not isinstance(sched.get("type", ""), str):
            raise SettingError(f"a schedule type is a name like 'exponential_decay', not {sched['type']!r}",
                               (lr_key, "type"))
        sname = _under((lr_key,), canonical_name, sched.pop("type", ""), SCHEDULES, {}, "learning-rate schedule")
        _under((lr_key,), _check_args, "learning-rate schedule", sname, sched, SCHEDULES[sname])
        missing = [k for k, d in SCHEDULES[sname].items() if d is None and k != "warmup_target" and k not in sched]
        if missing:
            raise SettingError(f"learning-rate schedule {sname!r} needs {', '.join(missing)}", (lr_key,))
        _under((lr_key,), check_schedule, sname, sched)
        args["learning_rate"] = {"type": sname, **sched}
    elif lr is not None:
        _number(0, lo_open=True)(lr_key, lr)
    return {"type": name, **args}


def normalize_metric(value: Any) -> str | dict:
    if isinstance(value, str):
        return canonical_name(value, METRICS, METRIC_ALIASES, "metric")
    if isinstance(value, dict) and "type" in value:
        args = dict(value)
        if not isinstance(args["type"], str):
            raise SettingError(f"a metric type is a name like 'accuracy', not {args['type']!r}", ("type",))
        name = _under(("type",), canonical_name, args.pop("type"), METRICS, METRIC_ALIASES, "metric")
        allowed = {"k": 5} if "top_k" in name else {"threshold": 0.5} if name in (
            "binary_accuracy", "precision", "recall", "f1_score") else {"num_thresholds": 200} if name == "auc" else {}
        _check_args("metric", name, args, allowed)
        _check_rules(args, METRIC_RULES)
        return {"type": name, **args}
    raise ValueError(f"a metric is a name like 'accuracy', not {value!r}")


def normalize_callback(value: Any) -> dict:
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or "type" not in value:
        raise ValueError(f"a callback is {{type: EarlyStopping, patience: 5, ...}}, not {value!r}")
    args = dict(value)
    raw = str(args.pop("type"))
    lookup = {k.lower(): k for k in CALLBACKS}
    name = lookup.get(raw.lower())
    if name is None:
        near = did_you_mean(raw, list(CALLBACKS))
        raise ValueError(f"unknown callback {raw!r}" + (f"; did you mean {near!r}?" if near else "")
                         + f" (known: {', '.join(CALLBACKS)})")
    for old, new in CALLBACK_ARG_RENAMES.items():
        if old in args and new in CALLBACKS[name]:
            args[new] = args.pop(old)
    _check_args("callback", name, args, CALLBACKS[name])
    if name == "LearningRateScheduler":
        if not isinstance(args.get("schedule"), str):
            raise ValueError("LearningRateScheduler needs `schedule:`, an expression in `epoch` and `lr`, "
                             "e.g. \"lr * 0.5 if epoch >= 10 else lr\"")
        from ..expressions import check_scalar_expression

        check_scalar_expression(args["schedule"], ["epoch", "lr"])
    if "mode" in args and args["mode"] not in ("auto", "min", "max"):
        raise ValueError(f"mode must be auto, min or max, not {args['mode']!r}")
    return {"type": name, **args}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class TrainingConfig(_Strict):
    loss: Any = Field("mean_squared_error", description="loss name, {type: .., args}, or one per output "
                                                        "(mapping output name -> loss, or a list)")
    loss_weights: list[float] | dict[str, float] | None = Field(None, description="weight of each output's loss")
    optimizer: Any = Field("adam", description="optimizer name or {type: adam, learning_rate: 0.001, ...}")
    metrics: Any = Field(default_factory=list, description="metric names, or a mapping output name -> list")
    epochs: int = Field(1, ge=1, description="passes over the training data")
    batch_size: int = Field(32, ge=1, description="samples per gradient step")
    shuffle: bool = Field(True, description="shuffle the training samples every epoch")
    validation_split: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of the training data held out "
                                                                    "(the last samples, as in Keras)")
    class_weight: dict[str, float] | Literal["balanced"] | None = Field(
        None, description="loss weight per class label, or 'balanced'")
    callbacks: list[CallbackConfig] = Field(
        default_factory=list, description="EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, LearningRateScheduler, "
                                          "CSVLogger, TerminateOnNaN (`layerforge callbacks` lists their parameters)")
    initial_epoch: int = Field(0, ge=0, description="epoch to start counting from")
    init_from: str | None = Field(None, description="fine-tune: start from the weights of this run directory (e.g. "
                                                    "one `layerforge import` wrote), matched by layer name with "
                                                    "shapes checked; relative to the config file's folder")

    @model_validator(mode="before")
    @classmethod
    def _keras1_names(cls, data):
        # Keras 1 fit() called it nb_epoch
        if isinstance(data, dict) and "nb_epoch" in data:
            data = dict(data)
            if "epochs" in data:
                raise ValueError("nb_epoch (Keras 1) and epochs mean the same; give only one")
            data["epochs"] = data.pop("nb_epoch")
        return data

    @field_validator("loss", mode="before")
    @classmethod
    def _loss(cls, v):
        if isinstance(v, list):
            return [_under((i,), normalize_loss, x) for i, x in enumerate(v)]
        if isinstance(v, dict) and "type" not in v:
            return {str(k): _under((k,), normalize_loss, x) for k, x in v.items()}
        return normalize_loss(v)

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer(cls, v):
        return normalize_optimizer(v)

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics(cls, v):
        if v is None:
            return []
        if isinstance(v, (str, dict)) and not (isinstance(v, dict) and "type" not in v):
            v = [v]
        if isinstance(v, dict):
            return {str(k): [_under((k, i) if isinstance(x, list) else (k,), normalize_metric, m)
                             for i, m in enumerate(x if isinstance(x, list) else [x])] for k, x in v.items()}
        if not isinstance(v, list):
            raise ValueError(f"metrics is a list of names, not {v!r}")
        return [_under((i,), normalize_metric, m) for i, m in enumerate(v)]

    @field_validator("callbacks", mode="before")
    @classmethod
    def _callbacks(cls, v):
        if v is None:
            return []
        if isinstance(v, (str, dict)):  # one callback written without the list around it
            v = [v]
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"callbacks is a list such as [EarlyStopping, {{type: CSVLogger, filename: log.csv}}], "
                             f"not {v!r}")
        return [normalize_callback(c) for c in v]

    @field_validator("class_weight", mode="before")
    @classmethod
    def _class_weight(cls, v):
        if isinstance(v, dict):
            return {str(k): x for k, x in v.items()}
        return v


class DataSource(_Strict):
    path: str = Field(description="CSV/TSV, NPY, NPZ, Parquet, Feather or JSON Lines file, or a folder of images "
                                  "(relative to the config file's folder)")
    format: Literal["auto", "csv", "tsv", "npy", "npz", "parquet", "feather", "jsonl", "image_folder"] = Field(
        "auto", description="file format; auto = by extension (a folder: image_folder)")
    target: str | int | list[str | int] | None = Field(
        None, description="CSV: target column name(s) or index; NPZ: array name of the targets")
    features: list[str | int] | None = Field(None, description="CSV: feature columns (default: all but the target); "
                                                             "NPZ: array names, one per model input")
    target_path: str | None = Field(None, description="NPY: a second file holding the targets")
    sample_weight: str | int | None = Field(None, description="CSV column or NPZ array with per-sample weights")
    header: bool | None = Field(None, description="CSV has a header row (default: detected)")
    delimiter: str | None = Field(None, description="CSV delimiter (default: ',' for .csv, tab for .tsv)")
    mmap: bool | None = Field(None, description="NPY: memory-map (default: when the file is over 100 MB)")
    # image folders (layerforge.data.images), raw text and numeric preprocessing (layerforge.data.preprocess)
    image_size: list[int] | None = Field(None, description="image_folder: [height, width] every image is resized "
                                                           "to (default: the model input's)")
    color_mode: Literal["grayscale", "rgb", "rgba"] | None = Field(
        None, description="image_folder: channels (default: by the model input's last axis: 1, 3 or 4)")
    interpolation: Literal["bilinear", "nearest", "bicubic", "lanczos", "box", "hamming"] = Field(
        "bilinear", description="image_folder: resizing filter")
    rescale: float | None = Field(None, description="image_folder: multiply pixel values (0..255) by this, "
                                                    "e.g. 0.00392156862745098 for [0, 1]")
    text: TextOptions | None = Field(None, description="a raw text column turned into token ids (vocabulary "
                                                       "fitted on the training split, saved with the run)")
    preprocess: PreprocessOptions | None = Field(None, description="numeric feature scaling and missing-value "
                                                                   "filling, fitted on the training split")

    @field_validator("image_size", mode="before")
    @classmethod
    def _image_size(cls, v):
        return check_image_size(v)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        return {"path": v} if isinstance(v, str) else v


class DataConfig(_Strict):
    train: DataSource | None = Field(None, description="training data")
    validation: DataSource | None = Field(None, description="validation data (instead of validation_split)")
    test: DataSource | None = Field(None, description="data for `layerforge evaluate` when no --data is given")
