"""Pictures: sparkline, learning curves, the HTML report, the layer graph. Compared by structure (axes, lines,
tables, elements), never pixel by pixel."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from layerforge.cli import app
from layerforge.viz.sparkline import BARS, loss_sparkline_line, sparkline

ROOT = Path(__file__).resolve().parent.parent
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], env=ENV)


def test_sparkline():
    assert sparkline([3, 2, 1, 1]) == BARS[-1] + BARS[4] + BARS[0] + BARS[0]
    assert sparkline([1, 1]) == BARS[4] * 2
    assert len(sparkline(range(500), width=40)) == 40
    assert sparkline([1, float("nan"), 0])[1] == " "
    line = loss_sparkline_line([{"loss": 1, "val_loss": 0.9}, {"loss": 0.5, "val_loss": 0.4},
                                {"loss": 0.4, "val_loss": 0.45}])
    assert line.startswith("val_loss ") and "best 0.4 at epoch 2" in line


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short iris runs (one with a learning-rate drop) and a sunspots regression run."""
    from layerforge.api import Model

    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name, extra in (("a", []), ("b", ["training.optimizer.learning_rate=0.02"])):
        m = Model.from_yaml(ROOT / "configs" / "iris.yaml", ["training.epochs=6"] + extra)
        if name == "b":
            m.spec.config.training.callbacks = []
        m.fit()
        if name == "b":  # mark a learning-rate change as ReduceLROnPlateau would leave it
            for row in m.trainer.history[3:]:
                row["learning_rate"] = 0.002
        m.save(base / name)
        out[name] = base / name
    m = Model.from_yaml(ROOT / "configs" / "sunspots.yaml", ["training.epochs=3"])
    m.fit()
    m.save(base / "reg")
    out["reg"] = base / "reg"
    return out


def test_curves_figure_structure(runs):
    pytest.importorskip("matplotlib", reason="pictures need matplotlib (layerforge[plot])")
    from layerforge.viz.curves import curves_figure, lr_changes, metric_names, read_history

    ha, hb = read_history(runs["a"]), read_history(runs["b"])
    assert metric_names([ha]) == ["loss", "accuracy"]
    assert lr_changes(hb) == [4] and lr_changes(ha) == []
    fig = curves_figure([("a", ha), ("b", hb)])
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy"]
    for ax in axes:
        labels = [ln.get_label() for ln in ax.get_lines()]
        assert labels == ["a training", "a validation", "b training", "b validation", "b learning rate changed"]
        train = ax.get_lines()[0]
        assert list(train.get_xdata()) == [1, 2, 3, 4, 5, 6]
        key = ax.get_title()
        np.testing.assert_allclose(train.get_ydata(), [r[key] for r in ha])
        assert ax.get_lines()[1].get_linestyle() == "--"
        assert ax.get_lines()[4].get_xdata()[0] == pytest.approx(3.5)


def test_plot_command_writes_a_png(runs, tmp_path):
    pytest.importorskip("matplotlib", reason="pictures need matplotlib (layerforge[plot])")
    from PIL import Image

    res = run("plot", runs["a"], runs["b"], "-o", tmp_path / "c.png", "--label", "first", "--label", "second")
    assert res.exit_code == 0, res.output
    img = Image.open(tmp_path / "c.png")
    assert img.format == "PNG" and img.size[0] > img.size[1] > 200
    res = run("plot", tmp_path / "nothing")
    assert res.exit_code == 2 and "not a run directory" in res.output
    res = run("plot", runs["a"], "-o", tmp_path / "c.txt")
    assert res.exit_code == 2 and ".png, .svg" in res.output


def test_missing_matplotlib_is_a_clear_message(monkeypatch, runs, tmp_path):
    import builtins

    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    res = run("plot", runs["a"], "-o", tmp_path / "c.png")
    assert res.exit_code == 2 and "layerforge[plot]" in res.output


