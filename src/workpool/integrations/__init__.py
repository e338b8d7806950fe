"""Optional integrations, each behind its own extra; importing this package imports none.

- `workpool.integrations.starlette` (``pip install 'workpool[starlette]'``): a
  lifespan that runs a pool with the app, a middleware giving each request a
  session, and dependencies for FastAPI and Starlette endpoints.
- `workpool.integrations.fastapi` (``pip install 'workpool[fastapi]'``):
  ``Annotated`` dependency aliases over the above.
- `workpool.integrations.otel` (``pip install 'workpool[otel]'``): OpenTelemetry
  metrics of a pool.
"""
