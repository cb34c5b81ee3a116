"""The use cases: keyword-only functions over storage and the queue, called by every door.

- `calls`    register a call and queue it (`submit_call`, the one way in), calls scored inline, retry
- `reviews`  review a scorecard, read it reviewed, the review queue
- `rules`    the stored rules a call names, uploads of rules (checked in `rulecheck`'s child process)
- `rescores` start a rescore run, do a started run's work, record what it changed
- `exports`  the latest scorecards as CSV, a call's redacted recording

The doors (the API, the web pages, the command line and the worker) call these and never each
other. Nothing is imported here, so `python -m qa_service.services.rulecheck` stays light.
"""
