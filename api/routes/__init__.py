"""Every router of the API, one module per resource."""

from api.routes import collections, health, images, jobs, models

ROUTERS = [models.router, images.router, collections.router, jobs.router, health.router]
