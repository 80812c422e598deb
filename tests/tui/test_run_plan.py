"""New run's plan as plain functions: the calls per stage, an endpoint model is served by
its server, a GGUF model gets its memory plan."""

from __future__ import annotations

from pathlib import Path

from gra_local.core.config import ModelSpec, Registry
from gra_local.core.options import RunOptions
from gra_local.models.hardware import Hardware, LlamaBuild
from gra_local.tui.widgets.run_plan import calls_line, plan_lines

GIB = 1024**3
CPU = Hardware(system="Linux", machine="x86_64", cpu_logical=8, cpu_physical=4,
               ram_total_bytes=16 * GIB, ram_available_bytes=8 * GIB, llama=LlamaBuild())


def test_calls_line() -> None:
    # the default judge (evidence) reads every candidate and canary once; one model stands
    # for the panel on the canaries (4 pairs: 8 sides)
    assert calls_line(RunOptions(samples=5), review=False, reviewers=1) == (
        "calls: annotate 64 · generate 20 · review_a 8 · review_b 8 · likelihood 18")
    assert calls_line(RunOptions(samples=5, judge="panel"), review=False) == (
        "calls: annotate 64 · generate 20 · review_a 54 · review_b 54 · adjudicate 2")
    assert "not valid" in calls_line(None, review=False)
    assert "panel on the canaries only" in calls_line(None, review=True)
    assert "review_a and review_b each panel × every usable pair" in calls_line(
        RunOptions(samples=5, judge="panel"), review=True)


def test_plan_lines_per_model(tiny_gguf: Path) -> None:
    registry = Registry(models=[
        ModelSpec(name="tiny", path=str(tiny_gguf)),
        ModelSpec(name="remote", endpoint=["http://gpu-box:8080/v1", "http://b:8080/v1"], server="vllm"),
        ModelSpec(name="gone", path=str(tiny_gguf.parent / "missing.gguf"))])
    lines, checked = plan_lines(registry, CPU)
    assert lines[0].startswith("tiny    CPU · GPU layers 0/") and "n_parallel 8 · KV 16384 cells" in lines[0]
    assert lines[1] == "remote  served by vllm at gpu-box:8080 +1"
    assert lines[2].startswith("gone    ") and "missing.gguf" in lines[2]
    assert [spec.name for spec, _ in checked] == ["tiny"]
