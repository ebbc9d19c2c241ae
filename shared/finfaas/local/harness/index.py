"""The OpenFaaS python3-http template's index.py, kept behaviour-for-behaviour.

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
hostname, and the same response formatting. Only the listener differs: loopback, and the port
(or an inherited socket) chosen by the local gateway; see finfaas.local.harness.__main__.
The `function` package must be importable before this module is (the launcher arranges it).
"""

import os

from flask import Flask, jsonify, request
from function import handler  # type: ignore[import-not-found]  # the function folder, as in the image
from waitress import serve

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


@app.route("/", defaults={"path": ""}, methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
@app.route("/<path:path>", methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
def call_handler(path):
    event = Event()
    context = Context()
    response_data = handler.handle(event, context)
    return format_response(response_data)


if __name__ == "__main__":
    # The template binds 0.0.0.0:5000 behind of-watchdog; locally nothing but loopback may listen.
    serve(app, host="127.0.0.1", port=int(os.getenv("PORT", str(TEMPLATE_PORT))))
