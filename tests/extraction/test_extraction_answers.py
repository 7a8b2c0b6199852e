"""A table of realistic assistant answers (Markdown as ChatGPT, Perplexity, Claude and the API models write it)
through the deterministic extractor: org evaluation, competitors and citations."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from services.extraction.core import Analysis, Org, analyze

TOGETHER = Org("Together AI", "together.ai", ("Together",))
LAMBDA = Org("Lambda", "lambda.ai", ("Lambda Labs",))
RUNWAY = Org("Runway", "runwayml.com", ("Runway ML", "RunwayML"))


@dataclass
class Case:
    id: str
    answer: str
    org: Org
    mentioned: bool
    rank: int = 0
    competitors: list[str] | None = None  # exact, in rank order
    not_competitors: set[str] = field(default_factory=set)
    mention_count: int | None = None
    sentiment: str | None = None
    evidence: str | None = None  # substring
    owned: int | None = None
    known: tuple[str, ...] = ()
    provider: tuple[tuple[str, str], ...] = ()


CASES = [
    Case(
        "numbered-bold-list",
        """Here are the leading GPU cloud providers for training large models in 2025:

1. **CoreWeave** – A specialized GPU cloud built on Kubernetes. Best for very large clusters.
2. **Lambda** – On-demand H100 and B200 instances with simple pricing. Lambda Cloud is popular with researchers.
3. **Together AI** – Serverless inference and fine-tuning for open models; reliable and cost-effective.
4. **Nebius** – European AI cloud with competitive H200 pricing.
5. **Crusoe** – Clean-energy data centers for AI workloads.

**Bottom line:** for frontier-scale training, CoreWeave and Lambda lead; for inference, Together AI is hard to beat.
""",
        TOGETHER,
        mentioned=True,
        rank=3,
        competitors=["CoreWeave", "Lambda", "Nebius", "Crusoe"],
        not_competitors={"Bottom line", "European AI"},
        mention_count=2,
        sentiment="POSITIVE",
        evidence="Together AI – Serverless inference and fine-tuning",
    ),
    Case(
        "headings-per-provider-with-feature-bullets",
        """## Top GPU Cloud Providers for Startups

### 1. Lambda Labs
Lambda offers on-demand NVIDIA H100s starting at $2.49/hr.
- **Pricing**: transparent, per-hour billing
- **Best for**: research teams
- **Cons**: capacity can be limited during peaks

### 2. RunPod
- **Pricing**: from $1.99/hr for community cloud
- **Best for**: hobbyists and small teams

### 3. Vast.ai
A marketplace for renting consumer and datacenter GPUs.

### Conclusion
Lambda Cloud is a solid default; RunPod and Vast.ai are cheaper.
""",
        LAMBDA,
        mentioned=True,
        rank=1,
        competitors=["RunPod", "Vast.ai"],
        not_competitors={
            "Pricing",
            "Best for",
            "Cons",
            "Conclusion",
            "Top GPU Cloud Providers for Startups",
            "NVIDIA",
        },
        mention_count=3,
        sentiment="MIXED",  # transparent, solid vs limited
        evidence="Lambda Labs: Lambda offers on-demand NVIDIA H100s",
    ),
    Case(
        "markdown-table-first-column",
        """| Provider | H100 price (per GPU-hour) | Notes |
|---|---|---|
| **CoreWeave** | ~$4.25 | Enterprise contracts |
| Lambda | $2.99 | On-demand, simple |
| RunPod | $2.39 | Community + secure cloud |
| Together AI | $3.36 | Inference-focused |

Prices change frequently; check each provider's site.
""",
        TOGETHER,
        mentioned=True,
        rank=4,
        competitors=["CoreWeave", "Lambda", "RunPod"],
        not_competitors={"Provider", "H100 price"},
        evidence="Together AI | $3.36 | Inference-focused",
    ),
    Case(
        "comparison-table-brands-as-columns",
        """| Feature | CoreWeave | Lambda | Together AI |
