"""OrchestratorService against hostile and careless clients (issue 11), through a real grpc.aio server with the real
downstream services and the sandbox: no server file is readable through StartRun (PERMISSION_DENIED, nothing
stored), VANTAGE_INPUT_DIR confines input_path (symlinks out refused, content never echoed), inputs arrive as
content (input_csv, questions_text, UploadInput), every field is bounded (INVALID_ARGUMENT with the limit and the
BadRequest field), every enum and id is checked, and a refused input leaves no run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.orchestrator.api.server import build
from shared.config import Settings
from shared.grpc_server import serving
from vantage.orchestrator.v1 import orchestrator_pb2 as pb
from vantage.orchestrator.v1 import orchestrator_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

ORG = pb.OrgEvalInput(org_name="Together AI", org_domain="together.ai", models=["gpt-4.1"], locations=["US"])

Stub = pb_grpc.OrchestratorServiceStub


@pytest.fixture
def start(services: Settings, db_url: str, tmp_path: Path) -> Callable[..., object]:
    """``async with start(**settings) as stub``: an orchestrator with these settings over the shared services."""

    def make(**update: object) -> object:
        settings = services.model_copy(update={"database_url": db_url, **update})

        class _Ctx:
            async def __aenter__(self) -> Stub:
                self._srv = serving("orchestrator", build, settings)
                srv = await self._srv.__aenter__()
                self._ch = grpc.aio.insecure_channel(srv.address)
                return pb_grpc.OrchestratorServiceStub(self._ch)

            async def __aexit__(self, *exc: object) -> None:
                await self._ch.close()
                await self._srv.__aexit__(*exc)

        return _Ctx()

    return make


@pytest.fixture
async def stub(start: Callable[..., object]) -> AsyncIterator[Stub]:
    async with start() as s:  # type: ignore[attr-defined]
        yield s


async def failure(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call  # type: ignore[misc]
    return e.value


def violations(e: grpc.aio.AioRpcError) -> list[str]:
    st = rpc_status.from_call(e)
    out: list[str] = []
    for d in st.details if st else []:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            out += [v.field for v in br.field_violations]
    return out


async def no_runs(stub: Stub) -> bool:
    return not (await stub.ListRuns(pb.ListRunsRequest(), timeout=10)).runs


# --- item 1: no server-side path from a client -------------------------------------------------------------------


async def test_proc_self_environ_is_permission_denied_and_nothing_is_stored(stub: Stub) -> None:
    # The attack of issue 11: the process environment (provider keys) as questions of a detached ORG_EVAL run.
    for kind, extra in ((pb.ORG_EVAL, {"org_eval_options": ORG}), (pb.RESEARCH, {})):
        for path in ("/proc/self/environ", "/etc/passwd", "../../../../etc/passwd", "examples/companies.csv"):
            e = await failure(stub.StartRun(pb.StartRunRequest(kind=kind, input_path=path, detach=True, **extra),
                                            timeout=30))
            assert e.code() == grpc.StatusCode.PERMISSION_DENIED, (kind, path, e.details())
            details = e.details() or ""
            assert "input_csv" in details and "upload_id" in details and "VANTAGE_INPUT_DIR" in details
            assert "PATH=" not in details and "root:" not in details
    assert await no_runs(stub)


async def test_a_5000_character_path_is_invalid_argument(start: Callable[..., object], tmp_path: Path) -> None:
    for update in ({}, {"input_dir": str(tmp_path)}):
        async with start(**update) as stub:  # type: ignore[attr-defined]
            for path in ("a" * 5000, "x/" * 2500, "bad\x00name.csv"):
                e = await failure(stub.StartRun(pb.StartRunRequest(kind=pb.RESEARCH, input_path=path), timeout=30))
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (update, e.code(), e.details())
                assert violations(e) == ["input_path"] and "4096" in (e.details() or "")


async def test_input_dir_confines_paths_and_refuses_symlinks_out(start: Callable[..., object], tmp_path: Path
                                                                ) -> None:
    inputs = tmp_path / "inputs"
    (inputs / "sub").mkdir(parents=True)
    (inputs / "companies.csv").write_text("company,domain\nAcme,acme.com\nGlobex,globex.com\n")
    (inputs / "sub" / "questions.txt").write_text("# q\nWhich GPU clouds are best?\nWho trains LLMs?\n")
    secret = tmp_path / "secret.csv"
    secret.write_text("company\nTOP-SECRET-ROW\n")
    (inputs / "escape.csv").symlink_to(secret)  # a link inside pointing out
    (inputs / "procenv").symlink_to("/proc/self/environ")
    (inputs / "updir").symlink_to(tmp_path)  # a directory link out
    (inputs / "notcsv.csv").write_text("SECRET_TOKEN=sk-live-abc123 and more\nsecond line\n")
    async with start(input_dir=str(inputs)) as stub:  # type: ignore[attr-defined]
        # Allowed: relative to the directory, or absolute inside it.
        ok = await stub.StartRun(pb.StartRunRequest(kind=pb.RESEARCH, input_path="companies.csv", detach=True),
                                 timeout=30)
        assert ok.counts.total == 2 and ok.name == "companies.csv"
        ok = await stub.StartRun(pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, input_path=str(inputs / "sub/questions.txt"),
                                                    org_eval_options=ORG, detach=True), timeout=30)
        assert ok.counts.total == 2
        for path in ("escape.csv", "procenv", "updir/secret.csv", "../secret.csv", str(secret), "/proc/self/environ",
                     "sub/../../secret.csv"):
            e = await failure(stub.StartRun(pb.StartRunRequest(kind=pb.RESEARCH, input_path=path, detach=True),
                                            timeout=30))
            assert e.code() == grpc.StatusCode.PERMISSION_DENIED, (path, e.code(), e.details())
            assert "TOP-SECRET" not in (e.details() or "")
        # Inside but not a companies CSV: the error names the problem, never the file's content.
        e = await failure(stub.StartRun(pb.StartRunRequest(kind=pb.RESEARCH, input_path="notcsv.csv"), timeout=30))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(e) == ["input_path"]
        assert "SECRET_TOKEN" not in (e.details() or "") and "sk-live" not in (e.details() or "")
        e = await failure(stub.StartRun(pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, input_path="missing.txt",
                                                           org_eval_options=ORG), timeout=30))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "no such file" in (e.details() or "")
        runs = (await stub.ListRuns(pb.ListRunsRequest(), timeout=10)).runs
        assert len(runs) == 2  # only the two allowed ones


async def test_inputs_as_content_questions_text_and_upload(start: Callable[..., object]) -> None:
    async with start(max_input_bytes=4096) as stub:  # type: ignore[attr-defined]
        run = await stub.StartRun(pb.StartRunRequest(
            kind=pb.ORG_EVAL, samples=1, questions_text="Which GPU clouds are best?\n\n# note\nWho hosts Llama?\n",
            org_eval_options=ORG, detach=True), timeout=30)
        assert run.status == pb.Run.PENDING and run.counts.total == 2

        csv_bytes = b"company,domain\n" + b"".join(f"Co {n},co{n}.com\n".encode() for n in range(100))
        chunks = [csv_bytes[i:i + 200] for i in range(0, len(csv_bytes), 200)]
        up = await stub.UploadInput(iter([pb.UploadInputRequest(data=chunks[0], filename="/etc/big.csv"),
                                          *(pb.UploadInputRequest(data=c) for c in chunks[1:])]), timeout=30)
        assert up.size_bytes == len(csv_bytes) and up.upload_id.startswith("up_") and len(up.sha256) == 64
        run = await stub.StartRun(pb.StartRunRequest(kind=pb.RESEARCH, upload_id=up.upload_id, detach=True),
                                  timeout=30)
        assert run.counts.total == 100 and run.name == "big.csv"  # the label only: no path of the client's
        # An upload is consumed once; an unknown id is refused.
        for upload_id in (up.upload_id, "up_nope", "x" * 100):
            e = await failure(stub.StartRun(pb.StartRunRequest(kind=pb.RESEARCH, upload_id=upload_id), timeout=30))
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(e) == ["upload_id"]
        # Over VANTAGE_MAX_INPUT_BYTES: refused with the limit, as an upload and as inline content.
        e = await failure(stub.UploadInput(iter([pb.UploadInputRequest(data=b"x" * 3000)] * 2), timeout=30))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "4096" in (e.details() or "")
        e = await failure(stub.StartRun(pb.StartRunRequest(kind=pb.RESEARCH, input_csv="company\n" + "A\n" * 3000),
                                        timeout=30))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(e) == ["input_csv"]
        assert "4096" in (e.details() or "")
        # An ORG_EVAL upload holds questions.
        up = await stub.UploadInput(iter([pb.UploadInputRequest(data=b"Q one?\nQ two?\nQ three?\n")]), timeout=30)
        run = await stub.StartRun(pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, upload_id=up.upload_id, org_eval_options=ORG,
                                                     detach=True), timeout=30)
        assert run.counts.total == 3


# --- item 3: bounds and enums ------------------------------------------------------------------------------------


async def test_enums_ids_and_pages_are_validated(stub: Stub) -> None:
    e = await failure(stub.ListRuns(pb.ListRunsRequest(status=8), timeout=10))  # type: ignore[arg-type]
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(e) == ["status"]
    assert "COMPLETED" in (e.details() or "")
    e = await failure(stub.StartRun(pb.StartRunRequest(kind=7, input_csv="company\nA\n"), timeout=10))  # type: ignore[arg-type]
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(e) == ["kind"]
    for call in (
        stub.GetRun(pb.GetRunRequest(run_id="x" * 10_000), timeout=10),
        stub.GetRun(pb.GetRunRequest(run_id=""), timeout=10),
        stub.CancelRun(pb.CancelRunRequest(run_id="../../etc"), timeout=10),
        stub.RetryFailed(pb.RetryFailedRequest(run_id="0" * 36), timeout=10),
        stub.ListRunItems(pb.ListRunItemsRequest(run_id="nope"), timeout=10),
    ):
        e = await failure(call)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(e) == ["run_id"], e.details()
    e = await failure(stub.WatchRun(pb.WatchRunRequest(run_id="r"), timeout=10).read())
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(e) == ["run_id"]
    e = await failure(stub.WatchRun(pb.WatchRunRequest(run_id="00000000-0000-0000-0000-000000000000",
                                                       after_sequence=-1), timeout=10).read())
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(e) == ["after_sequence"]
    for req in (pb.ListRunsRequest(page_size=1001), pb.ListRunsRequest(page_size=-1)):
        e = await failure(stub.ListRuns(req, timeout=10))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(e) == ["page_size"]
        assert "1000" in (e.details() or "")
    e = await failure(stub.ListRuns(pb.ListRunsRequest(page_token="t" * 10_000), timeout=10))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(e) == ["page_token"]


async def test_over_limit_fields_name_the_field_and_the_limit(start: Callable[..., object]) -> None:
    limits = {"max_name_chars": 40, "max_questions": 3, "max_question_chars": 50, "max_models": 2,
              "max_run_items": 5, "max_known_competitors": 2, "max_name_variations": 1}
    async with start(**limits) as stub:  # type: ignore[attr-defined]
        def org(**kw: object) -> pb.OrgEvalInput:
            spec = pb.OrgEvalInput(org_name="Acme", models=["gpt-4.1"], locations=["US"], questions=["Q?"])
            for k, v in kw.items():
                if isinstance(v, list):
                    getattr(spec, k)[:] = v
                else:
                    setattr(spec, k, v)
            return spec

        cases = [
            (pb.StartRunRequest(kind=pb.RESEARCH, name="n" * 41, input_csv="company\nA\n"), "name", "40"),
            (pb.StartRunRequest(kind=pb.RESEARCH, input_csv="company\n" + "B" * 41 + "\n"), "input", "40"),
            (pb.StartRunRequest(kind=pb.RESEARCH, input_csv="company\n" + "".join(f"C{n}\n" for n in range(6))),
             "input", "5"),
            (pb.StartRunRequest(kind=pb.RESEARCH, research=pb.ResearchInput(
                companies=[pb.Company(company=f"D{n}") for n in range(6)])), "research.companies", "5"),
            (pb.StartRunRequest(kind=pb.RESEARCH, research=pb.ResearchInput(
                companies=[pb.Company(company="E" * 41)])), "research.companies[0].company", "40"),
            (pb.StartRunRequest(kind=pb.RESEARCH, research=pb.ResearchInput(
                companies=[pb.Company(company="F", domain="d" * 300 + ".com")])), "research.companies[0].domain",
             "253"),
            (pb.StartRunRequest(kind=pb.RESEARCH, input_csv="company\nG\n",
                                research_options=pb.ResearchOptions(model="m" * 201)), "research_options.model", "200"),
            (pb.StartRunRequest(kind=pb.RESEARCH, input_csv="company\nH\n",
                                research_options=pb.ResearchOptions(context_char_budget=2_000_000)),
             "research_options.context_char_budget", "1000000"),
            (pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=org(org_name="O" * 41)), "org_eval.org_name", "40"),
            (pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=org(org_domain="x" * 250 + ".com")),
             "org_eval.org_domain", "253"),
            (pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=org(questions=["Q?"] * 4)), "org_eval.questions", "3"),
            (pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=org(questions=["q" * 51])), "org_eval.questions", "50"),
            (pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=org(models=["gpt-4.1", "gpt-4o", "claude-sonnet-5"])),
             "org_eval.models", "2"),
            (pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=org(questions=["a?", "b?", "c?"], models=["gpt-4.1", "gpt-4o"],
                                                               locations=["US"])), "org_eval.questions", "5"),
            (pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=org(known_competitors=["a", "b", "c"])),
             "org_eval.known_competitors", "2"),
            (pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=org(name_variations=["v" * 41])),
             "org_eval.name_variations", "40"),
            (pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=org(locations=["US"] * 300)), "org_eval.locations", "249"),
            (pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=org(locations=["XX"])), "org_eval.locations", "ISO 3166-1"),
            (pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=org(locations=["UK"])), "org_eval.locations", "ISO 3166-1"),
            (pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, questions_text="q?\n" * 4, org_eval_options=org()),
             "questions_text", "3"),
        ]
        for req, field, limit in cases:
            e = await failure(stub.StartRun(req, timeout=30))
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, e.code(), e.details())
            assert field in violations(e), (field, violations(e), e.details())
            assert limit in (e.details() or ""), (field, e.details())
            assert len(e.details() or "") < 2000
        assert await no_runs(stub)  # nothing was stored by a refused request
        # Within the bounds: accepted (locations case-insensitive, repeats folded).
        run = await stub.StartRun(pb.StartRunRequest(kind=pb.ORG_EVAL, samples=1, org_eval=org(locations=["us", "GB", "US"]),
                                                     detach=True), timeout=30)
        assert run.counts.total == 2


# --- item 7: atomic run creation ---------------------------------------------------------------------------------


async def test_a_malformed_row_leaves_no_run_and_names_its_line(stub: Stub) -> None:
    rows = "".join(f"Co {n},co{n}.com\n" for n in range(1200))  # past the first ingest batch
    for text, line, what in (
        ("company,domain\n" + rows + '"Unterminated,x.com\nMore,y.com\n', 1202, "unterminated"),
        ("company,domain\n" + rows + '"Stray"te,x.com\n', 1202, "stray quote"),
        ("company,company\nA\n", 1, "duplicate column header"),
        ("company,domain,Domain\nA,a.com,b.com\n", 1, "duplicate column header"),
    ):
        e = await failure(stub.StartRun(pb.StartRunRequest(kind=pb.RESEARCH, input_csv=text), timeout=60))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(e) == ["input"], e.details()
        assert f"line {line}" in (e.details() or ""), e.details()
        if what:
            assert what in (e.details() or "")
    assert await no_runs(stub)



# --- the CLI against a remote orchestrator: it sends content --------------------------------------------------------


async def cli(addr: str, *args: str, tmp: Path) -> tuple[int, str, str]:
    """The real ``vantage`` as a subprocess (asyncio: the in-process server must keep serving meanwhile), pointed at
    the orchestrator ``addr`` and at a database path that does not exist (a remote run opens none)."""
    import asyncio
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("VANTAGE_")}
    env.update(VANTAGE_ORCHESTRATOR_ADDR=addr, VANTAGE_DATABASE_URL=f"sqlite:///{tmp / 'absent' / 'no.db'}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.orchestrator.cli", *args, env=env, cwd=str(Path(__file__).parents[2]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_remote_sends_the_files_content(services: Settings, db_url: str, tmp_path: Path) -> None:
    companies = tmp_path / "companies.csv"
    companies.write_text("company,domain\nAnthropic,anthropic.com\nJasper,jasper.ai\n")
    big = tmp_path / "big.csv"  # > 1 MiB: goes through UploadInput
    big.write_text("company,domain\n" + "".join(f"Company {'x' * 230} {n:05d},c{n}.example.com\n" for n in range(4_500)))
    questions = tmp_path / "questions.txt"
    questions.write_text("Which GPU clouds are best for training?\n")
    settings = services.model_copy(update={"database_url": db_url, "watch_poll_seconds": 0.1})  # no input_dir
    async with serving("orchestrator", build, settings) as srv, grpc.aio.insecure_channel(srv.address) as ch:
        stub = pb_grpc.OrchestratorServiceStub(ch)
        code, out, err = await cli(srv.address, "research", str(companies), "--remote", tmp=tmp_path)
        assert code == 0, err
        assert "done 2 · failed 0" in out and "[2/2]" in err
        code, out, err = await cli(srv.address, "research", str(big), "--remote", "--detach", "--quiet",
                                   tmp=tmp_path)
        assert code == 0, err
        run = await stub.GetRun(pb.GetRunRequest(run_id=out.strip()), timeout=10)
        assert big.stat().st_size > 1024 * 1024  # past the inline limit of the CLI
        assert run.counts.total == 4_500 and run.status == pb.Run.PENDING and run.name == "big.csv"
        code, out, err = await cli(srv.address, "evaluate", "--samples", "1", "--org", "Together AI", "--domain", "together.ai",
                                   "--questions", str(questions), "--models", "gpt-4.1", "--locations", "US,GB",
                                   "--remote", "--output", "json", tmp=tmp_path)
        assert code == 0, err
        assert '"done": 2' in out
        # Refused input never reaches the server: exit 2 before connecting.
        code, out, err = await cli(srv.address, "evaluate", "--org", "X", "--questions", str(questions),
                                   "--locations", "XX", "--remote", tmp=tmp_path)
        assert code == 2 and "ISO 3166-1" in err
    assert not (tmp_path / "absent").exists()  # the CLI opened no database of its own
