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


@pytest.mark.parametrize("digest", ["sha1", "sha256"])
@pytest.mark.parametrize("key_length", [0, 20, 64, 65, 200])
def test_prepared_hmac_is_hmac(digest, key_length):
    import hashlib
    import hmac

    from klubpost.security import PreparedHmac

    key = bytes(range(256))[:key_length]
    for maker in (digest, getattr(hashlib, digest)):
        prepared = PreparedHmac(key, maker)
        for message in (b"", b"[1,2]", b"x" * 300):
            assert prepared.digest(message) == hmac.digest(key, message, digest)
            assert (
                prepared.hexdigest(message)
                == hmac.new(key, message, digest).hexdigest()
            )


def test_tokens_of_one_two_or_three_ids_are_the_ordinary_tokens():
    fast = _IdSerializer(["k1", "k2"], salt="klubpost.test")
    for ids in ([], [7], [7, 2**40], [1, 2, 3], [-1, 0]):
        assert fast.dumps_ids(*ids) == super(_IdSerializer, fast).dumps(ids)


def test_the_token_maker_makes_the_tokens_sign_makes(app):
    from klubpost.security import id_token_maker, sign, unsign

    with app.app_context():
        token = id_token_maker("unsubscribe").dumps_ids(12, 34)
        assert token == sign("unsubscribe", 12, 34)
        assert unsign("unsubscribe", token, 2) == [12, 34]


def test_pairs_of_ids_make_the_same_tokens_in_one_call():
    fast = _IdSerializer(["k"], salt="klubpost.test")
    firsts = [1, 22, 333, 2**50]
    tokens = fast.dumps_pairs(firsts, 4711)
    assert tokens == [fast.dumps_ids(first, 4711) for first in firsts]
    assert [fast.loads(token) for token in tokens] == [[f, 4711] for f in firsts]
