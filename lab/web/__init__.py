"""The classroom server (`lab serve`): trainees work in browser terminals sealed in their
lab's nodes, the instructor watches a live dashboard.

app (routes, headers, state), auth (tokens, cookies, CSRF and Origin), guards (who may
call a route), roster (the class as data), classops (what the server does to labs),
live (the dashboard's event stream), terminal (websocket <-> node shell), instructor and
trainee (the pages and actions), reports (report and topology picture), serve (uvicorn,
signals, teardown), client (a scripted browser for tests and benchmarks); templates/ and
static/ (plain JavaScript, xterm.js vendored in static/vendor).
"""
