"""Fine-tuning: start training from the weights of an earlier run (`layerforge train CONFIG --init-from RUN`,
or `training.init_from: RUN` in the config), for example a model brought in with `layerforge import`.

Weights are matched by layer name and weight name; every matched weight must have the shape the model needs.
Layers of the model that the run does not have keep their fresh initialisation (a new head, say); layers the run
has but the model does not are left out. Layers with `trainable: false` then stay as loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError, Problem


@dataclass
class WarmStart:
    run: Path
    loaded: list[str] = field(default_factory=list)  # layers whose weights came from the run
    fresh: list[str] = field(default_factory=list)  # layers with weights the run does not have
    unused: list[str] = field(default_factory=list)  # layers of the run the model does not have


def init_from_run(model, run_dir: str | Path) -> WarmStart:
    """Copy the matching weights of the run directory `run_dir` into `model` (an api.Model)."""
    from ..io.rundir import read_run

    run_dir = Path(run_dir)
    saved = read_run(run_dir)["weights"]
    result = WarmStart(run=run_dir)
    mismatched = []
    matches = []
    seen_layers: set[str] = set()
    for name, spec, _ in model.compiled.weight_items():
        key = f"{name}/{spec.name}"
        if key not in saved:
            if name not in result.fresh:
                result.fresh.append(name)
            continue
        arr = saved[key]
        if tuple(arr.shape) != tuple(spec.shape):
            mismatched.append(Problem(
                message=f"layer {name!r}: weight {spec.name} has shape {tuple(arr.shape)} in the run, the model "
                        f"needs {tuple(spec.shape)}", file=str(run_dir),
                hint="give the changed layer a new name so it starts fresh, or make its config match the run's"))
            continue
        matches.append((name, spec, arr))
        seen_layers.add(name)
    if mismatched:
        raise CheckpointError(problems=mismatched)
    if not matches:
        raise CheckpointError(problems=[Problem(
            message="no layer of the model matches a layer of the run (layers are matched by name)",
            file=str(run_dir), hint="keep the layer names of the run's config.yaml for the layers to start from")])
    for name, spec, arr in matches:
        model.compiled.set_weight(name, spec, arr)
    result.loaded = [n for n in dict.fromkeys(name for name, _, _ in matches)]
    result.fresh = [n for n in result.fresh if n not in seen_layers]
    model_layers = {n for n, _, _ in model.compiled.weight_items()}
    result.unused = sorted({k.split("/", 1)[0] for k in saved} - model_layers)
    return result
