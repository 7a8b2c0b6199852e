"""Sentiment toward one organisation in one clause of text, in English, Spanish, German and French (pure).

**Language** — detected once per answer by py3langid (a maintained fork of langid.py: a naive-Bayes model of byte
n-grams shipped inside the package, no download at run time), restricted to :data:`LANGUAGES`, on at most
:data:`LANGUAGE_SAMPLE_CHARS` of the answer's prose with URLs and code masked.

**Lexicons** — English: a vendor-evaluation list (below) plus the strong entries of VADER's lexicon
(vaderSentiment's ``vader_lexicon.txt``, valence ≥ 2 or ≤ −2: "love", "terrible", "fantastic" …; Hutto & Gilbert,
ICWSM 2014). Spanish, German, French: hand-written evaluation lists of the same kind — no maintained packaged
lexicon exists for them (textblob-fr dates from 2013, textblob-de from 2019 and both pull NLTK corpora;
germansentiment downloads a transformer model), so these are the project's own; inflected forms are matched by
dropping the usual endings (:func:`_forms`).

**Rules**, applied to the words of one clause (:func:`polarity`):

* negation: a term up to 4 (English) or 5 (Spanish, German, French) words after a negator is flipped, the scope
  ending at a comma, colon, parenthesis or conjunction; negators count by parity, so "not the cheapest", "no es la
  opción más barata", "nicht besonders günstig" are unfavourable, "no hidden fees", "nicht teuer", "pas cher"
  favourable and "n'est pas la moins chère" ("pas" + "moins") unfavourable; French "ne" pairs with "pas" /
  "jamais" / "plus" ("n'est plus fiable"); "not only" negates nothing; German and French negations after the verb
  count too ("lohnt sich nicht", "ne convainc pas");
* domain nouns ("bugs", "issues", "threats", "fraud", "errors", "crashes", "outages", "Fehler", "amenazas",
  "menaces" …) are what such products *handle*: they count as unfavourable only after a cue that the org *suffers*
  them ("had a major outage", "known bugs", "frequent issues"; cues per language), never after a handling word
  ("scans for known vulnerabilities", "groups errors and crashes", "detecta amenazas"); a negative word right before
  a measured object ("slow queries", "langsame Transaktionen") or after "during" ("during shortages") is no
  judgement;
* quotas are description: "limited to 35 sessions", "capped at $1,250", "limitado a", "limitée aux", "auf drei
  Nutzer begrenzt";
* "higher" / "lower" are price judgements only in the comma-delimited stretch that names a price ("higher volume,
  lower effective fees");
* labels carry no opinion: bare section labels ("Pros and cons") and fit labels followed by a colon ("Best for:",
  "Ideal para:", "Idéal pour :") — "best for X" in prose is a fit and favourable; "Cons:" is unfavourable;
* runs of capitalised words after the first word are names ("de Buenos Aires"), not evaluations; "puntual" /
  "ponctuel" (also "one-off") count only after a degree word;
* comparisons are directional: ``polarity`` returns the sign of the comparative ("cheaper" +1, "more expensive"
  −1) and whether the clause is a comparison, so the caller can credit the subject and debit the object. The
  comparative is the nearest evaluative word up to six words before "than" ("easier to set up than"); Spanish and
  French "que" and German "als" close a comparison only with a marker (más, plus, moins, mejor, a German "-er"
  form); "rather than" and "than" before a number compare nothing; "inférieur à" / "superior a" and "compared to"
  / "im Vergleich zu" / "par rapport à" are comparisons too (a marker that opens the clause and is followed by a
  comma introduces the subject instead).

:func:`refers_back` tells the caller that a sentence starting "It …", "Its …", "Su …", "Sein …", "Il …" still talks
about the subject before it, whatever other organisation it names.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

LANGUAGES: tuple[str, ...] = ("en", "es", "de", "fr")
LANGUAGE_SAMPLE_CHARS = 300

_EN_POS = """
best leading leader excellent great strong strongest reliable reliability trusted trustworthy popular recommended
recommend recommends top fast faster fastest affordable cost-effective inexpensive competitive innovative powerful
robust scalable flexible easy easier simple simpler seamless well-known reputable impressive ideal outstanding
superior efficient secure generous transparent favorite favourite standout solid proven mature user-friendly
intuitive versatile comprehensive cutting-edge state-of-the-art praised loved winner pioneer pioneering dominant
preferred advantage excels excel excellent stable high-performance performant best-in-class go-to exceptional
renowned abundant plentiful low-latency good better cheaper cheapest lowest unmatched industry-leading world-class
polished smooth responsive helpful accurate friendly elegant beloved lightweight handy convenient worth
worthwhile valuable capable sleek modern thorough dependable unbeatable shines shine strength
strengths wins nice fair cheap reasonable reasonably established honest standout unmetered
well-priced value recommendation recommendations stylish flexibility widest largest
favourite-choice justified beats outperforms outperform predictable usable painless pros tidy clean cleaner
"""
_EN_NEG = """
expensive costly pricey overpriced limited lacks lacking lack slow slower unreliable poor weak weaker difficult
complex complicated confusing downtime concerns concern risky drawback drawbacks downside downsides criticized
criticised controversy controversial lawsuit lawsuits shortage shortages scarce unavailable waitlist waitlists
buggy immature steep lock-in frustrating frustration complaints complain complained worse worst inferior struggle
struggles struggled struggling lagging declining restrictive opaque inconsistent unstable vulnerable bankrupt
layoffs disadvantage disadvantages avoid cumbersome clunky outdated dated sluggish mediocre disappointing hard
harder higher-priced premium-priced capped throttled throttling delays delayed failure failures overwhelming
bloated cluttered overkill pricier dearer laggy flaky painful annoying tedious awkward rigid slowly heavy
heavier noisy messy unintuitive unhelpful unresponsive hidden skip overloaded criticism weakness weaknesses
unclear faulty crashed crashing damaged complaint raising rising crept hikes hike thinner upsells upsell upselling
hit-or-miss trade-off trade-offs tradeoff tradeoffs priciest costliest cons repetitive
"""
_ES_POS = """
mejor mejores excelente excelentes fiable fiables confiable confiables recomendable recomendables recomendado
recomendada recomendados recomendadas recomiendo popular populares rápido rápida rápidos rápidas económico
económica económicos económicas barato barata baratos baratas asequible asequibles fácil fáciles sencillo sencilla
intuitivo intuitiva potente potentes robusto robusta sólido sólida flexible flexibles completo completa completos
completas personalizable ideal ideales destaca destacan líder líderes eficiente eficientes seguro segura cómodo
cómoda ventaja ventajas excelencia generoso generosa transparente estable estables moderno moderna versátil útil
útiles buena bueno buenos buenas gran grandes maduro madura favorito favorita preferido preferida
amable cómodos cómodas cumplidor agradable destacable destacado destacada cuidada cuidadas puntual puntuales
sobresaliente rentable competitivo competitiva competitivos competitivas amplio amplia amplios amplias eficaz
eficaces práctico práctica prácticos valorado valorada apreciado apreciada ágil ágiles innovador innovadora
"""
_ES_NEG = """
caro cara caros caras costoso costosa costosos costosas lento lenta lentos lentas limitado limitada limitados
limitadas complejo compleja complicado complicada confuso confusa difícil difíciles peor peores pobre deficiente
inestable desventaja desventajas inconveniente inconvenientes problema problemas quejas queja retrasos retraso
retrasado anticuado anticuada obsoleto obsoleta engorroso engorrosa escaso escasa escasos lentitud críticas
carece carecen falta caída caídas opaco opaca rígido rígida tosco tosca malo mala malos malas pésimo pésima
incómodo incómoda abusivas abusivos ocultas ocultos elevadas elevados elevada elevado suben subido
criticado criticada criticados critican quejan insuficiente insuficientes saturado saturada mediocre pega pegas
contras
"""
_DE_POS = """
beste besten bester bestes zuverlässig zuverlässige zuverlässigen zuverlässiger empfehlenswert empfehlenswerte
empfohlen empfehle beliebt beliebte beliebten schnell schnelle schnellen schneller günstig günstige günstigen
günstiger preiswert preiswerte einfach einfache einfachen intuitiv intuitive leistungsstark leistungsstarke stark
starke starken robust robuste solide flexibel flexible flexibler umfassend umfassende ideal ideale führend
führende führenden effizient effiziente sicher sichere stabil stabile modern moderne vielseitig praktisch gut gute
guten guter gutes besser bessere hervorragend hervorragende exzellent überzeugt überzeugend sauber saubere
übersichtlich übersichtliche komfortabel bequem nahtlos punktet punkten vorteil vorteile großzügig großzügige
transparent transparente pünktlich freundlich reibungslos naheliegende riesig riesige riesigen attraktiv
attraktive attraktiven benutzerfreundlich benutzerfreundliche verbreitet marktführer beliebteste
bekannteste bekanntesten schlank schlanke zuverlässigste ausgereift ausgereifte lohnt lohnenswert überzeugen
größte größten größter
"""
_DE_NEG = """
teuer teure teuren teurer teures kostspielig kostspielige langsam langsame langsamen langsamer begrenzt begrenzte
eingeschränkt eingeschränkte komplex komplexe kompliziert komplizierte umständlich umständliche unübersichtlich
schwierig schwierige schwach schwache schwächer schlecht schlechte schlechter schlechtesten veraltet veraltete
überladen überladene instabil nachteil nachteile problem probleme beschwerden kritik unzuverlässig unzuverlässige
verspätungen verspätet mangelhaft dürftig träge starr steil steile fehlt fehlen fehlende mangel hakelig
unpünktlich unfreundlich undurchsichtig versteckte schwer mängel mängeln gerügt kritisiert bemängelt
bußgeld strafe ärgerlich nervig enttäuschend kritisieren bemängeln verwirrend störanfällig ausverkauft
überteuert lückenhaft ungenau ungenaue
"""
_FR_POS = """
meilleur meilleure meilleurs meilleures fiable fiables recommandé recommandée recommandés recommande recommandable
populaire populaires rapide rapides économique économiques abordable abordables simple simples facile faciles
intuitif intuitive puissant puissante robuste robustes solide solides flexible flexibles complet complète
complets idéal idéale idéaux leader leaders efficace efficaces sûr sûre stable stables moderne modernes
polyvalent polyvalente pratique pratiques bon bonne bons bonnes excellent excellente excellents avantage avantages
généreux généreuse transparent transparente agréable confortable fluide réactif réactive incontournable
séduisant séduit apprécié appréciée ponctuel ponctuelle atout atouts compétitif compétitive compétitifs
compétitives avancé avancée avancés avancées évident évidents évidente évite réputé réputée performant
performante ergonomique citée convainc convaincant convaincante joignable joignables
"""
_FR_NEG = """
cher chère chers chères coûteux coûteuse onéreux onéreuse lent lente lents lentes limité limitée limités
complexe complexes compliqué compliquée confus confuse difficile difficiles pire faible faibles médiocre instable
inconvénient inconvénients problème problèmes plaintes retards retard retardé dépassé dépassée vieillot
vieillotte lourd lourde rigide opaque désavantage manque manquent décevant décevante pénible austère cachés
cachées peu-fiable restreint restreinte datée daté datés datées payants payant excentrées excentrée excentré montent augmenté hausse
critiqué critiquée critiqués critiquées plainte plaignent plaint
"""

#: Label phrases that carry no opinion although they contain a lexicon word. The corpus rules count "best for",
#: "great for", "ideal for" in prose as favourable (an explicit fit), but the same words as a field label followed
#: by a colon ("**Best for:** startups", "Ideal para: autónomos", "Idéal pour : les TPE") give every option a use
#: case — description, like a table column headed "Best for".
_FIT_LABELS: dict[str, tuple[str, ...]] = {
    "en": ("best for", "ideal for", "great for", "good for", "perfect for", "best suited for", "suited for",
           "recommended for"),
    "es": ("ideal para", "mejor para", "perfecto para", "recomendado para"),
    "de": ("ideal für", "geeignet für", "am besten für", "empfohlen für", "gut für", "perfekt für",
           "bestens geeignet für"),
    "fr": ("idéal pour", "parfait pour", "recommandé pour", "le meilleur pour"),
}
_LABELS: dict[str, tuple[tuple[str, ...], ...]] = {
    lang: tuple((*p.split(), ":") for p in _FIT_LABELS[lang]) + bare
    for lang, bare in (
        ("en", (("top", "picks"), ("top", "options"), ("pros", "and", "cons"))),
        ("es", (("pros", "y", "contras"),)),
        ("de", (("vor", "und", "nachteile"),)),
        ("fr", (("avantages", "et", "inconvénients"),)),
    )
}
#: Phrase families (generated, so one rule covers its variants). A standing adverb before a reception word is
#: popularity ("widely recognised", "widely adopted"). "basic" alone is a plan name or plain description ("basic
#: reporting"); after a perception verb or a degree word it is a judgement ("feels basic", "rather basic"). A
#: delay verb is a judgement with or without a degree word between it and its object ("tarda bastante en").
_EN_DEGREE_CUES: tuple[str, ...] = ("feels", "feel", "seems", "seem", "looks", "look", "rather", "quite",
                                    "fairly", "pretty", "too", "very", "somewhat", "a bit", "still")
_ES_SLOW_DEGREES: tuple[str, ...] = ("mucho", "bastante", "demasiado", "un poco", "siempre", "a veces")


def _widely(words: str) -> tuple[str, ...]:
    return tuple(f"{adv} {w}" for adv in ("widely", "broadly") for w in words.split())


def _degree_before(cues: tuple[str, ...], word: str) -> tuple[str, ...]:
    return tuple(f"{c} {word}" for c in cues)


def _degree_after(verbs: tuple[str, ...], degrees: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{v} {d} en" for v in verbs for d in degrees)


#: Multi-word evaluations, matched before single words.
_PHRASES: dict[str, tuple[tuple[tuple[str, ...], int], ...]] = {
    "en": tuple(
        [(tuple(p.split()), 1) for p in ("the default", "most common choice", "popular choice", "easy to use", "well suited", "highly rated", "stands out", "hard to beat",
                                         "tough to beat", "second to none", "my pick", "go with", "start with",
                                         "worth it", "worth the money", "best choice", "best option", "i'd look at",
                                         "i'd run", "i'd go with", "i'd pick", "i'd start with", "i'd use",
                                         "i recommend", "i'd recommend", "you can't go wrong",
                                         "de facto standard", "industry standard", "most widely used",
                                         "widely used", "rate highest", "rated highest", "best known",
                                         "most trusted", *_widely("recognised recognized known adopted trusted"))]
        + [(tuple(p.split()), -1) for p in ("hidden fees", "steep learning curve", "vendor lock-in",
                                            "not recommended", "hard to get", "difficult to obtain", "long wait",
                                            "less mature", "falls short", "learning curve", "price hikes",
                                            "poor support", "slow support", "add up", "adds up", "push the bill up",
                                            "pushes the bill up", "prices rise", "price increase", "price increases",
                                            "sold out", "hit or miss", "fallen behind", "false positives",
                                            "false positive", "the catch", "take time to learn",
                                            "takes time to learn", "takes a while to learn",
                                            "frozen balances", "frozen accounts", "frozen funds", "account freezes",
                                            *_degree_before(_EN_DEGREE_CUES, "basic"))]
    ),
    "es": tuple(
        [(tuple(p.split()), 1) for p in ("la mejor opción", "mejor opción", "fácil de usar", "muy buena",
                                         "estándar de facto", "empieza con", "empezaría con", "elegiría",
                                         "me quedaría con", "quédate con", "apuesta por", "mi recomendación",
                                         "más conocido", "más conocida", "más usado", "más usada",
                                         "más utilizado", "más utilizada", "mayor cobertura")]
        + [(tuple(p.split()), -1) for p in ("curva de aprendizaje", "comisiones ocultas", "deja que desear",
                                            "se queda corto", "se queda corta", "falsos positivos",
                                            "tarda en", "tardan en", "tarda días", "tardan días",
                                            *_degree_after(("tarda", "tardan"), _ES_SLOW_DEGREES))]
    ),
    "de": tuple(
        [(tuple(p.split()), 1) for p in ("die beste wahl", "beste wahl", "einfach zu bedienen", "erste wahl",
                                         "kaum zu schlagen", "schwer zu schlagen", "startet mit", "starte mit",
                                         "starten sie mit", "meine empfehlung", "weit verbreitet",
                                         "am bekanntesten", "de-facto-standard")]
        + [(tuple(p.split()), -1) for p in ("lässt zu wünschen übrig", "versteckte kosten", "steile lernkurve",
                                            "falsch-positive", "fehlalarme", "dauert lange",
                                            "lässt auf sich warten",
                                            *(f"dauert {d} lange" for d in ("sehr", "ziemlich", "oft", "meist",
                                                                            "recht", "zu")))]
    ),
    "fr": tuple(
        [(tuple(p.split()), 1) for p in ("le meilleur choix", "meilleur choix", "facile à utiliser",
                                         "rapport qualité-prix", "la plus utilisée", "le plus utilisé",
                                         "commencez par", "je recommande", "optez pour", "je choisirais",
                                         "le plus connu", "la plus connue", "référence du marché",
                                         "la référence", "le choix le plus sûr", "vaut le coup")]
        + [(tuple(p.split()), -1) for p in ("courbe d'apprentissage", "frais cachés", "laisse à désirer",
                                            "faux positifs", "met du temps", "met plusieurs jours",
                                            "met des jours", "met beaucoup de temps", "met trop de temps",
                                            "prend du temps", "prend beaucoup de temps", "prend trop de temps")]
    ),
}
_NEGATORS: dict[str, frozenset[str]] = {
    "en": frozenset("not no never without hardly barely isn't aren't wasn't weren't doesn't don't didn't cannot "
                    "can't won't nor neither less fewer lacks lack lacking rarely seldom".split()),
    "es": frozenset("no nunca sin ni tampoco jamás menos raramente".split()),
    "de": frozenset("nicht kein keine keinen keiner keinem nie niemals ohne kaum weniger selten".split()),
    "fr": frozenset("pas jamais sans aucun aucune guère moins rien rarement".split()),
}
_ALL_NEGATORS: frozenset[str] = frozenset().union(*_NEGATORS.values())
#: Negation scope: a negator flips the evaluations up to this many words after it (Spanish, German and French
#: put more words between the negator and the adjective: "no es la opción más barata", "n'est pas la moins chère").
_NEG_SCOPE: dict[str, int] = {"en": 4, "es": 5, "de": 5, "fr": 5}
#: Words that end a negation's scope ("no hidden fees and fast support": "fast" is not negated).
_CONJUNCTIONS: frozenset[str] = frozenset("and or but y o e pero sino et ou mais und oder aber sondern".split())
#: A negator followed by one of these negates nothing ("not only", "no solo", "nicht nur", "pas seulement").
_NOT_ONLY: frozenset[str] = frozenset("only just merely solo sólo solamente únicamente nur bloß seulement".split())
_FR_NE: frozenset[str] = frozenset({"ne", "n'"})
#: Nouns that a product of the domain *handles* (bug trackers: bugs; security: threats; payments: fraud …).
_DOMAIN_NOUNS: frozenset[str] = frozenset(
    """bugs bug issues issue incidents incident threats threat attacks attack ransomware breaches breach
    vulnerabilities vulnerability fraud chargebacks chargeback disputes dispute errors error alerts alert outages
    outage risks risk problems problem malware phishing exploits failures failure crash crashes
    errores error fallos fallo fraude amenazas ataques incidencias incidentes caídas caída problemas problema
    vulnerabilidades vulnerabilidad riesgos riesgo contracargos
    fehler bugs angriffe bedrohungen betrug ausfälle ausfall störungen vorfälle probleme problem abstürze absturz
    schwachstellen sicherheitslücken risiken risiko rückbuchungen
    erreurs erreur bogues menaces attaques fraude pannes panne incidents incident problèmes problème plantages
    plantage vulnérabilités vulnérabilité failles faille risques risque rançongiciels rançongiciel""".split()
)
#: Words before a domain noun that say the product *handles* it, whatever else is said ("scans for known
#: vulnerabilities", "groups errors and crashes", "detecta amenazas", "erfasst Fehler", "détecte les menaces").
_HANDLES: frozenset[str] = frozenset(
    """for against detect detects detecting detection track tracks tracking catch catches catching block blocks
    blocking prevent prevents preventing monitor monitors monitoring manage manages managing triage triages
    triaging group groups grouping scan scans scanning flag flags flagging route routes routing escalate
    escalates investigate investigates resolve resolves handle handles handling
    contra detecta detectar detección gestiona gestionar gestión bloquea bloquear rastrea seguimiento
    gegen erkennt erkennen erkennung erfasst erfassen verwaltet blockiert überwacht überwachen
    contre détecte détecter détection gère gérer bloque bloquer suivi""".split()
)
#: Things a monitoring product measures: a negative word right before one describes the object, not the product
#: ("slow queries", "langsame Transaktionen", "consultas lentas" is read the other way round and left alone).
_MEASURED: frozenset[str] = _DOMAIN_NOUNS | frozenset(
    """queries query transactions transaction requests request endpoints endpoint traces trace spans pages
    consultas transacciones peticiones páginas transaktionen abfragen anfragen seiten endpunkte
    requêtes transactions pages""".split()
)
#: A limitation word followed by one of these states a scope or a quota, not a judgement ("limited to 35
#: sessions a day", "capped at $1,250", "limitado a", "limitée aux absences", "begrenzt auf 3 Nutzer").
_LIMIT_WORDS: frozenset[str] = frozenset(
    """limited capped restricted limitado limitada limitados limitadas restringido restringida limité limitée
    limités limitées plafonné plafonnée plafonnés begrenzt beschränkt limitiert""".split()
)
_LIMIT_PREPS: frozenset[str] = frozenset("to at a al à au aux auf".split())
#: A negative noun after one of these is a circumstance, not something said of the org ("during shortages").
_CIRCUMSTANCE: frozenset[str] = frozenset("during amid amidst durante während pendant lors".split())
#: Words before a domain noun that say the org suffers it ("had a major outage", "known bugs"), per language
#: (French "a" — "has" — is the English article).
_SUFFER: dict[str, frozenset[str]] = {
    "en": frozenset("""had has have suffered suffers suffer frequent frequently occasional recurring major known
        reported several many repeated notable serious persistent ongoing its their own""".split()),
    "es": frozenset("tuvo tiene sufre sufrió frecuentes frecuente graves varios varias sus".split()),
    "de": frozenset("hatte hat häufige häufig bekannte schwere mehrere wiederholte seine ihre".split()),
    "fr": frozenset("a eu subi fréquentes fréquent graves plusieurs ses leurs".split()),
}
#: "than" in each language: the word after a comparative.
_THAN: dict[str, frozenset[str]] = {
    "en": frozenset({"than"}), "es": frozenset({"que"}), "de": frozenset({"als"}), "fr": frozenset({"que", "qu'"}),
}
_LESS: dict[str, frozenset[str]] = {
    "en": frozenset({"less", "fewer"}), "es": frozenset({"menos"}), "de": frozenset({"weniger"}),
    "fr": frozenset({"moins"}),
}
#: Words that make "que"/"als" the "than" of a comparison (Spanish and French "que" is also "that", German "als"
#: also "as"); English "than" needs none. German comparatives are also recognised by their ending.
_COMPARATIVE_MARKERS: dict[str, frozenset[str]] = {
    "es": frozenset("más menos mejor mejores peor peores mayor mayores menor menores".split()),
    "de": frozenset("mehr weniger besser schlechter".split()),
    "fr": frozenset("plus moins meilleur meilleure meilleurs meilleures mieux pire pires".split()),
}
_DE_COMPARATIVE_RE = re.compile(r"er(?:e|en|es|em)?$")
#: French and Spanish comparisons written "inférieur à" / "superior a": the adjective → +1 (higher, better) or
#: −1 (lower), and the word that plays "than". Said of a price the sign turns round ("des prix inférieurs à ceux
#: du TGV" is favourable to the subject).
_RANK_ADJ: dict[str, tuple[dict[str, int], frozenset[str]]] = {
    "fr": (
        {f"{stem}{end}": sign for stem, sign in (("inférieur", -1), ("supérieur", 1)) for end in ("", "e", "s", "es")},
        frozenset({"à", "au", "aux"}),
    ),
    "es": (
        {f"{stem}{end}": sign for stem, sign in (("inferior", -1), ("superior", 1)) for end in ("", "es")},
        frozenset({"a", "al"}),
    ),
}
#: Comparisons written without "than": "less mature compared to X", "im Vergleich zu X weniger ausgereift",
#: "plus cher par rapport à X". The evaluative word is looked for before the marker, then after its object.
_COMPARED: dict[str, tuple[tuple[str, ...], ...]] = {
    "en": (("compared", "to"), ("compared", "with"), ("relative", "to")),
    "es": (("en", "comparación", "con"), ("comparado", "con"), ("comparada", "con"), ("frente", "a")),
    "de": (("im", "vergleich", "zu"), ("im", "vergleich", "mit"), ("verglichen", "mit"), ("gegenüber",)),
    "fr": (("par", "rapport", "à"), ("par", "rapport", "au"), ("comparé", "à"), ("comparée", "à"),
           ("comparé", "au")),
}
#: Verbs that, right after a clause-opening "compared to X" (X masked out), start the main clause — German puts the
#: verb second: "Im Vergleich zu Personio ist HRworks günstiger".
_COPULAS: frozenset[str] = frozenset(
    """is are was were seems looks feels ist sind war waren wirkt wirken scheint bleibt es son está resulta parece
    est sont semble reste paraît""".split()
)
#: Words before "than" that make it no comparison of two options ("rather than", "other than").
_NOT_COMPARISON: frozenset[str] = frozenset({"rather", "other"})
#: Words that are good or bad only when said of a price ("higher fees", "lower than Stripe's pricing").
_PRICE_UP: frozenset[str] = frozenset(
    "higher more jump jumps jumped soar soars höher höhere höheren hohen hohe teurer élevé élevés élevée élevées "
    "alto altos alta altas mayor mayores".split()
)
_PRICE_DOWN: frozenset[str] = frozenset("lower less niedriger niedrigere bajo bajos baja bajas bas basse".split())
_PRICE_WORDS: frozenset[str] = frozenset(
    """fee fees price prices pricing cost costs rate rates commission commissions markup subscription tarif tarifs
    prix frais coût coûts commission commissions precio precios tarifa tarifas comisión comisiones coste costes
    cuota cuotas preis preise gebühr gebühren kosten provision provisionen""".split()
)
#: VADER words that describe rather than evaluate in vendor answers (plans, features), left out.
_VADER_SKIP = frozenset(
    "free freedom security secure save saves win winning support supported care share honestly benefit benefits "
    "increase increases".split()
)
_WORD_RE = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*|\d+|[,:;()]", re.UNICODE)
#: :data:`_WORD_RE` on ASCII text (there ``[^\W\d_]`` is ``[A-Za-z]``, ``\d`` is ``[0-9]`` and "’" cannot occur):
#: the same matches, scanned ~1.5x faster than the Unicode classes.
_WORD_ASCII_RE = re.compile(r"[A-Za-z]+(?:[-'][A-Za-z]+)*|[0-9]+|[,:;()]")
#: Tokens of :func:`words` that end a negation scope or a comparative search (punctuation inside a clause).
_BOUNDARY: frozenset[str] = frozenset(",:;()")
_ENDINGS: dict[str, tuple[str, ...]] = {
    "en": ("s",),
    "es": ("s", "es", "a", "as", "os", "o"),
    "de": ("e", "en", "er", "es", "em", "n", "ste", "sten", "ster", "stes", "stem"),
    "fr": ("s", "e", "es", "x"),
}


#: Words that are evaluations only after a degree word: Spanish "puntual" and French "ponctuel" are also
#: "one-off" ("ofertas puntuales", "des retards ponctuels"); "más puntual que", "très ponctuel" are evaluations.
_DEGREE_ONLY: frozenset[str] = frozenset(
    "puntual puntuales ponctuel ponctuelle ponctuels ponctuelles".split()
)
_DEGREE: frozenset[str] = frozenset("más menos muy tan poco bastante plus moins très peu assez si".split())


def _set(text: str) -> frozenset[str]:
    return frozenset(text.split())


@dataclass(frozen=True)
class _Lexicon:
    pos: frozenset[str]
    neg: frozenset[str]


@lru_cache(maxsize=1)
def _vader() -> dict[str, float]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return {
        w: v
        for w, v in SentimentIntensityAnalyzer().lexicon.items()
        if abs(v) >= 2.0 and w.isalpha() and w not in _VADER_SKIP and w not in _DOMAIN_NOUNS
    }


@lru_cache(maxsize=8)
def lexicon(lang: str) -> _Lexicon:
    """The (positive, negative) word sets of ``lang`` (English when unknown)."""
    if lang == "es":
        return _Lexicon(_set(_ES_POS), _set(_ES_NEG))
    if lang == "de":
        return _Lexicon(_set(_DE_POS), _set(_DE_NEG))
    if lang == "fr":
        return _Lexicon(_set(_FR_POS), _set(_FR_NEG))
    vader = _vader()
    pos = _set(_EN_POS) | {w for w, v in vader.items() if v > 0}
    neg = _set(_EN_NEG) | {w for w, v in vader.items() if v < 0}
    return _Lexicon(pos - neg.intersection(_set(_EN_POS)), neg - _set(_EN_POS))


@lru_cache(maxsize=1)
def _identifier() -> Any:  # py3langid's LanguageIdentifier (the package has no type hints)
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=False)
    ident.set_languages(list(LANGUAGES))
    return ident


#: Function words of each language, for the fast path of :func:`detect_language`.
_FUNCTION_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the and is are of to for with that this it on in you your or be can".split()),
    "es": frozenset("el la los las de del y que en es por para con una un su se más".split()),
    "de": frozenset("der die das und ist nicht mit für ein eine auf den dem zu von sich auch".split()),
    "fr": frozenset("le la les et est des du une un pour dans que qui pas avec sur plus au".split()),
}


def detect_language(text: str) -> str:
    """``en``, ``es``, ``de`` or ``fr`` for a sample of prose ("en" for an empty sample). A sample whose
    function words are clearly of one language (at least 4, and 3× the next language's) is decided without the
    model — most answers, at a hundredth of its cost; py3langid decides the rest."""
    sample = " ".join(text[: LANGUAGE_SAMPLE_CHARS * 2].split())[:LANGUAGE_SAMPLE_CHARS]
    if len(sample) < 3:
        return "en"
    ws = set(sample.lower().split())
    counts = sorted(((len(ws & fw), lang) for lang, fw in _FUNCTION_WORDS.items()), reverse=True)
    if counts[0][0] >= 4 and counts[0][0] >= 3 * counts[1][0]:
        return counts[0][1]
    return str(_identifier().classify(sample)[0])


def warm_up() -> None:
    """Load the language model and the lexicons now (the model takes about a second)."""
    _identifier()
    for lang in LANGUAGES:
        lexicon(lang)


def _capitalised(w: str) -> bool:
    return w[0].isupper() and not w.isupper()


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` (apostrophes unified; French elisions split: "n'est" → "n'", "est"), with
    ``,`` ``:`` ``;`` ``(`` ``)`` kept as tokens of their own (they bound a negation's scope). Runs of two or more
    capitalised words after the first word are names and left out ("de Buenos Aires", "at Best Western"), so
    their words are no evaluations; the first word of the text is kept (a sentence or cell starts "Buena …").
    Acronyms (two or more capitals: "AML", "KYC", "SSO") are category words and left out too — VADER reads "aml"
    as chat slang — except negators written in capitals ("do NOT use")."""
    if text.isascii():  # NFC and the apostrophe change nothing in ASCII text
        found = _WORD_ASCII_RE.findall(text)
    else:
        found = _WORD_RE.findall(unicodedata.normalize("NFC", text).replace("’", "'"))
    out: list[str] = []
    for k, w in enumerate(found):
        if len(w) > 1 and w.isupper() and w.isalpha() and w.lower() not in _ALL_NEGATORS:
            continue
        if (
            k > 0
            and w[0].isupper()
            and not w.isupper()
            and ((k > 1 and _capitalised(found[k - 1])) or (k + 1 < len(found) and _capitalised(found[k + 1])))
        ):
            continue
        w = w.lower()
        if "'" in w and w[:2] in ("n'", "l'", "d'", "j'", "c'", "s'", "m'", "t'", "qu"):
            head, _, tail = w.partition("'")
            out.extend((head + "'", tail) if tail else (head + "'",))
        else:
            out.append(w)
    return out


#: First words of a sentence or clause that refer back to the subject before it ("Its pricing …", "Su soporte …",
#: "Sein Support …", "Il est …"): such a sentence still talks about that subject, whatever else it names.
_BACK_REFERENCES: frozenset[str] = frozenset(
    """it its it's they their su sus es sein seine seinen seiner seinem er ihr ihre ihren il elle son sa ses leur
    leurs""".split()
)


#: Table header cells and row labels that make every cell under them an evaluation of the row's (or column's)
#: brand: "Pros" / "Cons" columns, "Stärken" / "Schwächen", "Points forts" / "Points faibles" …
_COLUMN_LABELS: dict[str, int] = {
    **{k: 1 for k in (
        "pros", "strengths", "strength", "advantages", "upsides", "what's good", "ventajas", "puntos fuertes",
        "fortalezas", "pros principales", "vorteile", "stärken", "pluspunkte", "points forts", "avantages",
        "atouts", "forces")},
    **{k: -1 for k in (
        "cons", "weaknesses", "weakness", "drawbacks", "downsides", "limitations", "watch out for",
        "desventajas", "inconvenientes", "puntos débiles", "debilidades", "contras", "nachteile", "schwächen",
        "minuspunkte", "einschränkungen", "points faibles", "inconvénients", "faiblesses", "limites")},
}


def column_label(text: str) -> int:
    """+1 / −1 when ``text`` (a table header cell or row label, plain text) is a pros / cons label (so each
    non-empty cell under it is favourable / unfavourable for its brand), else 0."""
    key = " ".join(text.lower().replace("’", "'").strip(" :*_-–—").split())
    return _COLUMN_LABELS.get(key, 0)


def is_domain_noun(name: str) -> bool:
    """Whether ``name`` (a brand's spelling in the answer) is a single domain noun ("Ransomware", "Bugs",
    "Incidents", "Fehler"): such a "brand" is the thing a product handles, never the subject of an evaluation."""
    key = name.strip().lower()
    return " " not in key and key in _DOMAIN_NOUNS


def refers_back(text: str) -> bool:
    """Whether ``text`` (a sentence or clause, plain text) starts with a pronoun or possessive that refers back to
    the subject of the text before it (:data:`_BACK_REFERENCES`; "Its per-user pricing gets expensive …")."""
    m = _WORD_RE.search(text[:40])
    return m is not None and m.group().lower().replace("’", "'") in _BACK_REFERENCES


#: English words before a comparative in "-er" ("is stronger", "feels clunkier", "much smoother"): without one (or
#: "than" after it) an "-er" word is more often an agent noun ("banner", "skipper") than a comparative.
_EN_BEFORE_COMPARATIVE: frozenset[str] = frozenset(
    """is are was were be been being it's feel feels felt look looks seem seems get gets getting got become
    becomes much far even bit slightly noticeably considerably significantly somewhat way lot and or""".split()
)


def _en_degree(word: str, lex: _Lexicon, comparative_context: bool) -> int:
    """The sign of an English comparative or superlative of a lexicon adjective ("stronger", "clunkier",
    "smoothest", "simplest", "easiest", "steeper"); "-er" forms only in a comparative context."""
    for end in ("est", "er"):
        if not word.endswith(end) or len(word) <= len(end) + 3 or (end == "er" and not comparative_context):
            continue
        stem = word[: -len(end)]
        for cand in (stem, stem + "e", stem[:-1] + "y" if stem.endswith("i") else "",
                     stem[:-1] if stem[-1] == stem[-2] else ""):
            if cand in lex.pos:
                return 1
            if cand in lex.neg:
                return -1
    return 0


def _sign(word: str, lang: str, lex: _Lexicon) -> int:
    """+1 / −1 / 0 for ``word`` in the lexicon ``lex`` of ``lang``, also after dropping a usual ending; memoised
    per language (:func:`_stem_sign`) — most words of an answer are in no lexicon and recur."""
    if word in lex.pos:
        return 1
    if word in lex.neg:
        return -1
    return _stem_sign(word, lang)


@lru_cache(maxsize=1 << 15)
def _stem_sign(word: str, lang: str) -> int:
    lex = lexicon(lang)
    if word in lex.pos:
        return 1
    if word in lex.neg:
        return -1
    for end in _ENDINGS.get(lang, ()):
        if len(word) > len(end) + 3 and word.endswith(end):
            stem = word[: -len(end)]
            if stem in lex.pos:
                return 1
            if stem in lex.neg:
                return -1
    return 0


@dataclass(frozen=True)
class Polarity:
    """Hits in one clause: ``pos``/``neg`` counts of plain evaluations; ``comparison``: the sign of a comparative
    followed by "than"/"que"/"als" (0 = no comparison) and ``than_at``: the index (in :func:`words`) of that word
    (-1 = none; set for an English "than" even when its comparative is not an evaluation: what follows it is the
    object of a comparison, not a subject)."""

    pos: int = 0
    neg: int = 0
    comparison: int = 0
    than_at: int = -1


@lru_cache(maxsize=8)
def _multi(lang: str) -> dict[str, tuple[tuple[tuple[str, ...], int | None], ...]]:
    """First word → (phrase, sign) for the labels (sign None) and phrases of ``lang``, longest first."""
    index: dict[str, list[tuple[tuple[str, ...], int | None]]] = {}
    for label in _LABELS.get(lang, ()):
        index.setdefault(label[0], []).append((label, None))
    for phrase, sign in _PHRASES.get(lang, ()):
        index.setdefault(phrase[0], []).append((phrase, sign))
    return {k: tuple(sorted(v, key=lambda p: -len(p[0]))) for k, v in index.items()}


#: German price compounds ("Mahngebühren", "Zusatzkosten", "Lizenzpreise").
_DE_PRICE_TAIL_RE = re.compile(r"(?:gebühr|gebühren|kosten|preis|preise|tarif|tarife)$")


def _negations(ws: list[str], i: int, lang: str, negators: frozenset[str]) -> int:
    """How many negators govern the word at ``i``: those up to :data:`_NEG_SCOPE` words before it, not across a
    boundary token or a conjunction; "not only" is none; French "ne … plus" is one ("n'est plus fiable"). An even
    count cancels out ("n'est pas la moins chère": "pas" and "moins" — not the least expensive — is unfavourable)."""
    count = 0
    for k in range(i - 1, max(-1, i - 1 - _NEG_SCOPE.get(lang, 4)), -1):
        w = ws[k]
        if w in _BOUNDARY or w in _CONJUNCTIONS:
            break
        if w in negators or w.endswith("n't"):
            if k + 1 < len(ws) and ws[k + 1] in _NOT_ONLY:
                continue
            count += 1
        elif lang == "fr" and w == "plus" and not _FR_NE.isdisjoint(ws[max(0, k - 2) : k]):
            if negators.isdisjoint(ws[max(0, k - 2) : k]):
                count += 1
    return count


def _is_price_word(w: str, lang: str) -> bool:
    return w in _PRICE_WORDS or (lang == "de" and _DE_PRICE_TAIL_RE.search(w) is not None)


def _priced_segments(ws: list[str], lang: str) -> list[bool]:
    """Per word: whether the stretch of ``ws`` between boundary tokens that holds it names a price — so "higher"
    and "lower" are judged as prices only there ("Higher volume, lower effective fees": only "lower" is)."""
    out = [False] * len(ws)
    if _PRICE_WORDS.isdisjoint(ws) and (lang != "de" or not any(_DE_PRICE_TAIL_RE.search(w) for w in ws)):
        return out
    start = 0
    for k in range(len(ws) + 1):
        if k == len(ws) or ws[k] in _BOUNDARY:
            if any(_is_price_word(w, lang) for w in ws[start:k]):
                out[start:k] = [True] * (k - start)
            start = k + 1
    return out


def _comparative(ws: list[str], i: int, lang: str, sign: Any) -> int:
    """The sign of the comparative that ``ws[i]`` ("than", "que", "als") closes, 0 when it closes none: the
    nearest evaluative word up to six words before it (not across a boundary token), flipped after "less" /
    "menos" / "moins" / "weniger"; in Spanish and French a comparison marker (más, menos, plus, moins, mejor …)
    must come with it, in German a comparative form ("günstiger", "mehr", "weniger"); "rather than", "other
    than" and "than" before a number ("more than 10,000 users") compare nothing."""
    if ws[i - 1] in _NOT_COMPARISON or (i + 1 < len(ws) and ws[i + 1].isdigit()):
        return 0
    markers = _COMPARATIVE_MARKERS.get(lang, frozenset())
    less = _LESS.get(lang, frozenset())
    for j in range(i - 1, max(-1, i - 7), -1):
        if ws[j] in _BOUNDARY:
            return 0
        s = sign(ws[j], j)
        if not s:
            continue
        before = ws[max(0, j - 2) : j]
        if lang in ("es", "fr") and ws[j] not in markers and markers.isdisjoint(before):
            return 0
        if lang == "de" and not (_DE_COMPARATIVE_RE.search(ws[j]) or not markers.isdisjoint(before)):
            return 0
        return -s if not less.isdisjoint(before) else s
    return 0


def _compared(ws: list[str], i: int, length: int, lang: str, sign: Any) -> int:
    """The sign of a comparison written with a marker of :data:`_COMPARED` at ``ws[i : i + length]``, 0 when it
    is none: the nearest evaluative word up to six words before the marker, else after it (flipped after "less" /
    "weniger" …; the object's name is masked out of ``ws`` by the caller). A marker that opens the clause and whose
    object is followed by a comma ("Compared to X, Org is cheap") introduces the subject: no comparison, the
    clause's words are read plainly."""
    end = i + length
    opens = i == 0 or (i == 1 and ws[0] in _CONJUNCTIONS)
    comma_after = end < len(ws) and ws[end] in _BOUNDARY
    if opens and (comma_after or end >= len(ws) or ws[end] in _COPULAS):
        return 0  # "Compared to X, Org is …", "Im Vergleich zu X ist Org …": the marker introduces the subject
    less = _LESS.get(lang, frozenset())
    spans = [] if opens else [range(i - 1, max(-1, i - 7), -1)]
    if not comma_after:
        spans.append(range(end, min(len(ws), end + 6)))
    for span in spans:
        for j in span:
            if ws[j] in _BOUNDARY:
                break
            s = sign(ws[j], j)
            if s:
                return -s if not less.isdisjoint(ws[max(0, j - 2) : j]) else s
    return 0


def _post_negated(ws: list[str], i: int, lang: str) -> bool:
    """German and French negations that follow the verb: "überzeugt nicht", "lohnt sich nicht" (not before
    another evaluative word: "ist nicht teuer" is negated from the front); "ne convainc pas", "n'impressionne
    pas" ("ne" before, "pas" / "jamais" / "plus" after)."""
    after = []
    for w in ws[i + 1 : i + 3]:
        if w in _BOUNDARY or w in _CONJUNCTIONS:
            break
        after.append(w)
    if lang == "de" and "nicht" in after:
        k = i + 1 + after.index("nicht") + 1
        return k >= len(ws) or ws[k] in _BOUNDARY or not _sign(ws[k], lang, lexicon(lang))
    if lang == "fr" and not _FR_NE.isdisjoint(ws[max(0, i - 2) : i]):
        return not {"pas", "jamais", "plus"}.isdisjoint(after)
    return False


@lru_cache(maxsize=8)
def _polarity_tables(lang: str) -> tuple[Any, ...]:
    """The per-language tables :func:`polarity` reads, looked up once per language: negators, "suffer" words,
    phrases (:func:`_multi`), "than" words, rank adjectives (or None), comparison markers and their first words."""
    compared = _COMPARED.get(lang, ())
    return (
        _NEGATORS.get(lang, _NEGATORS["en"]),
        _SUFFER.get(lang, _SUFFER["en"]),
        _multi(lang),
        _THAN.get(lang, frozenset()),
        _RANK_ADJ.get(lang),
        compared,
        frozenset(m[0] for m in compared),
    )


def polarity(ws: list[str], lang: str) -> Polarity:
    """Evaluations in the words ``ws`` of one clause (see the module docstring)."""
    lex = lexicon(lang)
    priced = _priced_segments(ws, lang)

    def sign(word: str, at: int = -1) -> int:
        if word in _DEGREE_ONLY and (at < 1 or ws[at - 1] not in _DEGREE):
            return 0
        if at >= 0 and priced[at]:
            if word in _PRICE_UP:
                return -1
            if word in _PRICE_DOWN:
                return 1
        hit = _sign(word, lang, lex)
        if not hit and lang == "en" and at >= 0 and word.endswith(("er", "est")):
            context = (at + 1 < len(ws) and ws[at + 1] == "than") or (
                at > 0 and ws[at - 1] in _EN_BEFORE_COMPARATIVE
            )
            hit = _en_degree(word, lex, context)
        return hit

    negators, suffer, multi, than, rank_adj, compared, compared_first = _polarity_tables(lang)
    pos = neg = 0
    comparison, than_at = 0, -1
    n = len(ws)
    i = 0
    while i < n:
        w = ws[i]
        if w in than and comparison == 0 and i > 0:
            comparison = _comparative(ws, i, lang, sign)
            if comparison:
                than_at = i
            elif than_at < 0 and lang == "en" and ws[i - 1] not in _NOT_COMPARISON:
                than_at = i  # "More serious than X": X is an object even when the comparative is unknown
            i += 1
            continue
        if comparison == 0 and w in compared_first:
            marker = next((m for m in compared if tuple(ws[i : i + len(m)]) == m), None)
            if marker is not None:
                comparison = _compared(ws, i, len(marker), lang, sign)
                if comparison:
                    than_at = i
                    i += len(marker)
                    continue
        if rank_adj and w in rank_adj[0] and comparison == 0 and i + 1 < n and ws[i + 1] in rank_adj[1]:
            comparison = -rank_adj[0][w] if priced[i] else rank_adj[0][w]
            than_at = i + 1
            i += 2
            continue
        hit = 0
        length = 1
        matched = False
        for phrase, phrase_sign in multi.get(w, ()):
            if tuple(ws[i : i + len(phrase)]) == phrase:
                hit, length, matched = phrase_sign or 0, len(phrase), True
                break
        if not matched:
            if w in _DOMAIN_NOUNS:
                before = ws[max(0, i - 4) : i]
                handled = not _HANDLES.isdisjoint(before)
                hit = -1 if not handled and not suffer.isdisjoint(ws[max(0, i - 3) : i]) else 0
            elif w in _LIMIT_WORDS and (
                (i + 1 < n and ws[i + 1] in _LIMIT_PREPS) or (lang == "de" and "auf" in ws[max(0, i - 4) : i])
            ):
                hit = 0  # a quota or a scope: "limited to 35 sessions a day", "auf drei Nutzer begrenzt"
            else:
                hit = sign(w, i)
                if hit < 0 and (
                    (i + 1 < n and ws[i + 1] in _MEASURED) or not _CIRCUMSTANCE.isdisjoint(ws[max(0, i - 2) : i])
                ):
                    hit = 0  # "slow queries" (what is measured), "during shortages" (a circumstance)
        if hit:
            if (_negations(ws, i, lang, negators) + (lang in ("de", "fr") and _post_negated(ws, i, lang))) % 2:
                hit = -hit
            if hit > 0:
                pos += 1
            else:
                neg += 1
        i += length
    if comparison:
        # The comparative itself was counted as a plain hit too: the caller credits it by direction instead.
        if comparison > 0 and pos:
            pos -= 1
        elif comparison < 0 and neg:
            neg -= 1
    return Polarity(pos, neg, comparison, than_at)


def verdict(pos: int, neg: int) -> str:
    """POSITIVE / NEGATIVE / MIXED / NEUTRAL from favourable and unfavourable hits (both → MIXED)."""
    if pos and neg:
        return "MIXED"
    if pos:
        return "POSITIVE"
    if neg:
        return "NEGATIVE"
    return "NEUTRAL"
