"""The README tells a first user what they need: the CPU training path, consistent times, alpha handling."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _first_train_command(text: str) -> str:
    return re.findall(r"^python -m fastnst\.train .*$", text, flags=re.MULTILINE)[0]


def test_the_first_training_command_is_the_cpu_path():
    train_section = README.split("\n## Train\n", 1)[1]
    assert "model=small" in _first_train_command(README)
    assert "model=small" in _first_train_command(train_section)


def test_one_time_estimate_for_the_sample_run():
    assert "30-60 minutes" not in README
    estimates = re.findall(r"420 steps[^.]*?~(\d+) minutes", README)
    assert len(estimates) >= 2 and set(estimates) == {"17"}


def test_alpha_is_said_to_be_dropped():
    assert re.search(r"alpha channel is dropped", README)
