"""Every router of the API, one module per resource."""

from api.routes import health, images, jobs, keys, models

ROUTERS = [models.router, images.router, jobs.router, keys.router]  # /v1: every call needs a key (api.deps)
PUBLIC_ROUTERS = [health.router]  # probes: no key
