"""Worker entry point: `python worker.py [--burst]` works the `calls` queue on QA_REDIS_URL."""

import sys

from qa_service.settings import Settings
from qa_service.worker.run import run_worker

if __name__ == "__main__":
    run_worker(Settings(), burst="--burst" in sys.argv[1:])
