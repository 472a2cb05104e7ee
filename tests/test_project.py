"""Project hygiene: CI runs exactly the README's test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")]
    readme = (ROOT / "README.md").read_text()
    assert ci_lines[-1] in readme.splitlines(), f"README must show the CI test command {ci_lines[-1]!r}"
