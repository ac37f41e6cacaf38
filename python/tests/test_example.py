"""The GRPO example runs end to end and improves the policy (needs torch; skipped without it)."""
import pathlib
import runpy
import sys

import pytest


def test_grpo_tiny_learns(capsys, monkeypatch):
    pytest.importorskip("torch")
    script = pathlib.Path(__file__).resolve().parents[1] / "examples" / "grpo_tiny.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--steps", "200"])
    runpy.run_path(str(script), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    before = float(next(l for l in lines if l.startswith("after 60 SFT")).split("problems ")[1].split(",")[0])
    after = float(next(l for l in lines if l.startswith("after 200 GRPO")).split("problems ")[1].split(",")[0])
    assert after > before + 0.1, (before, after)