|---|---|---|---|
| H100 on-demand | Yes | Yes | No |
| Serverless inference | No | No | Yes, fast and reliable |
""",
        TOGETHER,
        mentioned=True,
        rank=3,
        competitors=["CoreWeave", "Lambda"],
        not_competitors={"Feature", "H100 on-demand", "Serverless inference"},
        sentiment="POSITIVE",
    ),
    Case(
        "plain-prose-with-known-competitors",
        "For fine-tuning open models, many teams use Together AI, Modal or Replicate. Together AI is known for fast "
        "inference, while Modal offers a flexible serverless platform. Replicate makes it easy to deploy models with a "
        "simple API, but it can get expensive at scale.\n",
        TOGETHER,
        mentioned=True,
        rank=1,
        competitors=["Modal", "Replicate"],
        mention_count=2,
        sentiment="POSITIVE",
        known=("Modal", "Replicate"),
    ),
    Case(
        "plain-prose-open-set-enumeration",
        "Based on public information, options include CoreWeave, Lambda, Together AI.\n",
        TOGETHER,
        mentioned=True,
        rank=3,
        competitors=["CoreWeave", "Lambda"],
        sentiment="NEUTRAL",
    ),
    Case(
        "prose-cue-phrases",
        "**Replicate** is a strong option: a huge catalogue of community models. Another good choice is Groq, "
        "offering fast token generation. Teams also consider Baseten (dedicated deployments). Together AI stands out "
        "for its inference engine.\n",
        TOGETHER,
        mentioned=True,
        rank=4,
        competitors=["Replicate", "Groq", "Baseten"],
    ),
    Case(
        "ordinal-labels",
        """### Option 1: CoreWeave
Big clusters for frontier training.

### Option 2: Together AI
Fast, affordable inference.

- **Option 3:** Nebius – EU regions.
- **Pick #4 – Crusoe** – clean energy.
""",
        TOGETHER,
        mentioned=True,
        rank=2,
        competitors=["CoreWeave", "Nebius", "Crusoe"],
        not_competitors={"Option 1", "Option 3", "Pick #4"},
        sentiment="POSITIVE",
        evidence="Together AI: Fast, affordable inference.",
    ),
    Case(
        "org-absent",
        "1. **CoreWeave** – Large clusters.\n2. **Lambda** – Simple pricing.\n3. **Nebius** – EU regions.\n",
        TOGETHER,
        mentioned=False,
        competitors=["CoreWeave", "Lambda", "Nebius"],
        owned=0,
    ),
    Case(
        "org-named-only-in-a-citation",
        "The fastest serverless options are Groq and Fireworks AI "
        "([together.ai](https://www.together.ai/blog/inference-benchmarks?utm_source=openai)). "
        "See also https://docs.together.ai/docs/serverless-models for model lists.\n",
        TOGETHER,
        mentioned=False,
        competitors=["Groq", "Fireworks AI"],
        owned=3,
        provider=(("https://www.together.ai/pricing", "Together AI pricing"),),
    ),
    Case(
        "common-word-name-not-the-org",
        "To extend your cash runway, cut burn first: renegotiate vendor contracts and delay non-essential hires. "
        "Most seed-stage startups target 18–24 months of runway. Runway is the number of months you can operate "
        "before running out of money.\n",
        RUNWAY,
        mentioned=False,
        competitors=[],
    ),
    Case(
        "common-word-name-is-the-org",
        "Popular AI video generators include **Runway**, **Pika** and **Luma AI**. Runway's Gen-3 Alpha produces "
        "the most cinematic results, while Pika is easier for beginners. Keep an eye on your cash runway: Runway "
        "is a subscription product.\n",
        RUNWAY,
        mentioned=True,
        rank=1,
        competitors=["Pika", "Luma AI"],
        mention_count=3,
    ),
    Case(
        "common-word-traps-around-a-list",
        """1. **CoreWeave** – The largest independent GPU cloud.
2. **Together AI** – Training clusters plus fast inference.

