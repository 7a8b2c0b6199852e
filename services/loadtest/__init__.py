"""``vantage loadtest``: a ghz-like load generator for any unary gRPC method, in Python.

ghz (https://ghz.sh, bojand/ghz) is the usual tool, but it is a Go binary that cannot be installed from the
registries this project reaches (reference/performance.md §2), so this package re-implements the part we need:

- :mod:`.reflect` resolves ``pkg.Service/Method`` (or ``pkg.Service.Method``) through the server's reflection
  service (grpcio-reflection ``ProtoReflectionDescriptorDatabase`` → ``DescriptorPool`` → ``GetMessageClass``), so
  it works against services it was not built with (e.g. ``grpc.health.v1.Health/Check``); the ``-d`` JSON is parsed
  into the request type with ``json_format.Parse``.
- :mod:`.runner` drives the load: *closed loop* (``-c`` calls kept in flight until ``-n`` are done, or for
  ``--duration`` seconds) or *open loop* (``--rps``: send ``i`` is scheduled at ``t0 + i/rate`` and its latency is
  measured from that scheduled time, so a stalled server shows up in the percentiles instead of silently slowing
  the generator down — "coordinated omission", performance.md §2).
- :mod:`.report` computes count, duration, RPS, latency percentiles and the status-code and error distributions,
  as text shaped like ghz's summary (ghz www/docs/output.md) or as one JSON object.
- :mod:`.cli` is the ``vantage loadtest`` command (also ``python -m services.loadtest``).
"""
