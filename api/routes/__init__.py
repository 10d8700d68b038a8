"""Every router of the API, one module per resource."""

from api.routes import collections, health, images, jobs, models, style_models

ROUTERS = [models.router, images.router, collections.router, style_models.router, jobs.router, health.router]
