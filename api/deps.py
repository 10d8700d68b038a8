"""Dependencies declared once as ``Annotated`` aliases."""

from typing import Annotated

from fastapi import Depends, Request

from worker.settings import Settings


def app_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(app_settings)]
