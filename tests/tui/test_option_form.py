"""New run's form as plain functions: the folded Advanced line names every option set away
from its default (the widgets themselves: test_new_run_screen)."""

from __future__ import annotations

from gra_local.core.options import option_field, option_fields
from gra_local.tui.widgets.option_form import BASIC, advanced_fields, advanced_title, changed


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



def test_the_advanced_section_holds_every_option_but_the_basic_ones() -> None:
    assert {f.name for f in advanced_fields()} == {f.name for f in option_fields()} - set(BASIC)
    assert set(BASIC) == {"samples", "max_attempts"}
