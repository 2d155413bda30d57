"""Ray Serve: the retrieve-then-rank graph, similar items, photo search and outfit scores.

``settings`` (the ``serve`` stage config), ``schemas`` (the HTTP bodies), ``core`` (the parts
and the flow, no Ray), ``app`` (the deployments and ``build_app``), ``demo`` (serve a run and
fetch recommendations over HTTP).
"""
