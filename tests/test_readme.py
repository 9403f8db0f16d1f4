"""The README documents what the code does: its commands and every setting."""

from __future__ import annotations

from pathlib import Path

from services.renderer.options import RENDERER_OPTIONS
from services.wiring.settings import describe

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
CI = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()


def test_every_setting_is_in_the_readme():
    missing = [variable for variable, _, _ in describe() if f"`{variable}`" not in README]
    assert missing == []


def test_ci_runs_the_readme_test_command():
    assert "pip install -e '.[dev]'" in README and "pip install --quiet -e '.[dev]'" in CI
    assert "python -m pytest" in README and "python -m pytest" in CI


def test_the_readme_lists_every_renderer_option_and_the_jsonnet_flags():
    assert [key for key in RENDERER_OPTIONS if f"--option {key}=" not in README] == []
    for flag in ("--ext-code K=CODE", "--tla-code K=CODE", "--allow-empty"):
        assert flag in README
