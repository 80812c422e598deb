"""run.json's model: what a reader gets from a file of either readable schema, and the
one-line refusals for what is not a run.json or of another schema. (That the engine writes
the same bytes as before is pinned in tests/core/engine/test_run_json.py.)"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gra_local.core.errors import OutputError
from gra_local.core.rundir.calibration_report import (
    CalibrationSection,
    PanelAgreement,
    ReviewerCalibration,
)
from gra_local.core.rundir.report import (
    DedupOff,
    DedupOn,
    NotARunReport,
    OtherSchema,
    RunReport,
    SeedsInfo,
    Session,
    read_report,
)
from gra_local.core.stats import Counts

SCHEMA_1 = {  # a run made before dedup, canaries and review-only mode
    "schema_version": 1, "status": "complete", "out_dir": "/runs/old",
    "identity": {"seeds_sha256": "a" * 64, "options": {"panel": 3, "tau": 8.0},
                 "models": {"gen": {"sha256": "b" * 64}}},
    "config": {"seeds": "seeds.jsonl", "models_file": "models.toml",
               "options": {"samples": 3, "tau": 8.0}, "models": [{"name": "gen", "path": "x"}]},
    "models": {"gen": {"name": "gen", "sha256": "b" * 64, "quantization": "Q4_K_M"}},
    "seeds": {"path": "seeds.jsonl", "sha256": "a" * 64, "format": "jsonl", "usable": 8,
              "skipped": 0, "pool": 8},
    "counts": {"attempts": 5, "accepted": 3, "rejected": 2, "adjudicated": 1,
               "by_reason": {"accepted": 3, "low_score": 2}},
    "sessions": [{"started": "2026-01-01T00:00:00Z", "ended": "2026-01-01T00:01:00Z",
                  "status": "interrupted", "seconds": 60.0},
                 {"started": "2026-01-02T00:00:00Z", "ended": "2026-01-02T00:00:30Z",
                  "status": "complete", "seconds": 30.5}],
}


def write(path: Path, doc: object) -> Path:
    path.write_bytes(orjson.dumps(doc))
    return path


def test_a_schema_1_run_reads_with_the_later_sections_absent(tmp_path: Path) -> None:
    report = read_report(write(tmp_path / "run.json", SCHEMA_1))
    assert report is not None
    assert (report.schema_version, report.status) == (1, "complete")
    assert report.dedup is None and report.calibration is None and report.stats is None
    assert report.counts.accepted == 3 and report.counts.by_reason == {"accepted": 3, "low_score": 2}
    assert report.models["gen"].quantization == "Q4_K_M"
    assert report.identity is not None and report.identity.options == {"panel": 3, "tau": 8.0}
    assert report.config is not None and report.config.options == {"samples": 3, "tau": 8.0}
    assert report.seeds.pool == 8 and report.seeds.mode is None
    assert report.seconds == 90.5 and [s.status for s in report.sessions] == ["interrupted", "complete"]
    assert report.duplicates == 0


def test_dedup_reads_as_one_of_its_two_shapes() -> None:
    on = {"enabled": True, "embedder": "all-MiniLM-L6-v2", "embedder_sha256": "c" * 64,
          "threshold": 0.9, "references": 12}
    report = RunReport.model_validate({"dedup": on, "counts": {"by_reason": {"duplicate": 4}}})
    assert isinstance(report.dedup, DedupOn) and report.dedup.references == 12
    assert report.duplicates == 4
    off = RunReport.model_validate({"dedup": {"enabled": False}})
    assert isinstance(off.dedup, DedupOff)
    assert off.model_dump(mode="json")["dedup"] == {"enabled": False}


def test_seeds_keep_only_the_keys_the_run_recorded() -> None:
    generation = SeedsInfo(path="s.jsonl", sha256="a", format="jsonl", usable=3, skipped=1, pool=3)
    review = SeedsInfo(path="d.jsonl", sha256="a", format="jsonl", usable=3, skipped=0,
                       without_response=2, mode="review")
    assert list(generation.model_dump(mode="json")) == ["path", "sha256", "format", "usable",
                                                       "skipped", "pool"]
    assert list(review.model_dump(mode="json")) == ["path", "sha256", "format", "usable",
                                                   "skipped", "without_response", "mode"]
    assert SeedsInfo().model_dump(mode="json") == {}
    assert RunReport().model_dump(mode="json")["seeds"] == {}


def test_a_whole_report_reads_back_to_itself() -> None:
    calibration = CalibrationSection(
        canaries_per_batch=4, canaries_judged=8, action="weight",
        reviewers={"rev": ReviewerCalibration(model="rev", canaries=8, correct=6, accuracy=0.75)},
        panel=PanelAgreement(krippendorff_alpha_scores=0.5, items=3), tau=8.0,
        min_accuracy=0.6, min_canaries=4)
    report = RunReport(schema_version=2, status="exhausted", calibration=calibration,
                       counts=Counts(attempts=8, accepted=2, rejected=6),
                       rounds={"1": Counts(attempts=8, accepted=2, rejected=6, pool_added=2)},
                       sessions=[Session(started="t0", ended="t1", status="exhausted", seconds=1.5)])
    dumped = report.model_dump(mode="json")
    assert list(dumped["calibration"])[:3] == ["canaries_per_batch", "canaries_judged", "action"]
    assert RunReport.model_validate(orjson.loads(orjson.dumps(dumped))) == report


def test_missing_file_is_none_and_unreadable_json_is_refused(tmp_path: Path) -> None:
    assert read_report(tmp_path / "run.json") is None
    (tmp_path / "run.json").write_bytes(b'{"status": ')
    with pytest.raises(OutputError, match="run.json: unreadable"):
        read_report(tmp_path / "run.json")


@pytest.mark.parametrize("doc, version", [
    ({"schema_version": 99, "status": "complete"}, 99),
    ({"status": "complete"}, None),
    ({"schema_version": "2"}, "2"),
    ({"schema_version": True}, True),
])
def test_other_schemas_are_refused_naming_the_file(tmp_path: Path, doc: dict, version: object) -> None:
    path = write(tmp_path / "run.json", doc)
    with pytest.raises(OtherSchema) as err:
        read_report(path)
    assert err.value.version == version
    assert str(err.value) == (f"{path}: written by another version; schema_version {version!r}, "
                              "this gra-local reads 2 and older")


def test_browsing_reads_any_schema_that_fits_the_shape(tmp_path: Path) -> None:
    report = read_report(write(tmp_path / "run.json", {"schema_version": 99, "status": "complete",
                                                       "counts": {"accepted": 4}}), any_schema=True)
    assert report is not None and (report.schema_version, report.counts.accepted) == (99, 4)


@pytest.mark.parametrize("doc, says", [
    ([1, 2], "not a gra-local run (not a JSON object)"),
    ({"schema_version": 2, "counts": {"accepted": "many"}}, "not a gra-local run.json (counts.accepted: "),
    ({"schema_version": 2, "dedup": {"enabled": True}}, "not a gra-local run.json (dedup."),
])
def test_what_is_not_a_run_json_is_refused_on_one_line(tmp_path: Path, doc: object, says: str) -> None:
    path = write(tmp_path / "run.json", doc)
    with pytest.raises(NotARunReport) as err:
        read_report(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {says}") and "\n" not in message
