"""Strict parsing of (task, query) completions: each malformed output maps to one exact reject reason."""

from __future__ import annotations

import pytest

from gecko_distill.errors import ParseError
from gecko_distill.generation.parsing import parse_task_query

PASSAGE = "The bridge was opened in 1932 after six years of construction and held the span record until 1977."


def test_good_completion():
    task, query = parse_task_query(" Given a claim, find evidence.\nQuery: The bridge opened in 1932.\n", PASSAGE)
    assert task == "Given a claim, find evidence."
    assert query == "The bridge opened in 1932."


def test_quotes_and_case_and_fullwidth_colon():
    task, query = parse_task_query(" Find a passage.\nquery： “когда открыли мост”", PASSAGE)
    assert query == "когда открыли мост"


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        (" Given a claim, find evidence.", "malformed"),
        (" Given a claim.\n\nQuery: late query", "malformed"),
        ("\nQuery: the bridge", "missing_task"),
        (" Given a claim.\nQuery: \"\"", "empty_query"),
        (" Given a claim.\nQuery: " + "word " * 41, "too_long"),
        (" Given a claim.\nQuery: " + PASSAGE, "copy_of_passage"),
        (" Given a claim.\nQuery: opened in 1932 after six years of construction and held the span", "copy_of_passage"),
    ],
)
def test_rejects(completion, reason):
    with pytest.raises(ParseError) as e:
        parse_task_query(completion, PASSAGE)
    assert e.value.reason == reason


def test_max_query_words_is_configurable():
    with pytest.raises(ParseError):
        parse_task_query(" T.\nQuery: a b c d", PASSAGE, max_query_words=3)
    assert parse_task_query(" T.\nQuery: a b c", PASSAGE, max_query_words=3)[1] == "a b c"


@pytest.mark.parametrize("query", ["What is the purpose of the article?", "the study was not published.",
                                   "What did the authors find?", "why?", "what is it",
                                   "What is the meaning of the passage?"])
def test_generic_queries_are_rejected_when_filtered(query: str) -> None:
    from gecko_distill.generation.parsing import is_generic

    assert is_generic(query)
    with pytest.raises(ParseError) as e:
        parse_task_query(f" Given a question, find the answer.\nQuery: {query}", "some passage", filter_generic=True)
    assert e.value.reason == "generic"
    # Off by default at this level: the stage turns it on with generation.filter_generic.
    parse_task_query(f" Given a question, find the answer.\nQuery: {query}", "some passage")


@pytest.mark.parametrize("query", ["What is the role of IL-13 in schistosomiasis?",
                                   "vitamin D deficiency raises the risk of fractures", "copper price history",
                                   "the study was designed to assess the relationship between iris color and "
                                   "macular pigment optical density"])
def test_specific_queries_pass_the_generic_filter(query: str) -> None:
    from gecko_distill.generation.parsing import is_generic

    assert not is_generic(query)


def test_passage_overlap_counts_the_querys_word_4grams_found_in_the_passage() -> None:
    from gecko_distill.generation.parsing import passage_overlap

    # 6 words -> 3 four-grams; "the bridge was opened" and "bridge was opened in" occur, "was opened in may" not
    assert passage_overlap("The bridge was opened in May", PASSAGE) == pytest.approx(2 / 3)
    assert passage_overlap("When did the span record end?", PASSAGE) == 0.0
    assert passage_overlap("bridge span record", PASSAGE) == 0.0  # under 4 words: nothing to compare


def test_near_copies_are_rejected_only_when_the_filter_is_set() -> None:
    # a stitched near-copy (no 8 words in a row, so not a verbatim copy) and a paraphrase of the same fact
    near = " Given a claim.\nQuery: The bridge was opened in 1932 and it held the span record until 1977"
    para = " Given a claim.\nQuery: Which crossing kept its length title for 45 years?"
    assert parse_task_query(near, PASSAGE)[1].startswith("The bridge")  # off by default
    with pytest.raises(ParseError) as e:
        parse_task_query(near, PASSAGE, max_passage_overlap=0.5)
    assert e.value.reason == "near_copy"
    assert parse_task_query(para, PASSAGE, max_passage_overlap=0.5)[1].startswith("Which crossing")
