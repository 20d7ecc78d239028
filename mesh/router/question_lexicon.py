"""Word lists behind the cache's question comparison: what may differ between two prompts that
ask the same thing.

Everything here is general English written for this project (not lifted from any eval file).
Each list only ever makes two prompts MORE alike, so a wrong entry costs a false hit: entries
are kept to words that are interchangeable in every question a user is likely to ask. A word
missing from a list costs only a cache miss.
"""

from __future__ import annotations

Phrase = tuple[str, ...]


def _split(text: str, sep: str | None = None) -> list[str]:
    return text.split(sep)


def _words(text: str) -> frozenset[str]:
    return frozenset(_split(text))


ARTICLES = _words("a an the")


def _phrases(text: str, *, drop_articles: bool = False) -> tuple[Phrase, ...]:
    """'|'-separated phrases, longest first (so "hi there" is tried before "hi")."""
    found = {
        tuple(w for w in p.split() if not (drop_articles and w in ARTICLES))
        for p in text.split("|")
        if p.strip()
    }
    return tuple(sorted(found, key=lambda p: (-len(p), p)))


# Words that mark negation or absence (a veto names the category, never the word).
NEGATORS = _words("not no never none nobody nothing nowhere neither nor without cannot non")
NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "non", "dis", "de", "anti", "mis")

# Greetings: stripped from the start of a sentence only when set off by a comma or standing
# alone ("Hello! ...", "Hey, ..."): in "Hello in Spanish?" or "Good morning in Japanese" the
# greeting is what is asked about.
GREETINGS = _phrases(
    """hi | hello | hey | hiya | howdy | greetings | yo | hi there | hello there | hey there |
    good morning | good afternoon | good evening | dear assistant"""
)
# Request openers that do not change what is asked (contractions expanded, articles still
# present): stripped from the start of each sentence, repeatedly, commas ignored ("Could you
# please ..." -> "..."), unless a preposition or nothing follows.
LEADING_FILLERS = _phrases(
    """quick question | a quick question | question | sorry to bother you but |
    sorry to bother you | sorry but | excuse me | please | kindly | ok so | okay so | so | um |
    can you | could you | would you | will you | i would like you to | i would love you to |
    i want you to | i need you to | i was wondering if you could | i wonder if you could |
    if you could | would you be so kind as to | sorry to trouble you but |
    sorry to trouble you | sorry to ask but | if it is not too much trouble |
    if it is not too much trouble for you | if it is not too much to ask | if you do not mind |
    if you would not mind | would you mind | do you mind | i was wondering |
    i am wondering | just wondering | i am curious | out of curiosity"""
)
# Requests for "the X" that ask what "what is / what are the X" asks, at the start of a
# sentence once fillers are gone ("Tell me the population of Canada"). Only before "the":
# "tell me a joke" asks for a joke, "what is a joke" for a definition.
THE_ASKS = _phrases(
    """what is | what are | tell me | give me | do you know | do you happen to know |
    i want to know | i would like to know | i need to know | let me know | name | list |
    identify | state | find"""
)
# Asks that wrap a question word ("Could you tell me who painted X?", "Do you know where the
# station is?") ask that question: the wrapper goes, the embedded question stays. Not before
# "if"/"whether" (a yes/no question in another word order) and not "name"/"list"/... (they
# take a noun, not a clause).
EMBEDDED_ASKS = _phrases(
    """tell me | do you know | do you happen to know | i want to know | i would like to know |
    i need to know | let me know | any idea | do you have any idea"""
)
QUESTION_WORDS = _words("who whom whose what which where when why how")
# A stripped "can you" / "will you" still says what was asked when the rest is a question,
# not a request: "Can you die from a bee sting?" (is it possible) / "Will you die ...?" (is it
# certain). Two prompts whose openers differ in this way are not the same question. A
# "could you" is "can" only before a request (REQUEST_VERBS): "Could you smoke in pubs?" asks
# about the past (question_fillers._modality).
MODAL_OPENERS: dict[Phrase, str] = {
    ("can", "you"): "can",
    ("could", "you"): "can",
    ("will", "you"): "will",
    ("would", "you"): "will",
}
# Trailing "for me" is politeness only in a request already softened ("Please write a poem
# for me"); in "Is coffee bad for me?" it is the question.
POLITE_OPENERS = _words("please kindly can could would will")
POLITE_TRAILING = _phrases("for me")
# Phrases that may close a sentence without changing it ("..., please", "Thanks a lot."),
# unless the word before makes them the object ("How do you say thank you", "a thank you").
TRAILING_FILLERS = _phrases(
    """please | thanks | thank you | thanks a lot | thanks a bunch | thank you very much |
    thank you so much | thanks so much | thanks very much | many thanks | thanks in advance |
    much appreciated | appreciated |
    cheers | thx | ty | if you can | if possible | if you could | for me please | kindly"""
)
# A whole sentence made only of these words, with at least one marker among them, is social
# ("Dear assistant, I would be very grateful for your help with the following.", "Hope you are
# well!", "Many thanks in advance and kind regards."): it changes no answer, so a prompt loses it
# when another sentence remains. Closed lists with no content word: "Thanks, answer in French."
# or "I would be grateful for a short answer." keep theirs ("answer", "french", "short").
SOCIAL_WORDS = _words(
    """i me my we us our you your it this that there here is are am was were be been being
    would could will can do does did have has had hope hoping hoped a an the and so but or
    just really very much many quite bit of for with in to on at about from by hi hello hey
    dear greetings assistant everyone all folks thanks thank grateful thankful appreciate
    appreciated regards kind kindly best wishes cheers help following below advance having
    doing good great nice lovely wonderful day morning afternoon evening week weekend ok okay
    well alright question questions quick background sorry bother trouble any out again too"""
)
SOCIAL_MARKERS = _words(
    """hi hello hey dear greetings thanks thank grateful thankful appreciate appreciated
    regards cheers hope hoping wishes background"""
)
FILLER_AS_OBJECT = _words(
    """say says saying said translate translates spell pronounce mean means word words called
    is are was for to in as of a an the my your his her their our and or not"""
)
PREPOSITIONS = _words(
    "in on at to for from with without by of into about as than over under between"
)

