"""The worker: RQ jobs (ids in, ids out), the context they run in, leases, recovery and the loop.

- `context`  the settings, storage, engines and compiled rules, built once at start and passed on
- `jobs`     the job functions RQ calls by dotted path (see `qa_service.queueing`): a few lines each
- `calls`    scoring one stored call: mark processing, run the pipeline, store the scorecard
- `inputs`   a call's input over its life: fetched, decrypted for a run, sealed or deleted after
- `lease`    the Redis lease a worker holds on the call or rescore run it works on
- `recovery` the reconcilers that requeue lost calls and settle lost rescore runs, due retries
- `run`      `run_worker`: migrate, load the engines, recover, then work the queue

Why `SimpleWorker` and not RQ's forking `Worker` with models preloaded in the parent: a
CTranslate2 (faster-whisper) model built before `fork()` hangs forever in the child, because
its compute threads do not survive the fork (measured: the forked job never returned, while the
same model built inside the child transcribed in under a second). CUDA contexts have the same
problem. So jobs run in the worker process itself, which loads the engines once at start; a
job timeout still interrupts a stuck job (SIGALRM in the main thread), and a call whose worker
died mid-job is recovered by `recovery.reconcile`, which every worker runs at start and about
every 30 s: a worker holds a Redis lease on the call it processes, and a call in queued/processing
with neither a lease nor a waiting job is enqueued again. Run one worker per core group.

Rescore runs go on the same queue: the API stores the run and enqueues its id; the worker rescores
the stored transcripts with the spaCy pipeline it already holds and stores the impact summary on
the run. The worker holds a lease on the run as on a call; `recovery.reconcile_rescores` queues
runs whose job never reached Redis and fails, within about LEASE_TTL_S, running runs whose worker
is gone, so a run never stays queued or running for good.
"""
