"""The HTTP API: routes, request/response schemas and dependencies, thin over `services/`.

The app factory that mounts these routes beside the pages is `qa_service.app`.
"""
