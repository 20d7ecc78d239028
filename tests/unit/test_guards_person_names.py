"""Census first names and naming cues as PERSON (the names the small spaCy model misses), and
the guards on them: ambiguous words, streets and firms, function words. Inputs written for
these tests (not from the dev set)."""

from __future__ import annotations

import itertools

import pytest

from guards.detectors.person_names import AMBIGUOUS, first_names, name_spans


def names(text: str) -> list[str]:
    return [text[start:end] for start, end, _ in name_spans(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Please ask Gregory to call back.", ["Gregory"]),
        ("Invite Rebecca, Howard and Yolanda.", ["Rebecca", "Howard", "Yolanda"]),
        ("Forward it to Harold J. Pemberton today.", ["Harold J. Pemberton"]),
        ("Grace Okafor signed the lease.", ["Grace Okafor"]),  # ambiguous, surname follows
        ("My name is Oskari Virtanen, hello", ["Oskari Virtanen"]),  # cue, any first name
        ("her maiden name is lindqvist", ["lindqvist"]),  # cue, lower case
        ("Full name: Teodora M Vasic\nPhone: none", ["Teodora M Vasic"]),
        ("Ask Gregory Hale. Rebecca Stone knows.", ["Gregory Hale", "Rebecca Stone"]),
    ],
)
def test_names_are_found(text: str, expected: list[str]) -> None:
    assert names(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "May I pay by card?",  # an ambiguous first name alone
        "Grace is a virtue and Hope a habit.",
        "Send it to 12 St. Vincent Street, Suite 4.",  # a street
        "Jefferson Avenue is closed.",
        "Harrison and Sons makes tables.",  # a firm
        "Carry Me Back To Old Virginny",  # a title: function words are not surnames
        "THOMAS WROTE THIS IN CAPITALS",  # shouting is not a name
        "my name is",  # a cue with nothing after it
        "The name: is missing",
    ],
)
def test_look_alikes_are_not_names(text: str) -> None:
    assert names(text) == []


def test_the_list_is_the_census_list_less_function_words() -> None:
    listed = first_names()
    assert len(listed) > 5000 and {"gregory", "yolanda", "harold"} <= listed
    assert "my" not in listed and "an" not in listed
    assert {"may", "grace", "will"} <= AMBIGUOUS


def test_presidio_reports_them_as_person() -> None:
    from guards.detectors.presidio import PresidioDetector  # the `presidio` extra (make install)

    detector = PresidioDetector(["PERSON"])
    text = "My name is Oskari and I live here."
    found = detector.find(text)
    assert any(f.type == "PERSON" and text[f.start : f.end] == "Oskari" for f in found)


@pytest.mark.parametrize(
    "text",
    [
        "Name: " * 50_000,  # a cue per word: was quadratic (16,000 took 3.6 s)
        "Name: Gregory Hale. " * 20_000,
        "Gregory Hale met Rebecca Stone. " * 20_000,
        "Name:" + "!" * 500_000,
    ],
    ids=["cues", "cued-names", "names", "cue-then-punctuation"],
)
def test_hostile_texts_are_linear(text: str) -> None:
    """No timing assert (noisy machines): a quadratic pass would take minutes and hit the
    suite's timeout; each of these takes well under a second here."""
    spans = name_spans(text)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # no overlaps
