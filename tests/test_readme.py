"""The README's promises: its research-code snippet runs, and it holds exactly two set-up commands."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_two_setup_commands():
    (setup,) = _blocks("bash")
    commands = [line for line in setup.splitlines() if line.strip()]
    assert len(commands) == 2
    assert "experiments/lanas_cifar.py" in commands[0] and "pytest" in commands[1]


@pytest.mark.slow
def test_research_snippets_run(data_dir, monkeypatch, capsys):
    """The python blocks, in order, in one namespace (a later block uses names of an earlier one)."""
    snippets = _blocks("python")
    assert len(snippets) == 2
    monkeypatch.chdir(README.parent)
    namespace = {}
    for snippet in snippets:
        exec(compile(snippet.replace("../shared/data", str(data_dir)), "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "optimum:" in printed and "ConvNet depth" in printed
    assert printed.count(" val ") == 3 and "True" not in printed  # three trained, none failed