# Openings that ask for a procedure; each becomes the one token "howto".
HOWTO_OPENINGS = _phrases(
    """how do i | how can i | how should i | how would i | how do you | how can you |
    how does one | how can one | how would one | how do we | how can we | how to |
    what are the steps to | what are steps to | steps to | explain how to | show me how to |
    tell me how to | teach me how to | what is the way to | what is the procedure to |
    what is the process to | what is the right way to | what is the correct way to |
    what is the proper way to | is there a way to | is there any way to |
    what is the best way to | what is good way to | what is way to | how might i |
    what do i do to | what can i do to | what should i do to | what do i need to do to |
    what steps should i take to | what steps do i take to | what steps do i need to take to |
    any tips on how to | tips on how to | any advice on how to | advice on how to""",
    drop_articles=True,  # matched after articles are dropped
)
# Round 8: "get X out of Y" asks what "remove X from Y" asks, after a how-to opening or "to".
# Only for what is removed, not extracted: "get text out of an image" (read it) is not "remove
# text from an image" (erase it). The last word before "out of" must be a stain or the like.
GET_OUT_OF = ("get", "out", "of")
STAINS = _words(
    """wax gum stain stains blood ink paint grease rust mould mold smell smells odour odor
    odours odors sand splinter splinters glass sap chocolate lipstick makeup
    glue tar mud dirt dust urine pee poop poo vomit sweat deodorant toothpaste polish slime
    ketchup mustard grass"""
)

# Multi-word phrases with one canonical form (matched after articles are dropped).
PHRASES: dict[Phrase, Phrase] = {
    tuple(k.split()): tuple(v.split())
    for k, v in (
        *(
            (f"who {be} {agent} of", f"who {verb}")
            for agent, verb, tenses in (
                ("author", "wrote", ("is", "was")),
                ("writer", "wrote", ("is", "was")),
                ("inventor", "invented", ("is", "was")),
                ("founder", "founded", ("is", "was")),
                ("creator", "created", ("is", "was")),
                ("composer", "composed", ("is", "was")),
                ("painter", "painted", ("is", "was")),
                # Also an office: "who is the director of the FBI" asks who holds it now.
                ("director", "directed", ("was",)),
                ("discoverer", "discovered", ("is", "was")),
            )
            for be in tenses
        ),
        ("cannot", "can not"),  # one spelling, and "not" a word of its own (see AUXILIARIES)
        ("in order to", "to"),
        ("log in to", "log into"),
        ("sign in to", "sign into"),
    )
}

