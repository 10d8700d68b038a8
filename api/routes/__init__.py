"""Every router of the API, one module per resource."""

from api.routes import health, images, jobs, models

ROUTERS = [models.router, images.router, jobs.router, health.router]
