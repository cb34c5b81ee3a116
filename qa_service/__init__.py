"""Call QA service: recorded customer-service calls in, QA scorecards with evidence out."""

__version__ = "0.1.0"
