"""What a scored attempt shows in the browser: the scoring report (lab.scoring.report's
HTML page, made from the score the supervisor returned) and the topology picture with
the faulty nodes marked (lab.ui.topology_svg)."""
from __future__ import annotations

from starlette.responses import HTMLResponse, PlainTextResponse, Response

from lab.scoring.report import from_json, render_html
from lab.ui.topology_svg import render_svg
from lab.web.roster import Trainee


def report_page(trainee: Trainee) -> Response:
    if trainee.score is None:
        return PlainTextResponse("not scored yet", status_code=404)
    return HTMLResponse(render_html(from_json(trainee.score)))


def topology_svg(trainee: Trainee) -> str:
    """The trainee's topology; once scored, with the faulty nodes marked."""
    if trainee.topology is None:
        return ""
    return render_svg(trainee.topology, marked=trainee.faulty_nodes)
