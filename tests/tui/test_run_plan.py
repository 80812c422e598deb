"""New run's plan and folded options as plain functions: the folded line names what
changed, an endpoint model is served by its server, a GGUF model gets its memory plan."""

from __future__ import annotations

from pathlib import Path

from gra_local.core.config import ModelSpec, Registry
from gra_local.core.options import RunOptions, option_field
from gra_local.models.hardware import Hardware, LlamaBuild
from gra_local.tui.widgets.run_plan import advanced_title, calls_line, changed, plan_lines

GIB = 1024**3
CPU = Hardware(system="Linux", machine="x86_64", cpu_logical=8, cpu_physical=4,
               ram_total_bytes=16 * GIB, ram_available_bytes=8 * GIB, llama=LlamaBuild())


def test_the_folded_line_names_options_away_from_their_defaults() -> None:
    assert changed(option_field("tau"), "8") is None and changed(option_field("tau"), "8.0") is None
    assert changed(option_field("tau"), "7.5") == "τ 7.5"
    assert changed(option_field("dedup_threshold"), "off") == "no dedup"
    assert changed(option_field("dedup_threshold"), "0.9") is None
    assert changed(option_field("minhash"), False) == "no minhash"
    assert changed(option_field("calibration"), "flag") == "calibration flag"
    assert changed(option_field("batch"), "") is None
    assert advanced_title([]) == "Advanced options (f6): all at their defaults"
    assert advanced_title(["τ 7.5", "no dedup"]) == "Advanced options (f6): τ 7.5, no dedup"


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
