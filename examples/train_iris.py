"""The Python API end to end: build from YAML, train, evaluate, predict, save, load.

    python examples/train_iris.py
"""

import tempfile
from pathlib import Path

import numpy as np

import layerforge

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "configs" / "iris.yaml"
DATA = HERE / "data" / "iris.csv"


def main() -> None:
    model = layerforge.Model.from_yaml(CONFIG, ["training.epochs=60"])
    model.summary()
    history = model.fit()  # the config's data.train, 20% held out for validation; a Keras-style History
    print(f"after {len(history.epoch)} epochs: val_accuracy {history.history['val_accuracy'][-1]:.3f}")
    print("on the whole file:", model.evaluate(data=DATA))

    # numpy in, numpy out: the four measurements of three flowers
    flowers = np.array([[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]], np.float32)
    probabilities = model.predict(flowers)
    classes = model.encoders["species"]["classes"]
    print("predicted:", [classes[i] for i in probabilities.argmax(axis=1)])

    weights = model.get_weights()  # {layer name: [kernel, bias]} in the Keras 3 layout
    print({name: [w.shape for w in arrays] for name, arrays in weights.items()})

    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "iris-run")
        again = layerforge.load(Path(tmp) / "iris-run")
        assert np.array_equal(again.predict(flowers), probabilities)
        print("saved and loaded: same predictions")


if __name__ == "__main__":
    main()
