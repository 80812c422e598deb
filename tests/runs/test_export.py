"""Exports: each format's structure, filters, overrides, the dataset card, atomic writes
and the bad inputs of issue 6 (no run.json, other schema, nothing to export, duplicate ids)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import orjson
import pytest

from gra_local.core.errors import ConfigError, OutputError
from gra_local.core.records import Record
from gra_local.runs import export as ex
from gra_local.runs.browse import write_override
from gra_local.runs.export import export_run

SHA_GEN = "a" * 64
SHA_REV = "b" * 64


def _record(i: int, decision: str, mean: float | None) -> dict:
    accepted = decision == "accepted"
    rec = Record(
        id=f"r1-{i}", round=1, attempt=i, instruction=f"Explain item {i} in detail.",
        response=f"Answer number {i}.", domain="qa", keywords=["a", "b", "c"],
        summary="a relates to b and c", decision=decision,
        reason="accepted" if accepted else "low_score",
        reason_detail=f"μ={mean}", reviews=[{"model": "rev", "score": mean}],
        mean=mean, std=0.0 if mean is not None else None, adjudication=None,
        generator="gen", reviewers=["rev"], adjudicator=None, roles_shared=False,
        models=[{"name": "gen", "sha256": SHA_GEN, "quantization": "Q4_K_M"},
                {"name": "rev", "sha256": SHA_REV, "quantization": "Q8_0"}],
        sampling={"generator": {"temperature": 0.7}}, seed=i,
        tokens={"prompt": 10, "completion": 5},
        created_at="2026-01-01T00:00:00Z", decided_at="2026-01-01T00:00:01Z")
    return rec.model_dump(mode="json")


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))


def make_run(tmp: Path, accepted: list[float | None] = (9.0, 8.5, 7.0),
             rejected: list[float | None] = (4.0, 6.5), schema_version: object = 1) -> Path:
    run = tmp / "run"
    run.mkdir()
    acc = [_record(i, "accepted", m) for i, m in enumerate(accepted, 1)]
    rej = [_record(100 + i, "rejected", m) for i, m in enumerate(rejected, 1)]
    _write_jsonl(run / "accepted.jsonl", acc)
    _write_jsonl(run / "rejected.jsonl", rej)
    doc = {"schema_version": schema_version, "status": "complete",
           "config": {"options": {"samples": 3, "panel": 3, "tau": 8.0, "delta": 1.5, "seed": 0}},
           "models": {"gen": {"name": "gen", "sha256": SHA_GEN, "quantization": "Q4_K_M"},
                      "rev": {"name": "rev", "sha256": SHA_REV, "quantization": "Q8_0"}},
           "counts": {"attempts": len(acc) + len(rej), "accepted": len(acc), "rejected": len(rej),
                      "adjudicated": 0, "by_reason": {"accepted": len(acc), "low_score": len(rej)}}}
    (run / "run.json").write_text(json.dumps(doc))
    return run


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path)


def test_alpaca(run: Path, tmp_path: Path) -> None:
    res = export_run(run, "alpaca", tmp_path / "out.jsonl")
    rows = lines(tmp_path / "out.jsonl")
    assert res.exported == len(rows) == 3
    for i, row in enumerate(rows, 1):
        assert set(row) == {"instruction", "input", "output"}
        assert row == {"instruction": f"Explain item {i} in detail.", "input": "",
                       "output": f"Answer number {i}."}


def test_sharegpt(run: Path, tmp_path: Path) -> None:
    export_run(run, "sharegpt", tmp_path / "out.jsonl")
    for row in lines(tmp_path / "out.jsonl"):
        assert set(row) == {"conversations"}
        conv = row["conversations"]
        assert [t["from"] for t in conv] == ["human", "gpt"]
        assert all(set(t) == {"from", "value"} and isinstance(t["value"], str) and t["value"] for t in conv)


def test_messages(run: Path, tmp_path: Path) -> None:
    export_run(run, "messages", tmp_path / "out.jsonl")
    rows = lines(tmp_path / "out.jsonl")
    assert len(rows) == 3
    for row in rows:
        assert set(row) == {"messages"}
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert all(set(m) == {"role", "content"} and m["content"] for m in row["messages"])


def test_jsonl_full_records_validate(run: Path, tmp_path: Path) -> None:
    export_run(run, "jsonl", tmp_path / "out.jsonl")
    rows = lines(tmp_path / "out.jsonl")
    assert [r["id"] for r in rows] == ["r1-1", "r1-2", "r1-3"]
    for row in rows:
        Record.model_validate(row)


def test_include_rejected(run: Path, tmp_path: Path) -> None:
    res = export_run(run, "jsonl", tmp_path / "out.jsonl", include_rejected=True)
    rows = lines(tmp_path / "out.jsonl")
    assert res.exported == 5
    assert sorted(r["decision"] for r in rows) == ["accepted"] * 3 + ["rejected"] * 2


def test_min_score(run: Path, tmp_path: Path) -> None:
    res = export_run(run, "jsonl", tmp_path / "out.jsonl", min_score=8.5)
    assert [r["id"] for r in lines(tmp_path / "out.jsonl")] == ["r1-1", "r1-2"]
    assert res.filtered_by_score == 1
    res = export_run(run, "jsonl", tmp_path / "out.jsonl", include_rejected=True, min_score=6.5)
    assert sorted(r["mean"] for r in lines(tmp_path / "out.jsonl")) == [6.5, 7.0, 8.5, 9.0]


def test_unscored_records_fail_min_score(tmp_path: Path) -> None:
    run = make_run(tmp_path, accepted=(9.0,), rejected=(None,))
    export_run(run, "jsonl", tmp_path / "out.jsonl", include_rejected=True, min_score=0.0)
    assert [r["id"] for r in lines(tmp_path / "out.jsonl")] == ["r1-1"]


def test_overrides_applied(run: Path, tmp_path: Path) -> None:
    write_override(run, "r1-2", "rejected", note="wrong")
    write_override(run, "r1-102", "accepted", note="fine actually")
    res = export_run(run, "jsonl", tmp_path / "out.jsonl")
    rows = lines(tmp_path / "out.jsonl")
    assert sorted(r["id"] for r in rows) == ["r1-1", "r1-102", "r1-3"]
    assert all(r["decision"] == "accepted" for r in rows)
    assert res.overridden == 2
    assert res.accepted == 3 and res.rejected == 2
    # the last override for an id wins
    write_override(run, "r1-102", "rejected")
    export_run(run, "alpaca", tmp_path / "out2.jsonl")
    assert len(lines(tmp_path / "out2.jsonl")) == 2


def test_card(run: Path, tmp_path: Path) -> None:
    res = export_run(run, "alpaca", tmp_path / "data.jsonl", min_score=8.0)
    assert res.card == tmp_path / "data.card.md"
    card = res.card.read_text()
    assert SHA_GEN in card and SHA_REV in card
    assert "Q4_K_M" in card and "Q8_0" in card
    assert "| attempts (run) | 5 |" in card
    assert "| accepted (run) | 3 |" in card
    assert "| rejected (run) | 2 |" in card
    assert "| exported | 2 |" in card
    assert "tau" in card and "8.0" in card
    assert "min_score: 8.0" in card and "include_rejected: False" in card
    assert "8.0– 9.0 | " in card and "9.0–10.0 | " in card


def test_atomic_write_failure_leaves_nothing(run: Path, tmp_path: Path, monkeypatch) -> None:
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    out = out_dir / "out.jsonl"
    real = ex.CONVERTERS["alpaca"]
    calls = {"n": 0}

    def flaky(rec: dict) -> dict:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(rec)

    monkeypatch.setitem(ex.CONVERTERS, "alpaca", flaky)
    with pytest.raises(OutputError, match="cannot write"):
        export_run(run, "alpaca", out)
    assert list(out_dir.iterdir()) == []


def test_atomic_write_keeps_previous_file(run: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out.jsonl"
    export_run(run, "alpaca", out)
    before = out.read_bytes()

    def boom(*a, **k):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(ex.os, "fsync", boom)
    with pytest.raises(OutputError):
        export_run(run, "sharegpt", out)
    assert out.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_card_failure_leaves_no_data_file(run: Path, tmp_path: Path, monkeypatch) -> None:
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync(fd: int) -> None:  # the data file syncs, the card does not
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(ex.os, "fsync", fsync)
    with pytest.raises(OutputError, match="cannot write"):
        export_run(run, "alpaca", tmp_path / "out.jsonl")
    assert calls["n"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# --- bad input -----------------------------------------------------------------------


def test_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutputError, match="not a gra-local run"):
        export_run(tmp_path / "empty", "alpaca", tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_other_schema_version(tmp_path: Path) -> None:
    run = make_run(tmp_path, schema_version=0)
    with pytest.raises(OutputError, match="written by another version"):
        export_run(run, "alpaca", tmp_path / "out.jsonl")


def test_missing_schema_version(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    doc = json.loads((run / "run.json").read_text())
    del doc["schema_version"]
    (run / "run.json").write_text(json.dumps(doc))
    with pytest.raises(OutputError, match="written by another version"):
        export_run(run, "alpaca", tmp_path / "out.jsonl")


def test_zero_accepted(tmp_path: Path) -> None:
    run = make_run(tmp_path, accepted=(), rejected=(3.0, 4.0))
    with pytest.raises(OutputError) as err:
        export_run(run, "alpaca", tmp_path / "out.jsonl")
    msg = str(err.value)
    assert "nothing to export: 0 accepted records (2 rejected; pass --include-rejected" in msg
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.card.md").exists()
    export_run(run, "alpaca", tmp_path / "out.jsonl", include_rejected=True)
    assert len(lines(tmp_path / "out.jsonl")) == 2


def test_zero_after_min_score(run: Path, tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="nothing to export.*min-score"):
        export_run(run, "alpaca", tmp_path / "out.jsonl", min_score=9.5)


def test_duplicate_ids_across_files(run: Path, tmp_path: Path) -> None:
    with open(run / "rejected.jsonl", "ab") as fh:
        fh.write(orjson.dumps(_record(2, "rejected", 3.0)) + b"\n")
    with pytest.raises(OutputError, match=r"rejected\.jsonl: duplicate id 'r1-2'.*accepted\.jsonl"):
        export_run(run, "alpaca", tmp_path / "out.jsonl")


def test_duplicate_ids_in_one_file(run: Path, tmp_path: Path) -> None:
    with open(run / "accepted.jsonl", "ab") as fh:
        fh.write(orjson.dumps(_record(1, "accepted", 9.0)) + b"\n")
    with pytest.raises(OutputError, match=r"accepted\.jsonl: duplicate id 'r1-1' \(twice in that file\)"):
        export_run(run, "alpaca", tmp_path / "out.jsonl")


def test_bad_format_and_score(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--format"):
        export_run(run, "csv", tmp_path / "out.jsonl")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--min-score"):
        export_run(run, "alpaca", tmp_path / "out.jsonl", min_score=11)


@pytest.mark.parametrize("name", ["accepted.jsonl", "rejected.jsonl", "unverified.jsonl",
                                  "journal.jsonl", "pool.jsonl", "canaries.jsonl", "overrides.jsonl",
                                  "run.json", "logs", ".lock"])
def test_refuses_to_overwrite_run_files(run: Path, name: str) -> None:
    """Issue 12: `export --out DIR/journal.jsonl` used to overwrite the journal."""
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(OutputError, match=f"would overwrite the run's own {name}; choose another --out"):
        export_run(run, "jsonl", run / name)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_an_export_beside_the_run_files_is_fine(run: Path) -> None:
    export_run(run, "jsonl", run / "export.jsonl")
    assert len(lines(run / "export.jsonl")) == 3


def test_torn_line_is_refused_not_repaired(run: Path, tmp_path: Path) -> None:
    data = (run / "accepted.jsonl").read_bytes()
    (run / "accepted.jsonl").write_bytes(data + b'{"id": "r1-9"')
    # repair=False: the torn tail is neither exported nor cut from the run's file
    export_run(run, "alpaca", tmp_path / "out.jsonl")
    assert len(lines(tmp_path / "out.jsonl")) == 3
    assert (run / "accepted.jsonl").read_bytes().endswith(b'{"id": "r1-9"')


def test_command_prints_what_was_written(run: Path, tmp_path: Path, capsys) -> None:
    from gra_local.commands.export import export_command

    out = tmp_path / "train.jsonl"
    args = argparse.Namespace(run_dir=run, format="messages", out=out, include_rejected=False,
                              min_score=None)
    assert export_command(args) == 0
    text = capsys.readouterr().out
    assert "wrote 3 records (messages)" in text and str(out) in text
    assert str(tmp_path / "train.card.md") in text
    assert os.path.exists(tmp_path / "train.card.md")


def test_card_names_an_endpoint_models_server_and_model_id(run: Path, tmp_path: Path) -> None:
    doc = json.loads((run / "run.json").read_text())
    doc["models"]["rev"] = {"name": "rev", "endpoint": "http://gpu-box:8080/v1", "server": "vllm",
                            "server_version": "0.9.2", "served_model": "qwen2.5-7b-instruct"}
    (run / "run.json").write_text(json.dumps(doc))
    card = export_run(run, "alpaca", tmp_path / "data.jsonl").card.read_text()
    assert ("| rev | served by `http://gpu-box:8080/v1` (vllm 0.9.2), model "
            "`qwen2.5-7b-instruct` | n/a |") in card
    assert f"| gen | `{SHA_GEN}` | Q4_K_M |" in card


def _unverified(tmp_path: Path, accepted: tuple[float, ...] = (9.0, 8.5, 7.0)) -> Path:
    """A run that also kept two samples unverified (no evidence could judge them)."""
    run = make_run(tmp_path, accepted=accepted)
    kept = [{**_record(200 + i, "unverified", None), "reason": "unverified",
             "reason_detail": "no evidence informative"} for i in (1, 2)]
    _write_jsonl(run / "unverified.jsonl", kept)
    doc = json.loads((run / "run.json").read_text())
    doc["counts"]["unverified"] = 2
    (run / "run.json").write_text(json.dumps(doc))
    return run


@pytest.mark.parametrize("include_rejected", [False, True])
def test_unverified_records_are_never_exported(tmp_path: Path, include_rejected: bool) -> None:
    run = _unverified(tmp_path)
    res = export_run(run, "jsonl", tmp_path / "out.jsonl", include_rejected=include_rejected,
                     contested=True)
    rows = lines(tmp_path / "out.jsonl")
    assert all(r["decision"] != "unverified" for r in rows) and res.exported == len(rows)
    assert (res.accepted, res.rejected, res.unverified) == (3, 2, 2)
    assert lines(tmp_path / "out.contested.jsonl") == []
    card = res.card.read_text()
    assert "| unverified (run) | 2 |" in card
    assert "| unverified (after overrides, never exported) | 2 |" in card
    assert "unverified: 2 left out" in card


def test_an_unverified_record_a_person_decided_is_exported_like_any(tmp_path: Path) -> None:
    run = _unverified(tmp_path)
    write_override(run, "r1-201", "accepted", note="checked by hand")
    write_override(run, "r1-202", "rejected")
    res = export_run(run, "jsonl", tmp_path / "out.jsonl")
    rows = {r["id"]: r for r in lines(tmp_path / "out.jsonl")}
    assert set(rows) == {"r1-1", "r1-2", "r1-3", "r1-201"}
    assert rows["r1-201"]["decision"] == "accepted" and rows["r1-201"]["override"]["note"] == "checked by hand"
    assert (res.accepted, res.rejected, res.unverified, res.overridden) == (4, 3, 0, 2)


def test_only_unverified_is_nothing_to_export(tmp_path: Path, capsys) -> None:
    from gra_local.commands.export import export_command

    run = _unverified(tmp_path, accepted=())
    with pytest.raises(OutputError, match=r"0 accepted records \(2 rejected, 2 unverified, never exported"):
        export_run(run, "alpaca", tmp_path / "out.jsonl")
    args = argparse.Namespace(run_dir=run, format="alpaca", out=tmp_path / "out.jsonl",
                              include_rejected=True, min_score=None)
    assert export_command(args) == 0
    assert "2 unverified left out (no evidence judged them)" in capsys.readouterr().out
