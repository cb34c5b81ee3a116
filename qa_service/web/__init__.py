"""Web pages for supervisors and QA staff: templates, static files and the router that serves them."""

from qa_service.web.pages import router, static_files

__all__ = ["router", "static_files"]
