"""Web pages for supervisors and QA staff: templates, static files and the routers that serve them."""

from qa_service.web.calibration import router as calibration_router
from qa_service.web.disputes import router as disputes_router
from qa_service.web.keys import router as keys_router
from qa_service.web.pages import router, static_files
from qa_service.web.queue import router as queue_router
from qa_service.web.review import router as review_router
from qa_service.web.search import router as search_router
from qa_service.web.upload import router as upload_router

__all__ = ["calibration_router", "disputes_router", "keys_router", "queue_router", "review_router", "router",
           "search_router", "static_files", "upload_router"]
