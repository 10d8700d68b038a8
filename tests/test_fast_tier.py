"""The fast tier's list of heavy tests cannot rot: a listed test that no longer exists stops the tier."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import conftest

ROOT = Path(__file__).resolve().parent.parent


class Item:
    def __init__(self, nodeid: str, slow: bool = False):
        self.nodeid, self.slow = nodeid, slow

    def get_closest_marker(self, name: str):
        return object() if name == "slow" and self.slow else None


def fast_config(dropped: list, root: Path) -> SimpleNamespace:
    hook = SimpleNamespace(pytest_deselected=lambda items: dropped.extend(items))
    (root / "tests/api").mkdir(parents=True, exist_ok=True)
    (root / "tests/api/test_x.py").touch()
    return SimpleNamespace(getoption=lambda name: True, rootpath=root, hook=hook)


def test_the_fast_tier_leaves_out_e2e_slow_and_listed_tests(monkeypatch, tmp_path):
    listed = tmp_path / "heavy.txt"
    listed.write_text("# heavy\ntests/api/test_x.py::test_heavy  # 3 s\n")
    monkeypatch.setattr(conftest, "HEAVY_TESTS", listed)
    items = [Item("tests/api/test_x.py::test_heavy"), Item("tests/api/test_x.py::test_light"),
             Item("tests/api/test_x.py::test_long", slow=True), Item("tests/e2e/test_y.py::test_stack")]
    dropped: list = []
    conftest.pytest_collection_modifyitems(fast_config(dropped, tmp_path), items)
    assert [item.nodeid for item in items] == ["tests/api/test_x.py::test_light"]
    assert len(dropped) == 3


@pytest.mark.parametrize("stale", ["tests/api/test_x.py::test_renamed", "tests/api/test_gone_for_good.py::test_any"])
def test_a_listed_test_that_no_longer_exists_stops_the_fast_tier(monkeypatch, tmp_path, stale):
    listed = tmp_path / "heavy.txt"
    listed.write_text(f"{stale}\n")
    monkeypatch.setattr(conftest, "HEAVY_TESTS", listed)
    with pytest.raises(pytest.UsageError, match=stale.replace("[", r"\[")):
        conftest.pytest_collection_modifyitems(fast_config([], tmp_path), [Item("tests/api/test_x.py::test_light")])


def test_every_listed_heavy_test_file_exists():
    assert all((ROOT / nodeid.split("::")[0]).exists() for nodeid in conftest.heavy_test_ids())
