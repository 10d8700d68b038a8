"""The one registry mechanism behind methods and models."""

import threading

import pytest

from engine.errors import UnknownMethod, UnknownModel
from engine.models.zoo import MODELS
from engine.named_registry import NameTaken, Registry
from engine.registry import METHODS


def test_builtins_load_once_on_first_use_and_names_are_unique():
    calls = []
    registry = Registry("widget", KeyError, lambda: calls.append(1) or registry.add("a", 1))
    assert registry.get("a") == 1 and registry.all() == [1] and "a" in registry
    assert calls == [1]
    with pytest.raises(NameTaken, match="widget 'a' is already registered"):
        registry.add("a", 2)


def test_unknown_names_raise_the_registrys_own_error_listing_what_exists():
    with pytest.raises(UnknownMethod, match="unknown method 'nope'; available: .*saliency"):
        METHODS.get("nope")
    with pytest.raises(UnknownModel, match="unknown model 'nope'; available: efficientnet_lite0, .*vgg19"):
        MODELS.get("nope")


def test_concurrent_registrations_of_one_name_have_exactly_one_winner():
    registry = Registry("widget", KeyError, lambda: None)
    barrier = threading.Barrier(8)
    outcomes = []

    def register(i):
        barrier.wait()
        try:
            registry.add("same", i)
            outcomes.append("won")
        except NameTaken:
            outcomes.append("taken")

    threads = [threading.Thread(target=register, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["taken"] * 7 + ["won"]


def test_removed_names_are_unknown_and_can_be_registered_again():
    registry = Registry("widget", KeyError, lambda: None)
    registry.add("x", 1)
    assert registry.remove("x") == 1
    with pytest.raises(KeyError):
        registry.get("x")
    registry.add("x", 2)
    assert registry.get("x") == 2
