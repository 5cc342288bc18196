"""The README's promises: it opens with the two set-up commands, and CI runs the second."""

import os

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def _readme_commands():
    block = _read("README.md").split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_the_main_job_and_the_test_command():
    assert _read("README.md").lstrip().startswith("# smh_jax")
    main_job, tests = _readme_commands()
    assert "train.py --config=configs/quickstart.py" in main_job
    assert "pytest" in tests
    for command in (main_job, tests):
        assert command.startswith("python3 -m venv .venv && .venv/bin/pip install -e")


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = _readme_commands()
    ci_lines = [line for line in _read(".ci/run").splitlines() if line.strip()]
    assert tests in ci_lines