# Interchangeable words, one group a line-item (same inflection within a group). Kept to words
# that mean the same in any question; British and American spellings.
SYNONYM_GROUPS: tuple[frozenset[str], ...] = tuple(
    _words(group)
    for group in _split(
        """fix repair | fixes repairs | fixing repairing | fixed repaired |
    big large | bigger larger | biggest largest | fast quick | faster quicker |
    fastest quickest | begin start | begins starts | beginning starting | began started |
    buy purchase | buying purchasing | bought purchased | film movie | films movies |
    kid child | kids children |
    photo photograph | photos photographs | tv television |
    phone telephone | petrol gasoline | ok okay | maybe perhaps | help assist |
    choose select | need require | what which | colour color | colours colors | favourite favorite |
    centre center | metre meter | metres meters | litre liter | litres liters |
    kilometre kilometer | kilometres kilometers | centimetre centimeter |
    centimetres centimeters | millimetre millimeter | millimetres millimeters |
    organise organize | summarise summarize | analyse analyze | optimise optimize |
    recognise recognize | apologise apologize | realise realize | prioritise prioritize |
    behaviour behavior | neighbour neighbor | flavour flavor | humour humor | grey gray |
    jewellery jewelry | aluminium aluminum | programme program | catalogue catalog |
    dialogue dialog | defence defense | licence license |
    travelling traveling | cancelled canceled | modelling modeling |
    recommend suggest | recommends suggests | quit stop | quitting stopping |
    create make | creating making | erase delete remove | erasing deleting removing |
    erased deleted removed | locate find | reduce lower | reducing lowering |
    fridge refrigerator | fridges refrigerators | flu influenza | easiest simplest |
    fast quickly | utilise utilize | mum mom | mums moms | maths math | tyre tire |
    tyres tires | theatre theater | fibre fiber | mould mold | pyjamas pajamas |
    sceptical skeptical | doughnut donut | doughnuts donuts | ageing aging |
    judgement judgment | aeroplane airplane | moustache mustache | travelled traveled""",
        "|",
    )
)
# Round 6 dropped, each with a common other sense and no paraphrase won on the tune data:
# car / automobile (Lisp's car, a railway car), sofa / couch (couch grass, to couch), check /
# cheque (chess, to check), lorry / truck (a skateboard's truck), rubbish / garbage / trash
# (garbage collection, trash talk), doctor / physician (the Doctor, a doctor of philosophy),
# bike / bicycle (a motorbike in British English); and the pairs into / to, into / in, using /
# with ("run into a bear" / "run to a bear", "get into Harvard", "a man with a knife").
# Nouns and plain adjectives that head compounds in another sense ("couch grass", "kid gloves",
# "film camera", "big data"): a synonym only where no content word follows (see
# cache_verify._in_context). Comparatives, superlatives and spellings are not in compounds.
COMPOUND_SYNONYMS = _words(
    """film movie films movies kid child kids children photo photograph photos photographs tv
    television phone telephone petrol gasoline big large fast quick flu influenza"""
)
NUMBER_WORDS: dict[str, int] = {
    w: i
    for i, w in enumerate(
        _split(
            """zero one two three four five six seven eight nine ten eleven twelve thirteen
            fourteen fifteen sixteen seventeen eighteen nineteen"""
        )
    )
}
TENS: dict[str, int] = {
    w: 10 * i
    for i, w in enumerate(_split("twenty thirty forty fifty sixty seventy eighty ninety"), 2)
}
MULTIPLIERS: dict[str, int] = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
ORDINAL_WORDS = _split(
    """zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth
    thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth"""
)

# Singular nouns that name a fixed quantity: "a decade" asks the same as "10 years".
QUANTITY_NOUNS: dict[str, Phrase] = {
    "fortnight": ("14", "days"),
    "decade": ("10", "years"),
    "century": ("100", "years"),
    "millennium": ("1000", "years"),
    "dozen": ("12",),
}
# Only after "a" / "one": "a week" is 7 days; "the week" or "week 3" is not.
COUNTED_NOUNS: dict[str, Phrase] = {"week": ("7", "days")}

