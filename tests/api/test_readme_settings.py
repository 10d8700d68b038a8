"""The README's configuration table lists every setting with its current default."""

from pathlib import Path

from api.export_settings import settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_has_the_generated_configuration_table():
    text = README.read_text()
    missing = [row for row in settings_table().splitlines() if row not in text]
    assert not missing, f"README.md's configuration table is stale (python -m api.export_settings): {missing[:3]}"
