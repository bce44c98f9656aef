"""The attack suite: a named corpus of hostile requests, a property-based run and a secret search.

    python -m tests.attack            # gunicorn (3 workers) on PostgreSQL: corpus, fuzz, admin
    python -m tests.attack --help     # options: workers, examples per entry point, seed...
    pytest tests/test_attack_corpus.py    # the fast subset, in-process (runs in every tox env)

The same corpus (:mod:`tests.attack.corpus`) runs in both: in-process through Django's test
client in the normal test run, and over real HTTP against gunicorn in ``python -m tests.attack``
(tox env ``heavy``, through ``tests/test_attack_heavy.py``), which adds what only a real server
shows (chunked bodies, concurrent workers) and the hypothesis run (:mod:`tests.attack.fuzz`).
"""

#: ``ETPAY`` settings both runs use on top of the test settings: a return-URL limit under
#: gunicorn's 4 KB request line (so the app's own limit is reachable through the server), and
#: a budget for results naming no session large enough that every request is promised a row.
ETPAY_OVERRIDES = {
    "NOTIFICATION_MAX_BYTES": 3500,
    "MAX_UNLINKED_REJECTED_PER_HOUR": 10**9,
}
