"""What the PDP (pdp/) and the proxy (proxy/) are both built from, and the only
code they share: request-target normalization, problem+json bodies, JSON logs,
trace context, the client-address rules, secret query parameters, GC settings,
the circuit breaker and the settings machinery. It imports neither service.

The release's version is declared here once; pyproject.toml, both services'
`__version__` and the served OpenAPI document read it from here.
"""

__version__ = "0.1.0"
