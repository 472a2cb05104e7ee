"""A Keras training_config (Keras 1/2 HDF5 attribute, Keras 1.0 top-level keys) or compile_config (Keras 3) ->
layerforge's `training:` section: loss, optimizer with its settings, metrics, loss weights."""

from __future__ import annotations

import re

from .layer_map import Dialect, _number, _unwrap


def _snake(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


_OPT_NAMES = {"sgd": "sgd", "rmsprop": "rmsprop", "r_m_sprop": "rmsprop", "adagrad": "adagrad", "adadelta": "adadelta",
              "adam": "adam", "adamax": "adamax", "nadam": "nadam", "adam_w": "adamw", "adamw": "adamw"}


def optimizer(value, d: Dialect):
    from ...config.training import _COMMON_OPT, OPTIMIZERS

    if value is None:
        return None
    if isinstance(value, dict) and "class_name" not in value and "name" in value:  # Keras 1.0: {"name": "SGD", ...}
        value = {"class_name": value["name"], "config": {k: v for k, v in value.items() if k != "name"}}
    name, args = _unwrap(value)
    if name is None:
        return None
    name = name.split(">")[-1]  # tf-keras registers its built-ins as "Custom>Adam"
    key = _OPT_NAMES.get(_snake(name), _OPT_NAMES.get(name.lower()))
    if key is None:
        d.ignored.append(f"training: optimizer {name!r} (not in layerforge; `training.optimizer` is left at its "
                         "default)")
        return None
    allowed = {**_COMMON_OPT, **OPTIMIZERS[key]}
    if key == "nadam":
        allowed["schedule_decay"] = 0.004
    out: dict = {"type": key}
    for k, v in args.items():
        k = "learning_rate" if k == "lr" else k
        v = _number(v)
        if k not in allowed or v is None or k == "name":
            continue
        if k == "learning_rate" and isinstance(v, dict):
            d.ignored.append("training: a learning-rate schedule object (give one under training.optimizer."
                             "learning_rate by hand)")
            continue
        if k == "decay" and not v:
            continue
        if isinstance(v, float):
            v = float(f"{v:.7g}")  # Keras 3 stores float32 values: 0.0010000000474974513 is 0.001
        if allowed.get(k) == v and k != "learning_rate":
            continue
        out[k] = v
    return out


def _loss(value, d: Dialect):
    from ...config.training import LOSS_ALIASES, LOSSES

    if isinstance(value, (dict,)) and ("class_name" in value) or isinstance(value, str):
        name, args = _unwrap(value)
        key = _snake(name) if name[:1].isupper() else name.lower()
        key = LOSS_ALIASES.get(key, key)
        if key not in LOSSES:
            d.ignored.append(f"training: loss {name!r} (not in layerforge)")
            return None
        keep = {k: v for k, v in args.items() if k in LOSSES[key] and v != LOSSES[key][k]}
        return {"type": key, **keep} if keep else key
    return None


def _metric(value, d: Dialect):
    from ...config.training import METRIC_ALIASES, METRICS

    if isinstance(value, dict):
        cfg = value.get("config") if isinstance(value.get("config"), dict) else {}
        name = cfg.get("fn") or cfg.get("name") or value.get("class_name")
    else:
        name = value
    if not isinstance(name, str):
        return None
    key = _snake(name) if name[:1].isupper() else name.lower()
    key = METRIC_ALIASES.get(key, key)
    if key not in METRICS:
        d.ignored.append(f"training: metric {name!r} (not in layerforge)")
        return None
    return key


def training_section(tc: dict | None, d: Dialect) -> dict | None:
    if not tc:
        return None
    if "keras3_compile" in tc:
        c = tc["keras3_compile"]
        tc = {"optimizer_config": c.get("optimizer"), "loss": c.get("loss"), "metrics": c.get("metrics"),
              "loss_weights": c.get("loss_weights")}
    out: dict = {}
    loss = tc.get("loss")
    if isinstance(loss, dict) and "class_name" not in loss:
        mapped = {k: _loss(v, d) for k, v in loss.items()}
        if all(v is not None for v in mapped.values()):
            out["loss"] = mapped
    elif isinstance(loss, list):
        mapped = [_loss(v, d) for v in loss]
        if all(v is not None for v in mapped):
            out["loss"] = mapped if len(mapped) > 1 else mapped[0]
    elif loss is not None:
        v = _loss(loss, d)
        if v is not None:
            out["loss"] = v
    opt = optimizer(tc.get("optimizer_config"), d)
    if opt is not None:
        out["optimizer"] = opt
    metrics = tc.get("metrics")
    if isinstance(metrics, dict):
        mm = {k: [m for m in (_metric(x, d) for x in (v if isinstance(v, list) else [v])) if m] for k, v in
              metrics.items()}
        if any(mm.values()):
            out["metrics"] = mm
    elif isinstance(metrics, list):
        flat = []
        for m in metrics:  # Keras 3 may nest one list per output
            for x in (m if isinstance(m, list) else [m]):
                v = _metric(x, d)
                if v and v not in flat:
                    flat.append(v)
        if flat:
            out["metrics"] = flat
    lw = tc.get("loss_weights")
    if isinstance(lw, (list, dict)) and lw:
        out["loss_weights"] = lw
    return out or None
