"""`layerforge report`: one self-contained HTML page about a trained model on labelled test data.

The page holds the model summary, the learning curves, the test loss and metrics and, per output, for a
classifier the confusion matrix and per-class precision/recall/F1 (plus ROC and precision-recall curves
with their areas when there are two classes), for regression predicted-vs-actual and residual plots with
MAE, RMSE and R². Pictures are PNGs embedded as data: URIs, styles inline: the file can be mailed or opened
anywhere, offline. The numbers come from plain numpy functions below (tested on their own).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
from pathlib import Path

import numpy as np

from ..layers.base import show_shapes

# ---------------------------------------------------------------------------------------------- numbers


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; rows are the true class, columns the predicted one."""
    idx = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1 and support per class (0 where undefined, as scikit-learn's zero_division=0)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def roc_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(false positive rates, true positive rates, area under the curve) over every threshold."""
    y = np.asarray(y_true).astype(bool)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    s, y = np.asarray(score, dtype=np.float64)[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    P, N = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    tpr = np.r_[0.0, tps / P]
    fpr = np.r_[0.0, fps / N]
    return fpr, tpr, float(np.trapezoid(tpr, fpr) if hasattr(np, "trapezoid") else np.trapz(tpr, fpr))


def pr_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(recall, precision, average precision) over every threshold."""
    y = np.asarray(y_true).astype(bool)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    s, y = np.asarray(score, dtype=np.float64)[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last].astype(np.float64)
    predicted = (last + 1).astype(np.float64)
    precision = tps / predicted
    recall = tps / max(int(y.sum()), 1)
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return np.r_[0.0, recall], np.r_[1.0, precision], ap


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    err = p - t
    ss_tot = float(((t - t.mean()) ** 2).sum())
    return {"MAE": float(np.abs(err).mean()), "RMSE": float(np.sqrt((err ** 2).mean())),
            "R²": float(1 - (err ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan")}


# ---------------------------------------------------------------------------------------------- pictures


def _png(fig) -> str:
    from .curves import matplotlib_pyplot

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    matplotlib_pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{uri}">'


def _binary_figure(y_true, score, pos_label: str):
    from .curves import matplotlib_pyplot

    plt = matplotlib_pyplot()
    fpr, tpr, auc = roc_curve(y_true, score)
    rec, prec, ap = pr_curve(y_true, score)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8))
    a.plot(fpr, tpr, color="#1f77b4", lw=2, label=f"AUC = {auc:.3f}")
    a.plot([0, 1], [0, 1], color="#999999", ls="--", lw=1)
    a.set(title=f"ROC curve (positive: {pos_label})", xlabel="false positive rate", ylabel="true positive rate",
          xlim=(0, 1), ylim=(0, 1.02))
    a.legend(loc="lower right")
    b.plot(rec, prec, color="#d62728", lw=2, drawstyle="steps-post", label=f"AP = {ap:.3f}")
    b.axhline(float(np.mean(y_true)), color="#999999", ls="--", lw=1)
    b.set(title="precision-recall curve", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    b.legend(loc="lower left")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig, auc, ap


def _regression_figure(t, p, name: str):
    from .curves import matplotlib_pyplot

    plt = matplotlib_pyplot()
    t, p = np.asarray(t, dtype=np.float64).ravel(), np.asarray(p, dtype=np.float64).ravel()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8))
    a.scatter(t, p, s=10, alpha=0.6, color="#1f77b4")
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    a.plot([lo, hi], [lo, hi], color="#999999", ls="--", lw=1)
    a.set(title=f"{name}: predicted vs actual", xlabel="actual", ylabel="predicted")
    b.scatter(p, p - t, s=10, alpha=0.6, color="#d62728")
    b.axhline(0, color="#999999", ls="--", lw=1)
    b.set(title="residuals (predicted - actual)", xlabel="predicted", ylabel="residual")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- html

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;padding:0 16px;
max-width:1000px;color:#222}
h1{font-size:22px;margin-bottom:2px} h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:28px}
h3{font-size:15px} .meta{color:#666;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} th,td{border:1px solid #ddd;padding:3px 8px}
th{background:#f3f5f8;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
table.cm td{text-align:center;min-width:34px} img{max-width:100%}
.kv td:first-child{font-weight:600}
"""


def _e(v) -> str:
    return html.escape(str(v))


def _num(v) -> str:
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return f"{float(v):.4g}"


def _summary_html(data: dict) -> str:
    rows = "".join(f"<tr><td>{_e(r['name'])} ({_e(r['type'])})</td><td>{_e(show_shapes(r['output_shape']))}</td>"
                   f"<td class=n>{r['params']:,}</td><td>{_e(', '.join(r['connected_to']))}</td></tr>"
                   for r in data["layers"])
    return (f"<table id=summary><tr><th>Layer (type)</th><th>Output shape</th><th>Param #</th>"
            f"<th>Connected to</th></tr>{rows}</table>"
            f"<p>Total params: {data['total_params']:,} (trainable {data['trainable_params']:,}, "
            f"non-trainable {data['non_trainable_params']:,}); forward FLOPs per sample: {data['total_flops']:,}</p>")


def _cm_html(cm: np.ndarray, classes: list[str]) -> str:
    peak = max(int(cm.max()), 1)
    head = "".join(f"<th>{_e(c)}</th>" for c in classes)
    body = ""
    for i, c in enumerate(classes):
        cells = ""
        for j in range(len(classes)):
            v = int(cm[i, j])
            alpha = v / peak
            color = f"rgba(31,119,180,{alpha:.2f})" if i == j else f"rgba(214,39,40,{alpha:.2f})"
            fg = "#fff" if alpha > 0.55 else "#222"
            cells += f'<td style="background:{color};color:{fg}">{v}</td>'
        body += f"<tr><th>{_e(c)}</th>{cells}</tr>"
    return (f'<table class=cm><tr><th>true \\ predicted</th>{head}</tr>{body}</table>')


def _prf_html(scores: dict, classes: list[str]) -> str:
    rows = ""
    for i, c in enumerate(classes):
        rows += (f"<tr><td>{_e(c)}</td><td class=n>{scores['precision'][i]:.3f}</td>"
                 f"<td class=n>{scores['recall'][i]:.3f}</td><td class=n>{scores['f1'][i]:.3f}</td>"
                 f"<td class=n>{int(scores['support'][i])}</td></tr>")
    sup = scores["support"]
    w = sup / max(int(sup.sum()), 1)
    rows += (f"<tr><th>macro avg</th><td class=n>{scores['precision'].mean():.3f}</td>"
             f"<td class=n>{scores['recall'].mean():.3f}</td><td class=n>{scores['f1'].mean():.3f}</td>"
             f"<td class=n>{int(sup.sum())}</td></tr>"
             f"<tr><th>weighted avg</th><td class=n>{(scores['precision'] * w).sum():.3f}</td>"
             f"<td class=n>{(scores['recall'] * w).sum():.3f}</td><td class=n>{(scores['f1'] * w).sum():.3f}</td>"
             f"<td class=n>{int(sup.sum())}</td></tr>")
    return ("<table class=prf><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
            f"{rows}</table>")


def _true_classes(y: np.ndarray, info) -> np.ndarray:
    y = np.asarray(y)
    if info.sparse:
        return y.reshape(len(y)).astype(np.int64)
    flat = y.reshape(len(y), -1)
    if flat.shape[1] == 1:
        return (flat[:, 0] >= 0.5).astype(np.int64)
    return flat.argmax(axis=1).astype(np.int64)


def _output_section(info, y, pred, enc: dict | None, loss) -> str:
    from ..data.writers import predicted_indices

    kind = loss["type"] if isinstance(loss, dict) else str(loss)
    flat = pred.reshape(len(pred), -1)
    is_class = info.sparse or info.categorical or enc is not None or kind in ("binary_crossentropy", "hinge",
                                                                              "squared_hinge")
    title = f"<h2>Output {_e(info.name)}</h2>"
    if is_class and (y.ndim <= 2):
        n_classes = max(len(enc["classes"]) if enc else 0, 2 if flat.shape[1] == 1 else flat.shape[1])
        classes = [str(c) for c in enc["classes"]] if enc else [str(k) for k in range(n_classes)]
        classes += [f"unit {k}" for k in range(len(classes), n_classes)]
        t = _true_classes(y, info)
        p = predicted_indices(flat, n_classes)
        cm = confusion_matrix(t, p, n_classes)
        scores = per_class_scores(cm)
        acc = float(np.trace(cm)) / max(int(cm.sum()), 1)
        out = (f"{title}<p>classifier, {len(t):,} samples, accuracy {acc:.4f}</p>"
               f"<h3>Confusion matrix</h3>{_cm_html(cm, classes)}<h3>Precision, recall, F1 per class</h3>"
               f"{_prf_html(scores, classes)}")
        if n_classes == 2:
            score = flat[:, 0] if flat.shape[1] == 1 else flat[:, 1]
            if len(np.unique(t)) == 2:
                fig, auc, ap = _binary_figure(t, score, classes[1])
                out += (f"<h3>ROC and precision-recall curves</h3><p>ROC AUC {auc:.4f}, average precision "
                        f"{ap:.4f}</p>{_img(_png(fig), 'ROC and PR curves')}")
            else:
                out += "<p>ROC and PR curves need test samples of both classes.</p>"
        return out
    t = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if t.shape[1] != flat.shape[1]:
        return f"{title}<p>targets and predictions have different sizes; no plots.</p>"
    scores = regression_scores(t, flat)
    table = "".join(f"<tr><td>{k}</td><td class=n>{_num(v)}</td></tr>" for k, v in scores.items())
    return (f"{title}<p>regression, {len(t):,} samples"
            + (f", {t.shape[1]} values each (plots pool them)" if t.shape[1] > 1 else "") + "</p>"
            f"<table class=kv>{table}</table>{_img(_png(_regression_figure(t, flat, info.name)), 'regression')}")


def build_report(model, run_dir: Path, ds, results: dict, outs: list[np.ndarray], history: list[dict]) -> str:
    from ..summary import summary_data
    from .curves import curves_figure

    name = model.spec.config.name or Path(run_dir).name
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>layerforge report: {_e(name)}"
             f"</title><style>{CSS}</style></head><body>",
             f"<h1>{_e(name)}</h1><p class=meta>run {_e(run_dir)} &middot; test data {_e(ds.source or '')} "
             f"({ds.n:,} samples) &middot; written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by layerforge</p>"]
    parts.append("<h2>Model</h2>" + _summary_html(summary_data(model.graph)))
    metrics = "".join(f"<tr><td>{_e(k)}</td><td class=n>{_num(v)}</td></tr>" for k, v in results.items())
    parts.append(f"<h2>Test metrics</h2><table class=kv id=metrics>{metrics}</table>")
    if history:
        parts.append("<h2>Learning curves</h2>" + _img(_png(curves_figure([(name, history)])), "learning curves"))
    losses = model._loss_per_output()
    for info, y, pred, loss in zip(model._output_infos(), ds.ys, outs, losses):
        parts.append(_output_section(info, np.asarray(y), np.asarray(pred), (model.encoders or {}).get(info.name),
                                     loss))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(run_dir: Path, *, data: Path | None, output: Path, batch_size: int = 256,
                 allow_code: bool = False) -> Path:
    from ..api import load
    from ..errors import ConfigError, Problem
    from ..io.atomic import atomic_write_text
    from .curves import matplotlib_pyplot, read_history

    matplotlib_pyplot()  # a missing matplotlib is reported before the model is loaded
    model = load(run_dir, allow_code=allow_code)
    source = data
    if source is None:
        d = model.spec.config.data
        if not (d and d.test):
            raise ConfigError(problems=[Problem(message="no test data for the report", file=str(run_dir),
                                                hint="pass --data FILE (or set data.test in the config)")])
        source = d.test
    ds = model.load_data(source)
    if ds.ys is None:
        raise ConfigError(problems=[Problem(message="the report needs labelled data (targets)", file=str(run_dir))])
    results = model.evaluate(data=source, batch_size=batch_size)
    outs = model.predict_arrays(ds.xs, batch_size)
    try:
        history = read_history(Path(run_dir))
    except Exception:  # a run without finished epochs still gets a report, without curves
        history = []
    page = build_report(model, Path(run_dir), ds, results, outs, history)
    atomic_write_text(output, page)
    return Path(output)
