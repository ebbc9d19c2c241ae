"""The python3-http template's own sample handler: the peer our functions are measured against."""


def handle(event, context):
    return {"statusCode": 200, "body": "Hello from OpenFaaS!"}
