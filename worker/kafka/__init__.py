"""The door to the Kafka client: the only package that imports kafka-python.

``clients`` builds every client (configs, login, TLS); ``io`` holds the calls the worker makes
(transactions, consumer and rebalances, group membership, read-back); ``topics`` creates topics;
``failures`` is the one table from a client error to the worker's kind of failure and exit code;
``access`` the rights each role needs; ``ranges`` the offset ranges a replay reads.
"""

__all__: list[str] = []
