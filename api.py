"""ASGI entry point: `uvicorn api:app` serves the API with settings from QA_* environment variables."""

from qa_service.app import create_app
from qa_service.settings import Settings

app = create_app(Settings())
