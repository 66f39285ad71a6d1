"""Cutting streamed LLM text into speakable pieces."""

import pytest

from voice_pipeline.reply.chunker import SpeakableChunker, clean_for_speech


def run(text, by=" ", **kwargs):
    chunker = SpeakableChunker(**kwargs)
    pieces = []
    for token in text.split(by):
        pieces += chunker.push(token + by)
    return pieces + chunker.flush()


def test_first_piece_is_a_clause_later_pieces_are_sentences():
    pieces = run("Paris is the capital, a city on the Seine, with many museums. It is lovely, really, in spring.")
    assert pieces == [
        "Paris is the capital,",
        "a city on the Seine, with many museums.",
        "It is lovely, really, in spring.",
    ]


def test_first_clause_waits_for_enough_words():
    assert run("Yes, Paris is the capital.")[0] == "Yes, Paris is the capital."


def test_sentence_end_needs_following_space():
    chunker = SpeakableChunker()
    assert chunker.push("It costs 3.") == []
    assert chunker.push("5 euros. Then") == ["It costs 3.5 euros."]


def test_abbreviations_and_initials_do_not_end_sentences():
    assert run("Dr. Smith met J. K. Rowling. Then he left.") == ["Dr. Smith met J. K. Rowling.", "Then he left."]


def test_long_run_without_punctuation_is_cut_at_max_words():
    pieces = run(" ".join(["word"] * 25), max_words=10)
    assert all(len(p.split()) <= 11 for p in pieces) and len(pieces) >= 2
    assert sum(len(p.split()) for p in pieces) == 25


def test_markdown_lists_and_emoji_are_not_spoken():
    pieces = run("**Sure!** 😀 Here:\n- item one\n- item two\n[docs](http://x.y) and https://a.b/c")
    assert pieces == ["Sure!", "Here:", "item one", "item two", "docs and a link"]


def test_unspeakable_leftovers_are_dropped():
    assert run("Hello there. *** ---") == ["Hello there."]
    assert SpeakableChunker().flush() == []


def test_tokens_split_inside_words_are_joined():
    assert run("Hel|lo th|ere, my fri|end. Bye|.", by="|") == ["Hello there, my friend.", "Bye."]


@pytest.mark.parametrize("text, spoken", [("`code`", "code"), ("# Title", " Title"), ("a > b", "a  b")])
def test_clean_for_speech(text, spoken):
    assert clean_for_speech(text) == spoken


def test_a_long_first_sentence_is_cut_before_a_phrase_and_spoken_with_a_pause():
    pieces = run("Romeo and Juliet were killed in the tomb of the Capulets. It is sad.", first_max_words=8)
    assert pieces == ["Romeo and Juliet were killed,", "in the tomb of the Capulets.", "It is sad."]
    # only the first piece: later long sentences wait for their end (or max_words)
    assert run("Yes. Romeo and Juliet were killed in the tomb of the Capulets.", first_max_words=8) == [
        "Yes.", "Romeo and Juliet were killed in the tomb of the Capulets."]


def test_the_phrase_cut_keeps_a_short_subject_numbers_and_short_sentences_whole():
    assert run("The tallest mountain in the world is Mount Everest in Nepal.", first_max_words=8)[0] == (
        "The tallest mountain in the world is Mount Everest,")  # not "The tallest mountain,"
    assert run("About three hundred and forty nine million and ten kilometers.", first_max_words=8) == [
        "About three hundred and forty nine million and ten kilometers."]
    assert run("William Shakespeare wrote it in the year fifteen ninety five.", first_max_words=0) == [
        "William Shakespeare wrote it in the year fifteen ninety five."]
    assert run("It is a fine day in Paris.", first_max_words=8) == ["It is a fine day in Paris."]


def test_a_phrase_cut_needs_the_whole_word_not_a_prefix():
    chunker = SpeakableChunker(first_max_words=8)
    assert chunker.push("The tallest peak of the whole old world in") == []  # "in" may be "inside"
    assert chunker.push("side the park. ") == ["The tallest peak of the whole old world inside the park."]
