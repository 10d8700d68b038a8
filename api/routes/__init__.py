"""Every router of the API, one module per resource."""

from api.routes import models

ROUTERS = [models.router]
