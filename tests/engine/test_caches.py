"""Per-model caches stay bounded however many sizes clients ask for."""

from engine.models.wrapper import CATALOGUE_SIZES


def test_layer_catalogues_are_kept_for_the_most_recent_sizes_only(efficientnet):
    first = efficientnet.catalogue((32, 32))
    for side in range(33, 33 + CATALOGUE_SIZES + 4):
        efficientnet.catalogue((side, side))
        efficientnet.catalogue((32, 32))  # used again: stays
    assert len(efficientnet._catalogues) == CATALOGUE_SIZES
    assert efficientnet.catalogue((32, 32)) is first
    assert (33, 33) not in efficientnet._catalogues  # the least recently used went first
    assert efficientnet.catalogue((33, 33))[0].shape == first[0].shape[:1] + (17, 17)
