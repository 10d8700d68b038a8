"""Every router of the API, one module per resource."""

from api.routes import collections, docs, health, images, jobs, keys, models, results, style_models, web

# /v1: every call needs a key (api.deps)
ROUTERS = [models.router, images.router, collections.router, style_models.router, jobs.router, keys.router, results.router]
PUBLIC_ROUTERS = [health.router, web.router, docs.router]  # probes, the web page (its JS sends the key) and the API docs: no key
