"""The live web dashboard (``ash dashboard``, ``ash-scheduler --dashboard-port``; issue #17).

``model`` turns a study (a results document, trace events, a scheduler's Watch stream) into the
views the page draws and the deltas that keep it current; ``importance`` estimates how much each
hyperparameter matters; ``sources`` reads studies from files, folders and schedulers; ``server``
serves the page (aiohttp, the ``dashboard`` extra) and pushes deltas as Server-Sent Events;
``static/`` is the page itself (plain JS modules and the vendored plotly.js, no build step).
"""
