"""The ``fastnst`` command (``python -m fastnst``): lists its subcommands and hands each the rest of
the command line, with the OpenMP setting made before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys

from fastnst.cli.main import COMMANDS, main
from tests.support import ROOT


def run(*args: str, code: str | None = None, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in full.get("PYTHONPATH", "").split(os.pathsep) if p])
    full.update(env)
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "fastnst", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=full, cwd=ROOT, timeout=300)


def test_help_lists_every_subcommand():
    out = run("--help")
    assert out.returncode == 0
    for name in ("stylize", "train", "gatys", "evaluate", "export"):
        assert f"\n  {name} " in out.stdout
    assert set(COMMANDS) >= {"stylize", "train", "gatys", "evaluate", "export"}


def test_a_subcommand_gets_the_rest_of_the_command_line():
    out = run("stylize", "--help")
    assert out.returncode == 0 and "--model" in out.stdout and "--list-models" in out.stdout
    out = run("export", "--help")
    assert out.returncode == 0 and "ONNX" in out.stdout


def test_train_passes_hydra_arguments_through():
    out = run("train", "--help")
    assert out.returncode == 0 and "powered by Hydra" in out.stdout


def test_no_or_unknown_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert main(["paint"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'paint'" in err and "commands:" in err


def test_dispatcher_sets_the_openmp_spin_before_torch_loads():
    code = ("import os, sys; from fastnst.cli import main as m; before = 'torch' in sys.modules; "
            "rc = m.main(['stylize', '--list-models']); "
            "print(before, 'torch' in sys.modules, os.environ.get('GOMP_SPINCOUNT'), rc)")
    out = run(code=code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False True 1000 0"
