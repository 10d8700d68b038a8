"""docs/configuration.md's table lists every setting with its current default, and no setting that is gone."""

import re
from pathlib import Path

from api.export_settings import settings_table

CONFIGURATION = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_configuration_page_has_the_generated_table():
    text = CONFIGURATION.read_text()
    missing = [row for row in settings_table().splitlines() if row not in text]
    assert not missing, f"docs/configuration.md's table is stale (python -m api.export_settings): {missing[:3]}"


def test_the_configuration_page_lists_no_setting_that_is_gone():
    documented = set(re.findall(r"^\| `(CONVLENS_[A-Z0-9_]+)` \|", CONFIGURATION.read_text(), flags=re.MULTILINE))
    current = set(re.findall(r"^\| `(CONVLENS_[A-Z0-9_]+)` \|", settings_table(), flags=re.MULTILINE))
    gone = sorted(documented - current)
    assert not gone, f"docs/configuration.md lists settings that no longer exist: {gone}"
