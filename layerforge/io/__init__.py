"""Run directories: atomic writes, safetensors weights, state and history."""
