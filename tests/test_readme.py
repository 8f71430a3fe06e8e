"""The README tells a first user what they need: the two commands, the CPU training path with one time
estimate per CPU class (the same in docs/training.md), alpha handling, and links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TRAINING = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")

# The CPU classes of the bundled-photo run's time table, and the estimate each must give.
CPU_CLASSES = {
    "AVX-512 with bf16": 17,
    "AVX-512 without bf16": 29,
    "AVX2 only": 28,
}


def _first_train_command(text: str) -> str:
    return re.findall(r"^python -m fastnst\.train .*$", text, flags=re.MULTILINE)[0]


def _estimates(text: str) -> dict[str, int]:
    """CPU class -> minutes, from the table rows `| <class> ... | ... ~N minutes ... |`."""
    found = {}
    for label in CPU_CLASSES:
        rows = re.findall(rf"^\| {re.escape(label)}\b.*?~(\d+) minutes", text, flags=re.MULTILINE)
        assert len(rows) == 1, f"expected one table row for {label!r}, found {len(rows)}"
        found[label] = int(rows[0])
    return found


def test_the_two_commands_ci_and_tests_rely_on():
    assert "pip install -e . && python -m fastnst.stylize --demo" in README
    assert 'pip install -e ".[test]" && python -m pytest' in README


def test_the_first_training_command_is_the_cpu_path():
    train_section = README.split("\n## Train\n", 1)[1]
    assert "model=small" in _first_train_command(README)
    assert "model=small" in _first_train_command(train_section)
    assert _first_train_command(README) == "python -m fastnst.train style=starry data=sample model=small"


def test_one_time_estimate_per_cpu_class_in_readme_and_training_doc():
    assert "30-60 minutes" not in README
    assert "420 steps" in README and "420 steps" in TRAINING
    assert _estimates(README) == CPU_CLASSES
    assert _estimates(TRAINING) == CPU_CLASSES


def test_the_avx2_figure_is_marked_as_an_estimate():
    for text in (README, TRAINING):
        row = re.search(r"^\| AVX2 only\b.*$", text, flags=re.MULTILINE).group(0)
        assert "estimated" in row


def test_alpha_is_said_to_be_dropped():
    assert re.search(r"alpha channel is dropped", README)


def test_readme_is_short():
    assert len(README.splitlines()) <= 250


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page (lower case, punctuation dropped, spaces to hyphens)."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_relative_links_resolve():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path) if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def test_no_development_story_in_the_user_docs():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    pattern = re.compile(r"session [0-9]|issue [0-9]+|round [0-9]", re.IGNORECASE)
    hits = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in pages for m in pattern.finditer(p.read_text(encoding="utf-8"))]
    assert not hits, hits
