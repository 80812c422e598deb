"""The distilabel side of scripts/bench_vs_distilabel.py; run by the *distilabel* venv's
python (it does not import gra_local): `python distilabel_pipeline.py CONFIG.json OUT.json`.

Pipeline (distilabel 1.5.3): LoadDataFromDicts (one row per attempt, three seed
instructions as examples) -> TextGeneration "instruction" (custom template: write one new
task) -> TextGeneration "answer" (the instruction as the user turn) -> UltraFeedback
"judge" (aspect overall-rating, num_generations = panel). Each step has its own
LlamaCppLLM on the same GGUF; a subclass logs every load and call to a JSONL file, which
is how loads, calls and max_tokens hits are counted (steps run in forked processes).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from distilabel.models.llms import LlamaCppLLM
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts
from distilabel.steps.tasks import TextGeneration, UltraFeedback

EVENTS = Path(os.environ["BENCH_EVENTS"])

INSTRUCTION_SYSTEM = ("You write new, self-contained tasks for an instruction-tuning dataset. "
                      "Reply with the new task only.")
INSTRUCTION_TEMPLATE = ("Example tasks:\n{{ examples }}\n\n"
                        "Write one new task of the same kind, different from the examples.")


def _log(event: dict[str, Any]) -> None:
    with EVENTS.open("a") as f:  # one short line per write: safe across the step processes
        f.write(json.dumps(event) + "\n")


class CountingLlamaCppLLM(LlamaCppLLM):
    """LlamaCppLLM that records each load and each chat completion."""

    tag: str = ""

    def load(self) -> None:
        start = time.perf_counter()
        super().load()
        _log({"event": "load", "step": self.tag, "seconds": time.perf_counter() - start,
              "pid": os.getpid()})

    def _generate_chat_completion(self, input: Any, max_new_tokens: int = 128,  # noqa: A002
                                  *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = super()._generate_chat_completion(input, max_new_tokens, *args, **kwargs)
        usage = out.get("usage", {})
        _log({"event": "call", "step": self.tag, "seconds": time.perf_counter() - start,
              "finish_reason": out["choices"][0].get("finish_reason"),
              "prompt_tokens": usage.get("prompt_tokens", 0),
              "completion_tokens": usage.get("completion_tokens", 0),
              "max_tokens": max_new_tokens})
        return out


def llm(cfg: dict[str, Any], tag: str, sampling: dict[str, Any]) -> CountingLlamaCppLLM:
    return CountingLlamaCppLLM(
        tag=tag, model_path=cfg["model"], n_ctx=cfg["n_ctx"], seed=cfg["seed"],
        n_gpu_layers=-1, chat_format=None, verbose=False,
        extra_kwargs={"n_threads": cfg["n_threads"]},
        generation_kwargs={
            "max_new_tokens": sampling["max_tokens"], "temperature": sampling["temperature"],
            "top_p": sampling["top_p"],
            "extra_generation_kwargs": {"repeat_penalty": sampling["repeat_penalty"]},
        })


def rows(cfg: dict[str, Any]) -> list[dict[str, str]]:
    """One row per attempt, each with `examples_per_prompt` seed instructions (fixed seed)."""
    rng = random.Random(cfg["seed"])
    seeds: list[str] = cfg["seeds"]
    k = min(cfg["examples_per_prompt"], len(seeds))
    return [{"examples": "\n".join(f"{i}. {s[:240]}" for i, s in enumerate(rng.sample(seeds, k), 1))}
            for _ in range(cfg["attempts"])]


def main() -> int:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    data = rows(cfg)
    with Pipeline(name="bench-vs-gra-local", cache_dir=cfg["cache_dir"]) as pipeline:
        load = LoadDataFromDicts(data=data, batch_size=len(data))
        instruction = TextGeneration(
            name="instruction", llm=llm(cfg, "instruction", cfg["generator"]),
            system_prompt=INSTRUCTION_SYSTEM, template=INSTRUCTION_TEMPLATE,
            columns=["examples"], input_batch_size=len(data),
            output_mappings={"generation": "instruction"})
        answer = TextGeneration(
            name="answer", llm=llm(cfg, "answer", cfg["generator"]),
            system_prompt=cfg["answer_system"], input_batch_size=len(data),
            group_generations=True,  # generation -> [text], the list UltraFeedback wants
            output_mappings={"generation": "generations"})
        judge = UltraFeedback(
            name="judge", llm=llm(cfg, "judge", cfg["reviewer"]), aspect="overall-rating",
            num_generations=cfg["panel"], group_generations=True, input_batch_size=len(data))
        load >> instruction >> answer >> judge  # type: ignore[operator]
    start = time.perf_counter()
    distiset = pipeline.run(use_cache=False)
    wall = time.perf_counter() - start
    out = [dict(r) for r in distiset["default"]["train"]]  # type: ignore[index]
    Path(sys.argv[2]).write_text(json.dumps({"pipeline_run_seconds": wall, "rows": out},
                                            default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
