"""The character tokenizer: ids, BOS, round trips and errors."""

import pytest

from microgpt.data import CharTokenizer, load_names


def test_ids_are_sorted_characters_then_bos():
    tok = CharTokenizer.from_docs(["cab", "bad"])
    assert tok.chars == ["a", "b", "c", "d"]
    assert (tok.bos, tok.vocab_size) == (4, 5)
    assert tok.encode("dcba") == [3, 2, 1, 0]


def test_round_trip_and_wrap():
    tok = CharTokenizer.from_docs(["emma", "olivia"])
    assert tok.decode(tok.encode("olivia")) == "olivia"
    assert tok.wrap("emma") == [tok.bos, *tok.encode("emma"), tok.bos]
    assert tok.decode(tok.wrap("emma")) == "emma"


def test_unknown_character_is_named():
    tok = CharTokenizer.from_docs(["abc"])
    with pytest.raises(ValueError, match="'Z'"):
        tok.encode("aZ")


def test_bad_ids_and_vocabulary():
    tok = CharTokenizer.from_docs(["abc"])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([7])
    with pytest.raises(ValueError, match="single characters"):
        CharTokenizer(["ab"])


def test_names_vocabulary_is_the_originals(data_dir):
    tok = CharTokenizer.from_docs(load_names())
    assert "".join(tok.chars) == "abcdefghijklmnopqrstuvwxyz"
    assert tok.vocab_size == 27