class Page(HTMLParser):
    """Headings, tables (rows of cell texts, by id or class) and images of an HTML page."""

    def __init__(self):
        super().__init__()
        self.headings, self.tables, self.images, self.links = [], [], [], []
        self._text = None
        self._row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("h1", "h2", "h3"):
            self._text = []
        elif tag == "table":
            self.tables.append({"id": a.get("id"), "class": a.get("class"), "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._text = []
        elif tag == "img":
            self.images.append(a)
        elif tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.links.append(a)

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3") and self._text is not None:
            self.headings.append("".join(self._text).strip())
            self._text = None
        elif tag in ("td", "th") and self._text is not None:
            self._row.append("".join(self._text).strip())
            self._text = None
        elif tag == "tr":
            self.tables[-1]["rows"].append(self._row)

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def table(self, key):
        return next(t for t in self.tables if key in (t["id"], t["class"]))


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text())
    return page


def test_report_for_a_classifier(runs, tmp_path):
    pytest.importorskip("matplotlib", reason="reports need matplotlib (layerforge[plot])")
    from PIL import Image

    import layerforge

    out = tmp_path / "r.html"
    res = run("report", runs["a"], "--data", ROOT / "examples/data/iris.csv", "-o", out)
    assert res.exit_code == 0, res.output
    page = parse(out)
    assert page.headings[:3] == ["iris", "Model", "Test metrics"]
    assert "Learning curves" in page.headings and "Confusion matrix" in page.headings
    assert "Precision, recall, F1 per class" in page.headings
    assert not page.links  # self-contained: nothing fetched from elsewhere
    for im in page.images:
        assert im["src"].startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(im["src"].split(",", 1)[1]))).verify()
    # the numbers are the model's
    m = layerforge.load(runs["a"])
    ds = m.load_data(ROOT / "examples/data/iris.csv")
    pred = m.predict(ds.xs[0]).argmax(1)
    cm = page.table("cm")["rows"]
    assert cm[0][1:] == ["setosa", "versicolor", "virginica"]
    counts = np.array([[int(v) for v in r[1:]] for r in cm[1:]])
    np.testing.assert_array_equal(counts, np.bincount(ds.ys[0] * 3 + pred, minlength=9).reshape(3, 3))
    metrics = {r[0]: float(r[1]) for r in page.table("metrics")["rows"]}
    assert metrics["accuracy"] == pytest.approx(float((pred == ds.ys[0]).mean()), abs=1e-3)
    prf = page.table("prf")["rows"]
    assert prf[0] == ["class", "precision", "recall", "F1", "support"] and [r[0] for r in prf[1:4]] == [
        "setosa", "versicolor", "virginica"]
    assert [r[0] for r in page.table("summary")["rows"][1:]] == [
        f"{r['name']} ({r['type']})" for r in m.summary(print_=False)["layers"]]


def test_report_for_binary_and_regression(runs, tmp_path):
    pytest.importorskip("matplotlib", reason="reports need matplotlib (layerforge[plot])")
    from layerforge.api import Model

    m = Model.from_yaml(ROOT / "configs" / "reviews_text.yaml", ["training.epochs=2"])
    m.fit()
    m.save(tmp_path / "txt")
    res = run("report", tmp_path / "txt", "--data", ROOT / "examples/data/reviews.csv", "-o", tmp_path / "b.html")
    assert res.exit_code == 0, res.output
    page = parse(tmp_path / "b.html")
    assert "ROC and precision-recall curves" in page.headings and len(page.images) == 2
    res = run("report", runs["reg"], "--data", ROOT / "examples/data/sunspots_windows.csv", "-o", tmp_path / "g.html")
    assert res.exit_code == 0, res.output
    page = parse(tmp_path / "g.html")
    assert "Confusion matrix" not in page.headings and len(page.images) == 2
    assert [r[0] for r in page.tables[2]["rows"]] == ["MAE", "RMSE", "R²"]
    res = run("report", runs["a"], "-o", tmp_path / "x.html")
    assert res.exit_code == 2 and "--data" in res.output


def test_report_numbers():
    from layerforge.viz.report import confusion_matrix, per_class_scores, pr_curve, regression_scores, roc_curve

    cm = confusion_matrix(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    s = per_class_scores(cm)
    np.testing.assert_allclose(s["precision"], [0.5, 2 / 3, 0])
    np.testing.assert_allclose(s["recall"], [0.5, 1, 0])
    np.testing.assert_allclose(s["f1"], [0.5, 0.8, 0])
    y = np.array([0, 0, 1, 1])
    score = np.array([0.1, 0.4, 0.35, 0.8])
    fpr, tpr, auc = roc_curve(y, score)
    assert auc == pytest.approx(0.75)  # scikit-learn's roc_auc_score for this classic example
    rec, prec, ap = pr_curve(y, score)
    assert ap == pytest.approx(0.8333333)  # scikit-learn's average_precision_score
    r = regression_scores(np.array([1.0, 2, 3]), np.array([1.0, 2, 4]))
    assert r["MAE"] == pytest.approx(1 / 3) and r["R²"] == pytest.approx(0.5)


CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium installed")
def test_report_renders_in_a_headless_browser(runs, tmp_path):
    pytest.importorskip("matplotlib", reason="reports need matplotlib (layerforge[plot])")
    from PIL import Image

    out = tmp_path / "r.html"
    assert run("report", runs["a"], "--data", ROOT / "examples/data/iris.csv", "-o", out).exit_code == 0
    shot = tmp_path / "shot.png"
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", out.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert "Confusion matrix" in dom.stdout and "<img" in dom.stdout
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1000,1800", f"--screenshot={shot}", out.as_uri()], capture_output=True,
                   timeout=120)
    img = Image.open(shot).convert("L")
    assert img.size == (1000, 1800)
    arr = np.asarray(img)
    # not blank: text and pictures make dark pixels in the upper part of the page
    assert (arr[:900] < 128).mean() > 0.005


