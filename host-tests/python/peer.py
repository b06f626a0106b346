"""A Python service of the same fleet: the `resilient-circuit` package (0.8.6) on the table the
Rust store uses, over the connection string given (TLS included).

    peer.py DSN KEY FAILURES

Records FAILURES failures on KEY through a breaker that trips at 2 of the last 2 (OPEN for
60 s), then prints the state the package reads back from the row.
"""

import sys
from datetime import timedelta
from fractions import Fraction

from resilient_circuit import CircuitProtectorPolicy
from resilient_circuit.storage import PostgresStorage

dsn, key, failures = sys.argv[1], sys.argv[2], int(sys.argv[3])
storage = PostgresStorage(dsn)
policy = CircuitProtectorPolicy(
    resource_key=key,
    storage=storage,
    failure_limit=Fraction(2, 2),
    cooldown=timedelta(seconds=60),
)


@policy
def call():
    raise RuntimeError("upstream down")


for _ in range(failures):
    try:
        call()
    except Exception:
        pass
state = storage.get_state(key)
print(state["state"] if state else "NONE")
