# %% [markdown]
# # Vantage client quickstart
#
# `pip install clients/python`, start a stack (`vantage up`), then run the cells. The client needs only grpcio,
# protobuf and grpcio-status. `VANTAGE_ORCHESTRATOR_ADDR` (default `localhost:50050`) and `VANTAGE_AUTH_TOKEN`
# (when the stack requires one) say where and how to connect; the test suite runs this file against the sandbox.

# %%
import os

from vantage_client import VantageClient

client = VantageClient(os.environ.get("VANTAGE_ORCHESTRATOR_ADDR", "localhost:50050"),
                       token=os.environ.get("VANTAGE_AUTH_TOKEN") or None)

# %% Territory research: start a run, follow it, read the tiers.
run = client.research(companies=[("Anthropic", "anthropic.com"), ("Jasper", "jasper.ai")], name="quickstart")
run = client.wait(run.run_id, on_progress=lambda e: print(e.type, e.item_key))
print(run.status, f"${run.cost_usd:.4f}", client.report(run.run_id).tiers)

# %% AI visibility: how often do assistants name the org?
ev = client.evaluate("Together AI", ["Which platforms offer serverless inference for Llama?"], ["gpt-5.5"], ["US"],
                     org_domain="together.ai", name="quickstart-eval")
ev = client.wait(ev.run_id)
rep = client.report(ev.run_id)
print(ev.status, f"visibility {rep.visibility_rate}", rep.top_competitors[:3])

# %% Export, and the runs so far.
print(client.export(run.run_id, "csv").splitlines()[0])
print([r.name for r in client.list_runs()][:5])
client.close()