def test_graph_dot_and_mermaid():
    from layerforge.config import load_config
    from layerforge.graph import build_graph
    from layerforge.viz.model_graph import graph_dot, graph_mermaid

    g = build_graph(load_config(ROOT / "configs" / "seq_tagger.yaml"))
    dot = graph_dot(g)
    assert dot.startswith('digraph "pos-tagger" {') and dot.rstrip().endswith("}")
    assert 'subgraph "cluster_context"' in dot and '"context/forward_context"' in dot
    assert '"cluster_tags"' in dot and '"tags/tags"' in dot
    assert '"input" -> "words";' in dot and '"words" -> "context";' in dot
    assert "(None, None, 128)" in dot  # shapes shown, the wrapped layers' too (one time step for TimeDistributed)
    tags = dot[dot.index('"tags/tags" [label='):]
    assert tags.index("(None, 128)") < tags.index("(None, 17)") < tags.index("];")
    mm = graph_mermaid(g)
    assert mm.startswith("flowchart TB") and "n_words --> n_context" in mm and "subgraph n_sg_context" in mm


def test_summary_graph_command(tmp_path, monkeypatch):
    res = run("summary", ROOT / "configs" / "two_input_merge.yaml", "--graph", tmp_path / "m.dot")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m.dot").read_text().startswith("digraph")
    res = run("summary", ROOT / "configs" / "iris.yaml", "--graph", tmp_path / "m.mmd")
    assert res.exit_code == 0 and (tmp_path / "m.mmd").read_text().startswith("flowchart")
    from layerforge.viz import model_graph

    if shutil.which("dot"):
        res = run("summary", ROOT / "configs" / "seq_tagger.yaml", "--graph", tmp_path / "m.svg")
        assert res.exit_code == 0, res.output
        svg = (tmp_path / "m.svg").read_text()
        assert "<svg" in svg and "forward_context: LSTM" in svg
    monkeypatch.setattr(model_graph, "dot_program", lambda: None)
    res = run("summary", ROOT / "configs" / "iris.yaml", "--graph", tmp_path / "n.svg")
    assert res.exit_code == 0 and not (tmp_path / "n.svg").exists()
    assert (tmp_path / "n.dot").exists() and "not installed" in res.output
    res = run("summary", ROOT / "configs" / "iris.yaml", "--graph", tmp_path / "n.xyz")
    assert res.exit_code == 2


def test_summary_graph_does_not_import_numba(tmp_path):
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom layerforge.cli import app\n"
            f"r = CliRunner().invoke(app, ['summary', {str(ROOT / 'configs' / 'seq_tagger.yaml')!r}, '--graph', "
            f"{str(tmp_path / 'g.dot')!r}])\n"
            "assert r.exit_code == 0, r.output\nprint('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "False"


def test_train_prints_a_sparkline_on_a_terminal(tmp_path):
    from rich.console import Console

    from layerforge.cli.app import _show_training_result
    from layerforge.cli.commands import train_command

    def train(console, **kw):  # the command body and what the CLI prints after it
        _show_training_result(train_command(ROOT / "configs" / "iris.yaml", resume=None, data=None,
                                            validation_data=None, quiet=False, allow_code=False,
                                            console=console, **kw), console)

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200, color_system=None)
    train(console, overrides=["training.epochs=4"], output=tmp_path / "r")
    last = [ln for ln in buf.getvalue().splitlines() if ln.startswith("val_loss ")]
    assert len(last) == 1 and sum(ch in BARS for ch in last[0]) == 4
    buf = io.StringIO()
    train(Console(file=buf, force_terminal=False, width=200), overrides=["training.epochs=2"], output=tmp_path / "r2")
    assert not any(ln.startswith("val_loss ") for ln in buf.getvalue().splitlines())
    json.loads((tmp_path / "r" / "history.json").read_text())
