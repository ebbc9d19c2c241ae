"""The project's variant of the OpenFaaS python3-http template's index.py.

Adapted from template/python3-http/index.py of openfaas/python-flask-template,
Copyright (c) OpenFaaS Author(s), released under the MIT licence:

    Permission is hereby granted, free of charge, to any person obtaining a copy of this
    software and associated documentation files (the "Software"), to deal in the Software
    without restriction, including without limitation the rights to use, copy, modify, merge,
    publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
    to whom the Software is furnished to do so, subject to the following conditions: The above
    copyright notice and this permission notice shall be included in all copies or substantial
    portions of the Software. THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND.

What a handler sees here is what it sees in the container: one Flask catch-all route for
GET/PUT/POST/PATCH/DELETE, an Event with body/headers/method/query/path, a Context with
hostname, and the same response formatting. It differs from upstream in one respect: upstream,
Flask answers some requests itself with text/html before the handler is called (OPTIONS with
200 and an Allow header of its own, other methods with 405, paths its `<path:path>` converter
does not match, such as one holding %0A, with 404). Here every such request reaches the handler,
so the function's own routing answers it (problem+json, its real Allow). `finfaas build
--shrinkwrap` puts this file in every build context, so images run the same code.
One more difference: a handler may size waitress with a module-level SERVER_OPTIONS (`threads`,
`connection_limit`); the transfers function does, as each of its waiting status requests parks a thread.
The listener is loopback (of-watchdog's upstream is 127.0.0.1:5000 in the image too), on the
port or inherited socket the local gateway chose; see finfaas_dev.harness.__main__.
The `function` package must be importable before this module is (the launcher arranges it).
"""

import os

from flask import Flask, jsonify, request
from function import handler  # type: ignore[import-not-found]  # the function folder, as in the image
from waitress import serve
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

TEMPLATE_PORT = 5000  # of-watchdog's upstream_url in the python3-http image

app = Flask(__name__)


class Event:
    def __init__(self):
        self.body = request.get_data()
        self.headers = request.headers
        self.method = request.method
        self.query = request.args
        self.path = request.path


class Context:
    def __init__(self):
        self.hostname = os.getenv("HOSTNAME", "localhost")


def format_status_code(resp):
    return resp["statusCode"] if "statusCode" in resp else 200


def format_body(resp):
    # Exactly as the template: only a plain dict becomes JSON; anything else goes through str().
    if "body" not in resp:
        return ""
    if type(resp["body"]) is dict:
        return jsonify(resp["body"])
    return str(resp["body"])


def format_headers(resp):
    if "headers" not in resp:
        return []
    if type(resp["headers"]) is dict:
        return list(resp["headers"].items())
    return resp["headers"]


def format_response(resp):
    if resp is None:
        return ("", 200)
    if type(resp) is dict:
        return (format_body(resp), format_status_code(resp), format_headers(resp))
    return resp


# What a handler may set of waitress's sizing; never where it listens.
SERVER_OPTION_NAMES = ("threads", "connection_limit")


def server_options():
    """The handler's SERVER_OPTIONS for waitress, or none (the template's 4 threads, 100 connections)."""
    wanted = getattr(handler, "SERVER_OPTIONS", {})
    return {name: int(wanted[name]) for name in SERVER_OPTION_NAMES if name in wanted}


TEMPLATE_METHODS = ["GET", "PUT", "POST", "PATCH", "DELETE"]
PROBLEM_MEDIA_TYPE = "application/problem+json"


# No automatic OPTIONS: Flask would answer it with 200 and every method it routes.
@app.route("/", defaults={"path": ""}, methods=TEMPLATE_METHODS, provide_automatic_options=False)
@app.route("/<path:path>", methods=TEMPLATE_METHODS, provide_automatic_options=False)
def call_handler(path):
    event = Event()
    context = Context()
    response_data = handler.handle(event, context)
    return format_response(response_data)


@app.errorhandler(HTTPException)
def answer_http_error(error):
    """Routing misses go to the handler, whose routes decide; any other Flask error is problem+json."""
    if isinstance(error, (NotFound, MethodNotAllowed)):
        return call_handler(request.path)
    code = "_".join(error.name.lower().replace("'", "").split())
    problem = {"type": f"urn:finfaas:problem:{code}", "title": error.name, "status": error.code,
               "detail": error.name, "code": code}
    return jsonify(problem), error.code, {"Content-Type": PROBLEM_MEDIA_TYPE}


if __name__ == "__main__":
    # The template binds 0.0.0.0:5000 behind of-watchdog; locally nothing but loopback may listen.
    serve(app, host="127.0.0.1", port=int(os.getenv("PORT", str(TEMPLATE_PORT))), **server_options())
