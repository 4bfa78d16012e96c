"""The signed id tokens: the fast path makes exactly itsdangerous's tokens."""

import random

import pytest
from itsdangerous import BadSignature, URLSafeSerializer

from klubpost.security import _IdSerializer


@pytest.mark.parametrize("keys", [["only"], ["old", "new"]])
def test_tokens_are_itsdangerous_tokens_byte_for_byte(keys):
    fast = _IdSerializer(keys, salt="klubpost.test")
    reader = URLSafeSerializer(keys, salt="klubpost.test")
    rng = random.Random(7)
    for _ in range(500):
        ids = [rng.randrange(-3, 2**62) for _ in range(rng.randrange(0, 4))]
        token = fast.dumps(ids)
        assert token == super(_IdSerializer, fast).dumps(ids)
        assert reader.loads(token) == ids


def test_the_newest_key_signs_and_a_token_of_another_key_is_refused():
    token = _IdSerializer(["old", "new"], salt="s").dumps([1, 2])
    assert _IdSerializer(["new"], salt="s").loads(token) == [1, 2]
    with pytest.raises(BadSignature):
        _IdSerializer(["old"], salt="s").loads(token)
    with pytest.raises(BadSignature):
        _IdSerializer(["new"], salt="other purpose").loads(token)


def test_other_values_take_the_ordinary_path():
    serializer = _IdSerializer(["k"], salt="s")
    for value in ({"a": 1}, [True, 2], "text", [1.5]):
        assert serializer.loads(serializer.dumps(value)) == value
