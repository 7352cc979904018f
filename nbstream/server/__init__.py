"""``nbstream serve``: ksqlDB's REST API over the engine service, a face beside the notebook and the CLI.

- :mod:`~nbstream.server.app`: the ASGI app (routes, credentials, errors, the engine's threads);
- :mod:`~nbstream.server.ksql`: ``/ksql``; :mod:`~nbstream.server.entities`: statement results as
  ksqlDB's entities;
- :mod:`~nbstream.server.queries`: ``/query``, ``/query-stream``, ``/close-query``;
  :mod:`~nbstream.server.streaming`: their three response formats and the JSON of values;
- :mod:`~nbstream.server.inserts`: ``/inserts-stream``;
- :mod:`~nbstream.server.auth`, :mod:`~nbstream.server.metrics`, :mod:`~nbstream.server.http`;
- :mod:`~nbstream.server.command`: the command line and the hypercorn server.
"""
