"""Deterministic assistant answers to buyer-style questions, for the AI-visibility emulators.

``generate(corpus, question, model, location)`` picks the market the question is about (GPU
clouds, serverless inference, fine-tuning, LLM APIs, creative tools, writing tools, AI
assistants, accounting), ranks that market's vendors with noise seeded by a hash of
``(question, model, location)`` — so a given org (e.g. Together AI) appears at different ranks,
or not at all, across models and locations, but always the same for the same triple — and lays
the answer out in one of several realistic markdown shapes:

- numbered list with bold names: ``1. **CoreWeave** – ...``
- one ``### Name`` heading per vendor
- a markdown table whose first column is the vendor
- prose paragraphs

with inline links ``[text](https://...)``, bare URLs, and sentences that use company names as
common words ("cash runway", "bring it together", "AWS Lambda functions") to trap naive
extractors. The answer is a list of :class:`Segment` s, each optionally backed by corpus pages;
each emulator renders the citations in its provider's style (OpenAI ``url_citation`` spans,
Perplexity ``[n]`` markers, Anthropic citation blocks, Bright Data citation arrays).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from html import escape
from typing import Any

from .common import stable_hash
from .corpus import Corpus, Page, domain_of


@dataclass(frozen=True)
class Vendor:
    name: str
    domain: str
    key: str | None  # corpus company key, if the corpus has pages for it
    blurbs: tuple[str, ...]
    aliases: tuple[str, ...] = ()


def _v(name: str, domain: str, key: str | None, *blurbs: str) -> Vendor:
    return Vendor(name, domain, key, blurbs)


# Vendors per market, most prominent first (prominence biases, but does not fix, the rank).
MARKETS: dict[str, list[Vendor]] = {
    "gpu_cloud": [
        _v(
            "CoreWeave",
            "coreweave.com",
            "coreweave",
            "the largest independent GPU cloud, with very large H100, H200 and GB200 clusters on InfiniBand; the usual choice of AI labs for multi-thousand-GPU training runs",
            "purpose-built AI cloud with Kubernetes-native bare-metal GPUs and strong fleet-health tooling",
        ),
        _v(
            "Lambda",
            "lambda.ai",
            "lambda",
            "developer-friendly on-demand H100/B200 instances and 1-Click Clusters from 16 to 2,000+ GPUs",
            "simple pricing and pre-installed Lambda Stack; popular with research teams",
        ),
        _v(
            "Together AI",
            "together.ai",
            "together",
            "GPU clusters of thousands of H100/B200 GPUs plus fine-tuning and serverless inference on the same platform",
            "an AI acceleration cloud that combines training clusters with a fast inference engine for open models",
        ),
        _v(
            "AWS",
            "aws.amazon.com",
            None,
            "P5 instances and UltraClusters, plus Trainium for cost-sensitive training; the broadest ecosystem",
            "EC2 Capacity Blocks let you reserve GPU clusters for a fixed window",
        ),
        _v(
            "Google Cloud",
            "cloud.google.com",
            None,
            "A3 GPU VMs and TPUs, tightly integrated with Vertex AI",
            "TPU pods are a strong alternative to GPUs for JAX workloads",
        ),
        _v(
            "Microsoft Azure",
            "azure.microsoft.com",
            None,
            "ND H100 v5 VMs with InfiniBand, favoured by enterprises already on Azure",
            "large capacity through the same infrastructure that serves OpenAI",
        ),
        _v(
            "Crusoe",
            "crusoe.ai",
            None,
            "GPU cloud built on low-carbon and stranded energy, with large new data center campuses",
            "competitive pricing for long reservations",
        ),
        _v(
            "Nebius",
            "nebius.com",
            None,
            "European GPU cloud with large H100/H200 clusters and managed Slurm",
            "strong price-performance and EU data residency",
        ),
        _v(
            "RunPod",
            "runpod.io",
            None,
            "low-cost GPU pods and serverless GPUs, good for experiments and smaller fine-tunes",
            "community and secure cloud tiers",
        ),
    ],
    "inference": [
        _v(
            "Together AI",
            "together.ai",
            "together",
            "200+ open-source models behind an OpenAI-compatible API with a fast inference engine and dedicated endpoints",
            "serverless pay-per-token inference for Llama, DeepSeek and Qwen, plus fine-tuning",
        ),
        _v(
            "Fireworks AI",
            "fireworks.ai",
            None,
            "very low latency serving and strong structured-output support",
            "fast serverless inference with function calling",
        ),
        _v(
            "Replicate",
            "replicate.com",
            None,
            "a huge catalogue of community models behind a simple API",
            "easy deployment of custom models with Cog",
        ),
        _v(
            "Hugging Face",
            "huggingface.co",
            "huggingface",
            "Inference Endpoints for any Hub model and Inference Providers as a single routing API",
            "the largest model hub, with managed endpoints on cloud partners",
        ),
        _v(
            "Groq",
            "groq.com",
            None,
            "extremely fast token generation on custom LPU hardware",
            "record tokens-per-second on popular open models",
        ),
        _v(
            "Baseten",
            "baseten.co",
            None,
            "production inference with autoscaling and Truss packaging",
            "dedicated deployments with strong observability",
        ),
        _v(
            "Modal",
            "modal.com",
            None,
            "serverless GPUs for Python code, good for custom inference pipelines",
            "pay-per-second GPU functions",
        ),
        _v(
            "Lambda",
            "lambda.ai",
            "lambda",
            "a low-cost Inference API for open models",
            "cheap serverless endpoints on its own GPU cloud",
        ),
        _v(
            "DeepInfra",
            "deepinfra.com",
            None,
            "low prices on popular open-weight models",
            "simple OpenAI-compatible endpoints",
        ),
    ],
    "fine_tuning": [
        _v(
            "OpenAI",
            "openai.com",
            "openai",
            "supervised and preference fine-tuning of GPT models through the API",
            "managed fine-tuning with evals built in",
        ),
        _v(
            "Together AI",
            "together.ai",
            "together",
            "full and LoRA fine-tuning of open models, with the weights owned by you",
            "fine-tune Llama or Qwen and deploy on dedicated endpoints",
        ),
        _v(
            "Hugging Face",
            "huggingface.co",
            "huggingface",
            "AutoTrain and the TRL library for do-it-yourself fine-tuning",
            "open-source tooling plus managed training jobs",
        ),
        _v(
            "Mistral AI",
            "mistral.ai",
            "mistral",
            "fine-tuning API for Mistral models, including on-premise options",
            "customisation for European enterprises",
        ),
        _v(
            "Cohere",
            "cohere.com",
            "cohere",
            "fine-tuning of Command models for enterprise tasks in private deployments",
            "secure customisation with data privacy guarantees",
        ),
        _v(
            "Predibase",
            "predibase.com",
            None,
            "LoRA fine-tuning and multi-LoRA serving",
            "cheap serving of many fine-tuned adapters",
        ),
        _v(
            "Fireworks AI",
            "fireworks.ai",
            None,
            "fine-tuning with instant deployment of LoRA adapters",
            "fast iteration on small fine-tunes",
        ),
    ],
    "llm_api": [
        _v(
            "OpenAI",
            "openai.com",
            "openai",
            "GPT models with the broadest ecosystem, tools and structured outputs",
            "the default choice for many developers, from mini models to reasoning models",
        ),
        _v(
            "Anthropic",
            "anthropic.com",
            "anthropic",
            "Claude models, strong at coding, agents and long documents",
            "Claude is popular for enterprise assistants and agentic coding",
        ),
        _v(
            "Google Gemini",
            "ai.google.dev",
            None,
            "Gemini models with very long context and multimodal input",
            "tight integration with Google Cloud",
        ),
        _v(
            "Mistral AI",
            "mistral.ai",
            "mistral",
            "open-weight and commercial models with EU data residency",
            "efficient models and private deployment options",
        ),
        _v(
            "Cohere",
            "cohere.com",
            "cohere",
            "Command, Embed and Rerank for private enterprise deployments and RAG",
            "multilingual retrieval and secure deployment",
        ),
        _v(
            "Together AI",
            "together.ai",
            "together",
            "one API for the leading open models, OpenAI-compatible",
            "run open models without managing GPUs",
        ),
        _v(
            "Meta Llama",
            "llama.com",
            None,
            "open-weight Llama models you can host anywhere",
            "the most widely deployed open model family",
        ),
    ],
    "creative": [
        _v(
            "Runway",
            "runwayml.com",
            "runway",
            "Gen-4 video models with consistent characters and professional editing tools",
            "the professional's choice for AI video",
        ),
        _v(
            "OpenAI Sora",
            "openai.com",
            "openai",
            "realistic video generation available in ChatGPT plans",
            "impressive realism for short clips",
        ),
        _v(
            "Stability AI",
            "stability.ai",
            "stability",
            "open Stable Diffusion models for images, plus video and 3D",
            "run models locally and fine-tune your own style",
        ),
        _v(
            "Midjourney",
            "midjourney.com",
            None,
            "the favourite for stylised still images",
            "best-in-class aesthetics",
        ),
        _v(
            "Pika",
            "pika.art",
            None,
            "fast, playful video generation for social content",
            "quick effects for short videos",
        ),
        _v(
            "Luma AI",
            "lumalabs.ai",
            None,
            "Dream Machine video generation with realistic motion",
            "good camera motion control",
        ),
    ],
    "writing": [
        _v(
            "Jasper",
            "jasper.ai",
            "jasper",
            "the most complete marketing platform, with Brand Voice and campaign workflows",
            "enterprise marketing content with brand controls",
        ),
        _v(
            "Copy.ai",
            "copy.ai",
            None,
            "go-to-market workflows for sales and marketing content",
            "automated GTM workflows",
        ),
        _v(
            "Writer",
            "writer.com",
            None,
            "enterprise writing platform with its own Palmyra models",
            "governance and style guides for large teams",
        ),
        _v(
            "ChatGPT",
            "openai.com",
            "openai",
            "flexible and cheap, but needs careful prompting for brand consistency",
            "a general assistant many marketers already use",
        ),
        _v(
            "Grammarly",
            "grammarly.com",
            None,
            "editing and tone suggestions across every app",
            "polish rather than first drafts",
        ),
        _v(
            "PitchPilot AI",
            "pitchpilot.ai",
            "pitchpilot",
            "a niche tool for personalised outbound sales emails",
            "LinkedIn extension and tone presets for SDRs",
        ),
    ],
    "assistants": [
        _v(
            "ChatGPT",
            "openai.com",
            "openai",
            "the most widely used general assistant, with web search and deep research",
            "broad capabilities and a large plugin ecosystem",
        ),
        _v(
            "Perplexity",
            "perplexity.ai",
            "perplexity",
            "an answer engine that cites its sources for every claim",
            "fast, citation-rich answers and a research mode",
        ),
        _v(
            "Claude",
            "anthropic.com",
            "anthropic",
            "thoughtful long-form answers and strong document analysis",
            "excellent for writing and coding help",
        ),
        _v(
            "Google Gemini",
            "gemini.google.com",
            None,
            "integrated with Google Search and Workspace",
            "good for users in the Google ecosystem",
        ),
        _v(
            "Character.ai",
            "character.ai",
            "characterai",
            "AI characters for entertainment and role-play conversations",
            "companionship and creative role-play",
        ),
        _v(
            "You.com",
            "you.com",
            None,
            "search-first assistant with multiple models",
            "research assistant with model choice",
        ),
    ],
    "accounting": [
        _v(
            "QuickBooks Online",
            "quickbooks.intuit.com",
            None,
            "the market leader for US small businesses, with a huge accountant network",
            "deep integrations and payroll",
        ),
        _v(
            "Xero",
            "xero.com",
            None,
            "clean interface and strong bank feeds, popular in the UK and Australia",
            "unlimited users on all plans",
        ),
        _v(
            "Tallybook",
            "tallybook.io",
            "tallybook",
            "bank reconciliation, invoicing and a practice dashboard for accounting firms",
            "automatic transaction categorisation and receipt OCR",
        ),
        _v(
            "FreshBooks",
            "freshbooks.com",
            None,
            "invoicing-first accounting for freelancers and service businesses",
            "time tracking and client billing",
        ),
        _v(
            "Wave",
            "waveapps.com",
            None,
            "free accounting for very small businesses",
            "free invoicing and receipt scanning",
        ),
    ],
}
ALL_VENDORS: dict[str, Vendor] = {v.name: v for vs in MARKETS.values() for v in vs}

_MARKET_KEYWORDS: dict[str, tuple[str, ...]] = {
    "gpu_cloud": (
        "gpu cloud",
        "gpu",
        "h100",
        "b200",
        "cluster",
        "compute",
        "neocloud",
        "train",
        "training",
        "rent",
    ),
    "inference": (
        "serverless",
        "inference",
        "open-source model",
        "open source model",
        "open-weight",
        "host",
        "deploy",
        "endpoint",
        "llama",
    ),
    "fine_tuning": ("fine-tun", "fine tun", "finetun", "customi", "lora"),
    "llm_api": (
        "llm api",
        "language model",
        "llm provider",
        "enterprise llm",
        "rag",
        "api for",
        "best llm",
        "chatbot api",
        "model provider",
    ),
    "creative": ("video", "image", "creative", "film", "art", "visual"),
    "writing": (
        "writing",
        "copywriting",
        "marketing content",
        "blog post",
        "sales email",
        "content marketing",
        "copy",
    ),
    "assistants": (
        "assistant",
        "answer engine",
        "search engine",
        "chatbot",
        "research tool",
        "companion",
        "ask questions",
    ),
    "accounting": ("accounting", "bookkeeping", "invoic", "small business", "payroll", "tax"),
}
_MARKET_TITLES = {
    "gpu_cloud": "GPU cloud providers for training",
    "inference": "serverless inference platforms for open-source models",
    "fine_tuning": "fine-tuning platforms",
    "llm_api": "LLM API providers",
    "creative": "AI video and image generators",
    "writing": "AI writing tools",
    "assistants": "AI assistants",
    "accounting": "accounting software options",
}
# Sentences that use company names as ordinary words (extraction must not count them).
_TRAPS = (
    "Whatever you pick, model the GPU bill against your cash runway before signing a long reservation.",
    "It pays to bring your data, evals and deployment plans together before you commit to a vendor.",
    "Note that AWS Lambda functions are not a fit for GPU training; they are for short CPU tasks.",
    "Training stability (loss spikes, node failures) matters more than peak FLOPS on paper.",
    "Make sure the pieces of your stack cohere: data pipeline, training code and serving.",
    "If the options leave you in a state of perplexity, start with a small pilot and measure.",
    "A jasper-green dashboard is nice, but check the SLA and support terms first.",
)
_INTROS = (
    "Here are the strongest options for {title}, based on capability, pricing and how teams use them in practice:",
    "The right choice depends on scale, budget and how much control you need. The most commonly recommended {title} are:",
    "Short answer: there is no single best pick, but a handful of {title} come up again and again.",
    "Based on recent reviews and provider documentation, these are the leading {title}:",
)
_OUTROS = (
    "For most teams, shortlisting two or three providers and benchmarking your own workload is the fastest way to decide.",
    "Prices and availability change quickly, so confirm current terms directly with each provider.",
    "If you share your model size, budget and timeline, I can narrow this down further.",
)


@dataclass
class Segment:
    """A piece of answer text; ``sources`` back its claim and are cited right after it."""

    text: str
    sources: list[Page] = field(default_factory=list)
    suffix: str = "\n"


@dataclass
class Answer:
    question: str
    model: str
    location: str
    market: str
    shape: str
    segments: list[Segment]
    vendors: list[str]  # vendor names in order of first mention
    search_results: list[Page]  # everything "retrieved" (cited or not), in retrieval order
    queries: list[str]

    # -- citations -------------------------------------------------------------------------
    @property
    def cited(self) -> list[Page]:
        """Cited pages, de-duplicated, in order of first citation."""
        seen: dict[str, Page] = {}
        for seg in self.segments:
            for p in seg.sources:
                seen.setdefault(p.url, p)
        return list(seen.values())

    # -- renderings --------------------------------------------------------------------------
    def render_plain(self) -> str:
        """Markdown without citation markers (inline links written into the text remain)."""
        return "".join(s.text + s.suffix for s in self.segments).strip() + "\n"

    def render_openai(self) -> tuple[str, list[dict[str, Any]]]:
        """Markdown with ChatGPT-style ``([domain](url))`` citations → (text, url_citation list).

        Each annotation's ``start_index``/``end_index`` delimit the ``[domain](url)`` link in
        the returned text (Python string indices), as in providers.md §3.1.
        """
        out: list[str] = []
        pos = 0
        annotations: list[dict[str, Any]] = []
        for seg in self.segments:
            out.append(seg.text)
            pos += len(seg.text)
            for p in seg.sources[:2]:
                url = _with_utm(p.url)
                link = f"[{p.domain}]({url})"
                piece = f" ({link})"
                start = pos + 2
                out.append(piece)
                annotations.append(
                    {
                        "type": "url_citation",
                        "start_index": start,
                        "end_index": start + len(link),
                        "url": url,
                        "title": p.title,
                    }
                )
                pos += len(piece)
            out.append(seg.suffix)
            pos += len(seg.suffix)
        text = "".join(out)
        stripped = text.rstrip()
        return stripped + "\n", annotations

    def render_numbered(self) -> tuple[str, list[Page]]:
        """Markdown with Perplexity-style ``[n]`` markers → (text, cited pages in index order)."""
        cited = self.cited
        index = {p.url: i for i, p in enumerate(cited, 1)}
        out = []
        for seg in self.segments:
            marks = "".join(f"[{index[p.url]}]" for p in seg.sources[:3])
            out.append(seg.text + marks + seg.suffix)
        return "".join(out).strip() + "\n", cited

    def blocks(self) -> list[tuple[str, list[Page]]]:
        """(text, sources) blocks for Anthropic: uncited text is merged into one block."""
        blocks: list[tuple[str, list[Page]]] = []
        buf = ""
        for seg in self.segments:
            if seg.sources:
                if buf:
                    blocks.append((buf, []))
                    buf = ""
                blocks.append((seg.text, list(seg.sources[:2])))
                buf = seg.suffix
            else:
                buf += seg.text + seg.suffix
        if buf.strip():
            blocks.append((buf.rstrip() + "\n", []))
        return blocks


def _with_utm(url: str) -> str:
    return url + ("&" if "?" in url else "?") + "utm_source=openai"


def detect_market(question: str) -> str:
    q = question.lower()
    scores = {m: sum(q.count(k) for k in kws) for m, kws in _MARKET_KEYWORDS.items()}
    # "fine-tune" questions also say "train"; the specific market wins over the generic one.
    if scores["fine_tuning"]:
        scores["fine_tuning"] += 2
    if scores["inference"] and "train" not in q:
        scores["inference"] += 1
    best = max(scores, key=lambda m: (scores[m], m == "llm_api"))
    return best if scores[best] > 0 else "llm_api"


def _strip_question(q: str) -> str:
    q = re.sub(r"[?!.]+$", "", q.strip())
    q = re.sub(
        r"^(?:what|which|who|how|where|can you|could you|please)\b\s*(?:are|is|do|does|should|would|can)?\s*(?:the\s+)?",
        "",
        q,
        flags=re.IGNORECASE,
    )
    return q.strip() or "AI providers"


def generate(corpus: Corpus, question: str, model: str, location: str | None = None,
             mention_probability: dict[str, float] | None = None) -> Answer:
    """Build the deterministic answer for ``(question, model, location)``. ``mention_probability`` (the
    ``answer_mention_probability`` knob): vendor name, or ``"vendor@model"`` for one model only (case-insensitive)
    → probability that the answer names it, drawn from a hash of (question, model, location, vendor), so
    deterministic too."""
    loc = (location or "US").upper()
    seed = stable_hash(question.strip().lower(), model.strip().lower(), loc)
    rng = random.Random(seed)
    market = detect_market(question)
    vendors = MARKETS[market]

    # Noisy ranking: prominence plus Gaussian noise, then drop some vendors entirely.
    noisy = sorted(vendors, key=lambda v: vendors.index(v) + rng.gauss(0, 1.9))
    n_items = min(len(noisy), rng.randint(4, 7))
    chosen = [v for v in noisy if rng.random() > 0.12][:n_items] or noisy[:3]
    if mention_probability:
        odds = {k.casefold(): p for k, p in mention_probability.items()}

        def odds_of(v: Vendor) -> float | None:
            # "vendor@model" (this model only) before "vendor" (every model).
            p = odds.get(f"{v.name.casefold()}@{model.strip().lower()}")
            return odds.get(v.name.casefold()) if p is None else p

        def keep(v: Vendor) -> bool:
            p = odds_of(v)
            if p is None:
                return v in chosen
            draw = random.Random(stable_hash(question.strip().lower(), model.strip().lower(), loc, v.name))
            return draw.random() < p

        chosen = [v for v in noisy if keep(v)] or [v for v in noisy if odds_of(v) is None][:3]

    low_model = model.lower()
    shapes = ["numbered", "headings", "table", "prose"]
    weights = [4, 3, 2, 2]
    if "perplexity" in low_model or "sonar" in low_model:
        weights = [5, 1, 1, 3]
    elif "claude" in low_model:
        weights = [3, 2, 1, 4]
    shape = rng.choices(shapes, weights=weights)[0]
    title = _MARKET_TITLES[market]

    def owned_page(v: Vendor) -> Page | None:
        if not v.key:
            return None
        hits = corpus.search(f"{v.name} {question}", 3, include_domains=[v.domain])
        if hits:
            return hits[0].page
        pages = corpus.company_pages(v.key)
        return pages[0] if pages else None

    third_party = [
        h.page
        for h in corpus.search(question, 12)
        if h.page.company == "industry" or corpus.company_for_domain(h.page.url) is None
    ]
    third_party = [p for p in third_party if p.kind in ("news",)][:3]

    segs: list[Segment] = [Segment(rng.choice(_INTROS).format(title=title), suffix="\n\n")]
    roundup = third_party[0] if third_party else None

    for rank, v in enumerate(chosen, 1):
        blurb = rng.choice(v.blurbs)
        page = owned_page(v)
        srcs = [page] if page else []
        if roundup is not None and not srcs and rng.random() < 0.6:
            srcs = [roundup]
        elif roundup is not None and rng.random() < 0.25:
            srcs.append(roundup)
        name = v.name
        if rng.random() < 0.3:
            name = f"[{v.name}](https://www.{v.domain}/)"
        if shape == "numbered":
            segs.append(Segment(f"{rank}. **{name}** – {blurb[0].upper()}{blurb[1:]}.", srcs))
        elif shape == "headings":
            segs.append(Segment(f"### {v.name}\n{blurb[0].upper()}{blurb[1:]}.", srcs, suffix="\n\n"))
        elif shape == "table":
            if rank == 1:
                segs.append(Segment("| Provider | Best for | Notes |\n|---|---|---|", suffix="\n"))
            other = [b for b in v.blurbs if b != blurb]
            notes = (other[0] if other else blurb).split(";")[0]
            segs.append(Segment(f"| {v.name} | {blurb.split(',')[0]} | {notes}", srcs, suffix=" |\n"))
        else:  # prose
            lead = (
                f"**{v.name}** is a strong option: {blurb}."
                if rank == 1
                else rng.choice(
                    (
                        f"Another good choice is {name}, offering {blurb}.",
                        f"{name} stands out for {blurb}.",
                        f"Teams also consider {v.name} ({blurb}).",
                    )
                )
            )
            segs.append(Segment(lead, srcs, suffix="\n\n" if rank % 2 == 0 else " "))

    if shape in ("numbered", "table"):
        segs[-1].suffix = segs[-1].suffix + "\n"
    traps = rng.sample(_TRAPS, k=rng.randint(1, 2))
    segs.append(Segment(" ".join(traps), suffix="\n\n"))
    if third_party and rng.random() < 0.6:
        p = third_party[-1]
        if rng.random() < 0.5:
            segs.append(Segment(f"For a broader comparison, see {p.url}", suffix="\n\n"))
        else:
            segs.append(Segment(f"For a broader comparison, see [{p.title}]({p.url}).", [p], suffix="\n\n"))
    segs.append(Segment(rng.choice(_OUTROS), suffix="\n"))

    mentioned = [v.name for v in chosen]
    cited_urls = {p.url for s in segs for p in s.sources}
    extra = [h.page for h in corpus.search(question, 8) if h.page.url not in cited_urls][: rng.randint(1, 3)]
    results = [p for s in segs for p in s.sources]
    results = list({p.url: p for p in results + extra}.values())
    core = _strip_question(question)
    queries = [core, f"{core} {2025 + rng.randint(0, 1)}"][: rng.randint(1, 2)]
    return Answer(
        question=question,
        model=model,
        location=loc,
        market=market,
        shape=shape,
        segments=segs,
        vendors=mentioned,
        search_results=results,
        queries=queries,
    )


# -- small markdown helpers shared by the renderers -----------------------------------------------

_LINK_RE = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")
_BARE_RE = re.compile(r"(?<![(\[])https?://[^\s)\]]+")


def inline_links(markdown: str) -> list[dict[str, Any]]:
    """``[{url, text, position}]`` for every inline link, position = 1-based order in the text."""
    return [
        {"url": m.group(2), "text": m.group(1), "position": i}
        for i, m in enumerate(_LINK_RE.finditer(markdown), 1)
    ]


def markdown_to_text(md: str) -> str:
    t = _LINK_RE.sub(r"\1", md)
    t = re.sub(r"^#{1,6}\s*", "", t, flags=re.MULTILINE)
    t = re.sub(r"\*\*|__|`", "", t)
    t = re.sub(r"^\|?[-:| ]+\|?$\n?", "", t, flags=re.MULTILINE)
    return t.strip() + "\n"


def markdown_to_html(md: str) -> str:
    """A tiny markdown → HTML converter (lists, headings, tables, paragraphs, bold, links)."""

    def inline(s: str) -> str:
        s = escape(s, quote=False)
        s = re.sub(
            r"\[([^\]]+)\]\((https?://[^)\s]+)\)", r'<a href="\2" target="_blank" rel="noopener">\1</a>', s
        )
        return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)

    html: list[str] = []
    lines = md.strip().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if m := re.match(r"^(#{1,6})\s+(.*)", line):
            n = len(m.group(1))
            html.append(f"<h{n}>{inline(m.group(2))}</h{n}>")
            i += 1
        elif re.match(r"^\d+\.\s", line):
            items = []
            while i < len(lines) and re.match(r"^\d+\.\s", lines[i]):
                item = re.sub(r"^\d+\.\s+", "", lines[i])
                items.append(f"<li>{inline(item)}</li>")
                i += 1
            html.append("<ol>" + "".join(items) + "</ol>")
        elif line.startswith("|"):
            rows: list[str] = []
            while i < len(lines) and lines[i].startswith("|"):
                if not re.match(r"^\|?[-:| ]+\|?$", lines[i]):
                    cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                    tag = "th" if not rows else "td"
                    rows.append("<tr>" + "".join(f"<{tag}>{inline(c)}</{tag}>" for c in cells) + "</tr>")
                i += 1
            html.append("<table>" + "".join(rows) + "</table>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#{1,6}\s|\d+\.\s|\|)", lines[i]):
                para.append(lines[i])
                i += 1
            html.append(f"<p>{inline(' '.join(para))}</p>")
    return '<div class="markdown prose">' + "".join(html) + "</div>"


def favicon(url: str) -> str:
    return f"https://{domain_of(url)}/favicon.ico"