Note that AWS Lambda functions are not a fit for GPU training. It pays to bring your evals together first.
""",
        LAMBDA,
        mentioned=False,
        rank=0,
        # AWS Lambda is a product named in prose (a brand of its own, AWS not being named); it is not org Lambda.
        competitors=["CoreWeave", "Together AI", "AWS Lambda"],
    ),
    Case(
        "variants-merged",
        """### Lambda Labs
On-demand H100s. Many researchers start on Lambda Cloud, and Lambda's 1-Click Clusters scale to 2,000 GPUs.

### CoreWeave
Kubernetes-native GPU cloud. See [lambdalabs.com](https://lambdalabs.com/pricing) for comparison.
""",
        TOGETHER,
        mentioned=False,
        competitors=["Lambda", "CoreWeave"],
        not_competitors={"Lambda Labs", "Lambda Cloud"},
    ),
    Case(
        "negative-sentiment",
        "1. **Jasper** – AI writing assistant for marketing teams; expensive and the output often needs heavy "
        "editing. Users report frequent bugs and poor support.\n2. **Copy.ai** – Good for short-form copy.\n",
        Org("Jasper", "jasper.ai", ("Jasper AI",)),
        mentioned=True,
        rank=1,
        competitors=["Copy.ai"],
        sentiment="NEGATIVE",
    ),
    Case(
        "negation-flips",
        "Together AI is not expensive and has no hidden fees. It is never slow.\n",
        TOGETHER,
        mentioned=True,
        rank=1,
        sentiment="POSITIVE",
    ),
    Case(
        "mixed-sentiment",
        "Perplexity AI and ChatGPT both answer questions with citations [1][2]. Perplexity is faster for research, "
        "though its free tier is limited [3].\n\n"
        '[1]: https://www.perplexity.ai/hub/faq "Perplexity FAQ"\n'
        "[2]: https://openai.com/chatgpt\n"
        "[3]: https://techcrunch.com/2024/perplexity-review/?utm_campaign=x\n",
        Org("Perplexity", "perplexity.ai", ("Perplexity AI",)),
        mentioned=True,
        rank=1,
        competitors=["ChatGPT"],
        mention_count=2,
        sentiment="MIXED",
        evidence="Perplexity AI and ChatGPT both answer questions with citations.",
        owned=1,
    ),
    Case(
        "sections-carry-sentiment",
        """### Together AI
Excellent price-performance and reliable serverless endpoints.

### Lambda
Capacity shortages and long waitlists.
""",
        TOGETHER,
        mentioned=True,
        rank=1,
        competitors=["Lambda"],
        sentiment="POSITIVE",
        evidence="Together AI: Excellent price-performance",
    ),
    Case(
        "code-blocks-ignored",
        "Use the client:\n\n```python\nfrom together import Together\nclient = Together()\n```\n\nThat's it.\n",
        TOGETHER,
        mentioned=False,
        competitors=[],
    ),
    Case(
        "empty-answer",
        "",
        TOGETHER,
        mentioned=False,
        competitors=[],
        owned=0,
    ),
]


def run(case: Case) -> Analysis:
    return analyze(case.answer, case.org, list(case.known), list(case.provider))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_answer(case: Case) -> None:
    a = run(case)
    e = a.org_eval
    assert e.mentioned is case.mentioned
    assert e.rank == (case.rank if case.mentioned else 0)
    assert (e.first_offset >= 0) is case.mentioned
    if case.mentioned:
        assert e.mention_count >= 1
        first = case.answer[e.first_offset :]
        assert any(
            first.lower().startswith(f.lower()) for f in (case.org.name, *case.org.variations, "together")
        )
    else:
        assert (e.mention_count, e.first_offset, e.evidence, e.sentiment) == (0, -1, "", "NEUTRAL")
    names = [c.name for c in a.competitors]
    if case.competitors is not None:
        assert names == case.competitors
    assert not (set(names) & case.not_competitors)
    if case.mention_count is not None:
        assert e.mention_count == case.mention_count
    if case.sentiment is not None:
        assert e.sentiment == case.sentiment
    if case.evidence is not None:
        assert case.evidence in e.evidence
    if case.owned is not None:
        assert e.owned_citation_count == case.owned
    # One ordering for everyone: the org and the competitors share ranks 1..n with no gaps or repeats.
    ranks = sorted([c.rank for c in a.competitors] + ([e.rank] if e.mentioned else []))
    assert ranks == list(range(1, len(ranks) + 1))


def test_competitor_mention_counts_merge_variants() -> None:
    a = run(next(c for c in CASES if c.id == "variants-merged"))
    lam = next(c for c in a.competitors if c.name == "Lambda")
    assert lam.mention_count == 3  # "Lambda Labs", "Lambda Cloud", "Lambda's"; the chip link is a citation


def test_known_competitor_spelling_is_the_display_name() -> None:
    a = analyze("Good picks: **Lambda Labs** and **CoreWeave**.", TOGETHER, ["Lambda"])
    assert [c.name for c in a.competitors] == ["Lambda", "CoreWeave"]


def test_citations_inline_links_bare_urls_and_provider() -> None:
    answer = (
        "According to [Together AI's pricing page](https://www.together.ai/pricing?utm_source=chatgpt.com), Llama 3 "
        "70B costs $0.88 per million tokens. See also the [CoreWeave blog](https://coreweave.com/blog/h200/#intro) and "
        "https://lambdalabs.com/blog/gpu-benchmarks?utm_medium=social&ref=hn).\n\n"
        "More: https://www.together.ai/pricing/, <https://docs.together.ai/docs/fine-tuning>, [mail us](mailto:x@y.z), "
        "![chart](https://img.example.com/c.png) and [BBC](https://news.bbc.co.uk/tech?gclid=1).\n"
    )
    a = analyze(
        answer,
        TOGETHER,
        ["Lambda"],
        [("https://Nebius.com/prices/", "Nebius prices"), ("https://www.together.ai/pricing", "")],
    )
    got = [(c.position, c.url, c.domain, c.source, c.owned, c.competitor_name, c.title) for c in a.citations]
    assert got == [
        (1, "https://nebius.com/prices", "nebius.com", "PROVIDER", False, "", "Nebius prices"),
        (
            2,
            "https://www.together.ai/pricing",
            "together.ai",
            "PROVIDER",
            True,
            "",
            "Together AI's pricing page",
        ),
        (
            3,
            "https://coreweave.com/blog/h200",
            "coreweave.com",
            "INLINE_LINK",
            False,
            "CoreWeave",
            "CoreWeave blog",
        ),
        (4, "https://lambdalabs.com/blog/gpu-benchmarks", "lambdalabs.com", "BARE_URL", False, "Lambda", ""),
        (5, "https://docs.together.ai/docs/fine-tuning", "together.ai", "BARE_URL", True, "", ""),
        # "[BBC](…)" names an organisation with a link to its own site: open-set discovery counts it.
        (6, "https://news.bbc.co.uk/tech", "bbc.co.uk", "INLINE_LINK", False, "BBC", "BBC"),
    ]
    assert all(c.competitor == bool(c.competitor_name) for c in a.citations)
    assert a.org_eval.owned_citation_count == 2
    assert a.org_eval.mentioned  # "Together AI's pricing page" names the org in the link text


def test_citation_of_a_known_competitor_not_named_in_the_answer() -> None:
    a = analyze("Pricing data: https://www.runpod.io/pricing", TOGETHER, ["RunPod"])
    assert [(c.domain, c.competitor, c.competitor_name) for c in a.citations] == [
        ("runpod.io", True, "RunPod")
    ]
    assert a.competitors == []


def test_org_variation_spelled_as_domain_counts_as_owned() -> None:
    org = Org("Lambda", "lambda.ai", ("Lambda Labs", "lambdalabs.com"))
    a = analyze("See https://lambdalabs.com/x and https://lambda.ai/y", org)
    assert [c.owned for c in a.citations] == [True, True]
    assert not any(c.competitor for c in a.citations)
