"""The scripts in examples/ run."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_train_iris_example_runs():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "train_iris.py")], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "saved and loaded: same predictions" in result.stdout
    assert "predicted: ['setosa', 'versicolor', 'virginica']" in result.stdout
