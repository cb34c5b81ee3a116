"""Who gets in, and what is recorded: what the API and the pages share.

`keys` checks the API key behind a request against the roles a route allows; `ratelimit` limits
each key and client address; `session` signs the pages' session cookies and form tokens; `audit`
is the middleware that writes one audit row per read, change and refusal. The app factory
(`qa_service.app`) installs them; the doors (`api/`, `web/`) use them and never each other.
"""