# Words that open an adverbial phrase which may stand first or last without changing the
# question: "In Python, how do I ..." / "How do I ... in Python?". Not "with" / "without": at
# the end they may describe the word before ("support a partner with depression"), at the
# start the asker ("With depression, how can I support a partner?").
MOVABLE_PHRASE_OPENERS = _words(
    """in on for using via by at from during inside within under through after
    before since until near around across throughout among despite"""
)
# ...of which these never say who: "using Git", "via Paris", "during the night", "by train".
# The others may describe the person before them ("a friend in debt", "a dog after surgery").
DETACHED_PHRASE_OPENERS = _words("using via during by throughout")
# "not" after an auxiliary may stand after the subject instead ("Why don't cats ..." / "Why do
# cats not ..."), unless it crosses a quantifier ("not all cats" is not "all cats ... not").
AUXILIARIES = _words("do does did is are was were am has have had")
# After a modal the place of "not" changes the question ("Shouldn't I go?" asks for
# confirmation, "Should I not go?" asks for advice), except after "why".
MODALS = _words("can could will would should shall may might must need")
# Verbs in SYNONYM_GROUPS: synonyms only where a verb stands (first, or after one of
# VERB_CUES; or last, for a pair one of which is never a noun). "a GPS fix" is not "a GPS
# repair", "an assist" in hockey is not "a help", and in "What does delete / need / select
# do?" the word is the subject (C++'s delete, Node's require, the select() call), not a verb.
VERB_SYNONYMS = _words(
    """fix repair start begin buy purchase help assist need require delete remove choose select
    recommend suggest quit stop create make erase locate find reduce lower"""
)
# ...and never last when both may be something else there: nouns ("a GPS fix"), adjectives
# ("lower"), or verbs with another sense ("What do these results suggest?").
NOUN_TOO = _words(
    "fix repair start buy purchase help assist need recommend suggest stop make find lower"
)
SUBJECT_PRONOUNS = _words("i you he she it we they")
# Never an object: the word after one of these is a verb.
SUBJECTS = _words("i we they he she howto")
POSSESSIVES = _words("my your his her its our their")
VERB_CUES = _words("howto to not please and or me us him her them") | SUBJECT_PRONOUNS | MODALS
# Before "X and Y", these make X and Y actions, done in that order ("is it safe to eat and
# swim", "can I freeze and boil milk").
ACTION_CUES = _words("to howto") | SUBJECT_PRONOUNS
ARITHMETIC = _words(
    """times plus minus divided multiplied over power squared cubed x * / + - ^ root mod
    modulo percent"""
)
QUANTIFIERS = _words(
    """all every each some any many most both either neither few several much more less no
    none only"""
)
# "not" may not cross these: "not everybody" is not "everybody ... not", "not always" is not
# "always not".
INDEFINITE_PRONOUNS = _words(
    """everyone everybody everything anyone anybody anything someone somebody something
    nobody nothing"""
)
FREQUENCY_ADVERBS = _words(
    """always often usually sometimes ever never seldom rarely just really still even also
    already quite rather too very much again yet almost"""
)
# Relations whose two sides may be exchanged: "How far is Madrid from Barcelona?", "How does a
# hare differ from a rabbit?", "Is X the same as Y?". Only when nothing but this word and a
# linking word stands between the two sides (so "How far can a dog chase a cat?" is not one).
# Not "compatible": a donor's blood type, a reader and a card, a new console and an old game
# are compatible one way only.
SYMMETRIC_RELATIONS = _words(
    "far distance differ differs different difference similar same equal equivalent"
)
SYMMETRIC_LINKS = _words("from to as with and")
# Words joining two items whose order does not change the question ("sum of 15 and 27",
# "Vue or React")...
COMMUTATIVE_JOINERS = _words("and or")
# ...unless the prompt asks for something whose items are ordered (a function's parameters,
# a table's columns, a sequence of steps)...
ORDERED_CONTEXT = _words(
    """function functions method methods parameter parameters argument arguments args takes
    accepts signature column columns field fields order ordered sequence then followed before
    after sentence phrase spell translate respectively"""
)
# ...or, for two numbers, an operation where their order matters.
ORDER_SENSITIVE_NUMBERS = _words(
    """ratio minus subtract subtracted divide divided quotient difference percent percentage
    power exponent over from to than log logarithm modulo mod remainder"""
)
# Words that are not content: after a noun synonym they end its phrase ("the best film of
# 1994", "how big is"), where a content word would make a compound ("film camera").
FUNCTION_WORDS = (
    PREPOSITIONS
    | AUXILIARIES
    | MODALS
    | SUBJECT_PRONOUNS
    | POSSESSIVES
    | QUESTION_WORDS
    | ARTICLES
    | _words(
        """me us him them and or but nor than that this these those if so as enough too very
        not no howto there here then ever now today please"""
    )
)
# A prompt about words (what one means, how it is spelt or said) or in another language: its
# odd words may be foreign or the very word asked about ("What does pollo mean in Spanish?"),
# so no typo is forgiven in it.
WORD_QUESTIONS = _words(
    """mean means meant meaning meanings define definition spell spelt spelled spelling
    pronounce pronounced pronunciation translate translated translation word words term
    synonym antonym rhyme rhymes plural singular conjugate conjugation etymology"""
)
# Words of a prompt that works on a text (translate it, reply to it, judge its wording): there
# a greeting or a "thanks" may be the text itself, so no sentence is dropped as a filler.
MATERIAL_WORDS = (
    _words(
        """translate translated translation translations sentence sentences text texts message
    messages email emails mail letter letters note reply replies respond response responses
    quote quoted phrase phrases paragraph paragraphs rewrite rephrase reword proofread
    correct correction grammar grammatical punctuation tone polite politely formal informal
    casual say saying said greeting greetings wording count spell spelling mean means meaning
    pronounce language caption"""
    )
    | WORD_QUESTIONS
)
# Writing and words are a text worked on only next to a word that points at one ("Write this
# in French.", "the following words"); "Write a limerick" or "about 200 words" is not.
MATERIAL_WITH_POINTER = _words("write writes writing written word words")
POINTERS = _words("this these it following below above")
LANGUAGE_NAMES = _words(
    """english french spanish german italian portuguese dutch flemish latin greek russian
    polish czech slovak slovene slovenian croatian serbian bosnian bulgarian ukrainian
    romanian hungarian finnish estonian latvian lithuanian swedish norwegian danish icelandic
    irish welsh gaelic scots breton basque catalan galician maltese albanian turkish arabic
    hebrew persian farsi urdu hindi bengali punjabi gujarati marathi tamil telugu kannada
    malayalam sinhala nepali chinese mandarin cantonese japanese korean vietnamese thai lao
    khmer burmese malay indonesian tagalog filipino swahili zulu xhosa afrikaans amharic somali
    yoruba igbo hausa esperanto sanskrit yiddish"""
)
# Requests to the assistant: after one, "could you" asks what "can you" asks ("Could you
# explain X?"). Before anything else it is the past or a condition ("Could you smoke in pubs?"
# is not "Can you smoke in pubs?").
REQUEST_VERBS = _words(
    """tell explain describe list name give recommend suggest write summarise summarize define
    help show translate calculate compute convert compare make create find provide draw sketch
    teach remind generate compose outline spell solve clarify elaborate rewrite rephrase
    paraphrase proofread correct edit review analyse analyze evaluate estimate plan design draft
    prepare build code implement debug check identify state share send let walk guide point
    talk say please kindly"""
)
# Round 8. A clause opened by one of these may stand before or after the main clause ("If my
# flight is cancelled, am I owed money?" / "Am I owed money if my flight is cancelled?")...
SUBORDINATORS = _words(
    "if when whenever while because since although though unless once until whereas"
)
# ...but after one of these an "if" / "when" clause is what is asked, not a condition: "Tell
# me if it will rain" is not "If it will rain, tell me"; "how do I know if".
COMPLEMENT_TAKERS = _words(
    """know knows tell ask asks check see wonder decide sure find out determine show me us him
    her them you remind whether remember forget learn figure doubt understand notice matter
    care test verify confirm predict guess say explain work idea unsure clue"""
)
# Sentences may come in another order only when none of them points at another one's place
# ("Then multiply by 3", "If so, ...", "the first one", "5 years later", "the result")...
SENTENCE_ORDER_WORDS = _words(
    """then next first firstly second secondly third finally lastly last later afterwards
    afterward earlier now again above below previous previously following former latter so
    otherwise else instead result results answer answers same other another too also"""
)
# ...and a sentence that refers back ("What is its population?") only in a prompt of two
# sentences, one of which asks: with three, "its" may mean what the sentence before it names.
ANAPHORS = _words(
    """it its itself they them their theirs themselves he him his himself she her hers herself
    this that these those there such one ones"""
)
