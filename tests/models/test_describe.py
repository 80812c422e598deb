"""A model's file size and parameter count as text: one formatter for the CLI and the app."""

import pytest

from gra_local.models.describe import human_params, human_size


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (141_772, "141.8 KB"),
    (999_949, "999.9 KB"), (999_960, "1.0 MB"), (98_231_808, "98.2 MB"),
    (4_920_000_000, "4.9 GB"), (999_960_000_000, "1.0 TB"), (12_300_000_000_000, "12.3 TB"),
])
def test_human_size(n: int, text: str) -> None:
    assert human_size(n) == text


@pytest.mark.parametrize(("n", "text"), [
    (512, "512"), (33_088, "33K"), (999_499, "999K"), (999_500, "1M"),
    (134_515_008, "135M"), (999_499_999, "999M"), (999_500_000, "1.0B"),
    (1_543_714_304, "1.5B"), (70_553_706_496, "70.6B"),
])
def test_human_params(n: int, text: str) -> None:
    assert human_params(n) == text
