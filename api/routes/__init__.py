"""Every router of the API, one module per resource."""

from api.routes import collections, health, images, jobs, keys, models, style_models

# /v1: every call needs a key (api.deps)
ROUTERS = [models.router, images.router, collections.router, style_models.router, jobs.router, keys.router]
PUBLIC_ROUTERS = [health.router]  # probes: no key
