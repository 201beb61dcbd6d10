"""The dispatcher's HTTP resources, one module per API area; each exposes routes(service)."""
