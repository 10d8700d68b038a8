"""Every router of the API, one module per resource."""

from api.routes import health, images, jobs, models, results, web

ROUTERS = [models.router, images.router, jobs.router, results.router, health.router, web.router]
