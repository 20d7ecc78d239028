"""Distinct, realistic prompts for paths that must not hit the response cache.

A counter suffix ("... (17)") makes prompts distinct for the exact cache tier but leaves them
near-identical for the semantic tier and the tier estimator. Here every prompt pairs a
different request shape with a different subject (written for these benchmarks), in a fixed
order, so no two are the same text and few are close in meaning; the suites count cache hits
and print them, so a semantic hit would show. Prompts run out rather than repeat.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

TEMPLATES = (
    "What is {s}?",
    "Explain {s} to a ten-year-old in two sentences.",
    "Give me three surprising facts about {s}.",
    "Write a haiku about {s}.",
    "Summarise the history of {s} in one paragraph.",
    "What are the most common misconceptions about {s}?",
    "I am preparing a short talk on {s} for colleagues. Suggest an outline with four points.",
    "Compare {s} with something from everyday life and explain the analogy.",
    "List the pros and cons of learning more about {s}.",
    "Write a tweet announcing a new book about {s}.",
    "Which questions would an expert ask first about {s}?",
    "Translate 'I would like to know more about {s}' into French and German.",
    "Draft a polite email asking a professor for reading recommendations on {s}.",
    "How would you test whether someone really understands {s}?",
    "Describe {s} using only words of one syllable.",
    "What role does {s} play in modern engineering?",
    "Write a limerick about {s}.",
    "Give a one-line definition of {s}, then a longer one for a specialist.",
    "Our team keeps arguing about {s}. Write a neutral summary of both sides "
    "and propose a way to settle it within a week.",
    "Create a five-question multiple-choice quiz on {s} with the answers at the end.",
    "What would change in the world if nobody had discovered {s}?",
    "Recommend three books and one documentary about {s}.",
    "Explain the mathematics behind {s} step by step.",
    "Write a short dialogue between a skeptic and an enthusiast about {s}.",
    "Which careers involve working with {s} every day?",
    "What are the open research problems related to {s}?",
    "Suggest a formal title for an essay on {s}.",
    "In JSON, give the name, a one-sentence summary and three keywords for {s}.",
    "What safety precautions matter when dealing with {s}?",
    "Tell a short bedtime story in which {s} saves the day.",
)

SUBJECTS = (
    "photosynthesis", "black holes", "the French Revolution", "plate tectonics", "vaccines",
    "blockchain ledgers", "the water cycle", "Roman aqueducts", "quantum entanglement",
    "honeybee colonies", "the stock market", "jazz improvisation", "the printing press",
    "coral reefs", "compound interest", "the immune system", "volcanoes", "the Silk Road",
    "machine translation", "sourdough fermentation", "the Doppler effect", "tidal energy",
    "medieval castles", "the human microbiome", "origami", "electric cars",
    "the Great Barrier Reef", "public-key cryptography", "migratory birds", "the Renaissance",
    "glaciers", "chess openings",
    "wind turbines", "the periodic table", "Shakespeare's sonnets", "desert ecosystems",
    "the Apollo programme", "supply chains", "noise-cancelling headphones", "the Ottoman Empire",
    "antibiotic resistance", "hydroponic farming", "the Fibonacci sequence", "lighthouses",
    "sleep cycles", "the Byzantine Empire", "solar panels", "octopus intelligence",
    "the Industrial Revolution", "GPS satellites", "bonsai trees", "monsoons", "the violin",
    "carbon capture", "ancient Egyptian hieroglyphs", "recommender systems", "tardigrades",
    "the Panama Canal", "container shipping", "the placebo effect", "aurora borealis",
    "bridge engineering", "the Maya calendar", "3D printing", "cheese making", "earthquakes",
    "the Magna Carta", "neural networks", "penguins", "the metric system", "urban gardening",
    "submarines", "the Cold War", "coffee roasting", "the Higgs boson", "wildfires",
    "the Olympic Games", "mushroom foraging", "hot-air balloons", "the Hubble telescope",
    "impressionist painting", "rainforests", "railway signalling", "the Baroque era",
    "tea ceremonies", "nuclear fusion", "sign languages", "the Suez Canal", "beekeeping",
    "weather forecasting",
)  # fmt: skip


def distinct_prompts(seed: int = 7) -> Iterator[str]:
    """Every template x subject pair once, in a seeded order (no repeats; StopIteration at end)."""
    pairs = list(itertools.product(range(len(TEMPLATES)), range(len(SUBJECTS))))
    random.Random(seed).shuffle(pairs)  # a fixed order: the same prompts in every run
    for t, s in pairs:
        yield TEMPLATES[t].format(s=SUBJECTS[s])


REPEATED_PROMPT = "What is the capital of France?"


def unique_variants(text: str) -> Iterator[str]:
    """`text` with its last 9 characters replaced by " " and a counter, forever: the same length
    and content, never the same string twice. A guard chain remembers the texts it allowed
    (guards/chain.py), so a benchmark of what a chain costs on a new text must never repeat one."""
    head = text[:-9]
    for i in itertools.count():
        yield f"{head} {i:08d}"
