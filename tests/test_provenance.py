import pytest

from model.provenance import Provenance


@pytest.mark.parametrize("untrained,random_features,expected", [
    (False, False, Provenance.TRAINED),
    (False, True, Provenance.RANDOM_FEATURES),
    (True, True, Provenance.UNTRAINED),
    (True, False, Provenance.UNTRAINED),
])
def test_of_and_record_round_trip(untrained, random_features, expected):
    p = Provenance.of(untrained, random_features)
    assert p is expected
    assert Provenance.from_record(p.fields()) is p


def test_wording_names_the_problem_and_the_fix():
    assert Provenance.TRAINED.tag == "" and Provenance.TRAINED.note == ""
    assert Provenance.UNTRAINED.note.startswith("UNTRAINED: ")
    assert "--checkpoint" in Provenance.UNTRAINED.note
    assert Provenance.RANDOM_FEATURES.note.startswith("RANDOM FEATURES: ")
    assert "model.weights fetch" in Provenance.RANDOM_FEATURES.note
    assert Provenance.from_record({}) is Provenance.TRAINED
